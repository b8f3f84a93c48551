from __future__ import annotations

import random
from collections import Counter
from typing import Any

from streamworker.leases.dynamodb.balancing import ExpiryTracker, eligible, plan_takes
from streamworker.leases.lease import Lease
from streamworker.records import ExtendedSequenceNumber as ESN


def leases(owners: Any, **kw: Any) -> Any:
    return [Lease(lease_key=f"shard-{i}", lease_owner=o, **kw) for i, o in enumerate(owners)]


def test_first_worker_takes_all_unowned() -> None:
    plan = plan_takes(leases([None] * 4), "A", set())
    assert len(plan.take) == 4 and plan.target == 4


def test_second_worker_takes_its_share_of_free_leases() -> None:
    plan = plan_takes(leases(["A", "A", None, None]), "B", set())
    assert plan.target == 2 and len(plan.take) == 2 and not plan.steal


def test_new_worker_steals_from_the_most_loaded_up_to_target() -> None:
    plan = plan_takes(leases(["A"] * 4), "B", set())
    assert plan.target == 2 and len(plan.steal) == 2
    assert all(le.lease_owner == "A" for le in plan.steal)


def test_a_joining_worker_takes_its_whole_share_from_several_workers_at_once() -> None:
    plan = plan_takes(leases(["A"] * 100 + ["B"] * 100), "C", set())
    moved = Counter(le.lease_owner for le in plan.steal)
    assert moved == {"A": 33, "B": 33}  # 67/67/66 afterwards


def test_a_worker_two_below_a_worker_at_target_still_steals_one() -> None:
    # 10 leases, 4 workers: target 3; 3/3/3/1 is uneven, 3/3/2/2 is not
    plan = plan_takes(leases(["A"] * 3 + ["B"] * 3 + ["C"] * 3 + ["D"]), "D", set())
    assert len(plan.steal) == 1
    assert plan_takes(leases(["A"] * 3 + ["B"] * 3 + ["C"] * 2 + ["D"] * 2), "D", set()).steal == ()


def test_records_per_second_breaks_ties_without_causing_moves() -> None:
    hot = [Lease(f"a-{i}", lease_owner="A", records_per_second=1000.0 if i < 2 else 1.0) for i in range(4)]
    cool = [Lease(f"b-{i}", lease_owner="B", records_per_second=1.0) for i in range(4)]
    # equal counts: the busier worker gives, and the lease moved evens the records/s out best
    plan = plan_takes(hot + cool, "C", set())
    assert [(le.lease_owner, le.records_per_second) for le in plan.steal] == [("A", 1000.0), ("B", 1.0)]
    # a balanced fleet never moves however uneven the records/s
    assert plan_takes(hot + cool, "B", set()).steal == ()


def test_steal_is_capped_per_cycle() -> None:
    plan = plan_takes(leases(["A"] * 10), "B", set(), max_steal=2)
    assert len(plan.steal) == 2


def test_balanced_fleets_do_not_trade_leases() -> None:
    # 5 leases, 2 workers: 3/2 is as even as it gets; neither side moves.
    ls = leases(["A", "A", "A", "B", "B"])
    assert plan_takes(ls, "A", set()).steal == () and plan_takes(ls, "A", set()).take == ()
    assert plan_takes(ls, "B", set()).steal == ()
    # 4 leases, 3 workers 2/1/1: nobody moves.
    ls = leases(["A", "A", "B", "C"])
    for w in "ABC":
        p = plan_takes(ls, w, set())
        assert not p.steal and not p.take


def test_expired_leases_are_taken_before_stealing() -> None:
    ls = leases(["A", "A", "dead", "dead"])
    plan = plan_takes(ls, "A", {"shard-2", "shard-3"})
    # the dead worker no longer counts: A is alone and takes everything at once
    assert plan.workers == 1 and {le.lease_key for le in plan.take} == {"shard-2", "shard-3"}


def test_simulated_fleet_converges_without_ping_pong() -> None:
    rng = random.Random(1)
    owners: list[str | None] = [None] * 20
    workers = ["A", "B", "C"]
    moves_per_round = []
    for _ in range(12):
        moves = 0
        for w in workers:
            ls = leases(owners)
            plan = plan_takes(ls, w, set(), max_steal=3, rng=rng)
            for le in plan.take + plan.steal:
                owners[int(le.lease_key.split("-")[1])] = w
                moves += 1
        moves_per_round.append(moves)
    counts = sorted(owners.count(w) for w in workers)
    assert counts[-1] - counts[0] <= 1
    assert moves_per_round[-4:] == [0, 0, 0, 0]


def test_finished_and_blocked_leases_are_not_eligible() -> None:
    parent = Lease("p", checkpoint=ESN("100"))
    child = Lease("c", parent_shard_ids=frozenset({"p"}))
    done = Lease("d", checkpoint=ESN("SHARD_END"))
    orphan = Lease("o", parent_shard_ids=frozenset({"trimmed-away"}))
    assert {le.lease_key for le in eligible([parent, child, done, orphan])} == {"p", "o"}
    finished_parent = Lease("p", checkpoint=ESN("SHARD_END"))
    assert {le.lease_key for le in eligible([finished_parent, child])} == {"c"}


def test_expiry_is_judged_on_the_observers_clock() -> None:
    t = ExpiryTracker(failover_time=10)
    le = Lease("s", lease_counter=5, lease_owner="A")
    assert t.observe([le], now=100.0) == set()
    assert t.observe([le], now=109.9) == set()
    assert t.observe([le], now=110.0) == {"s"}
    # the counter moved: the clock restarts from when this observer saw the new value
    assert t.observe([le.with_counter(6)], now=111.0) == set()
    assert t.observe([le.with_counter(6)], now=120.9) == set()
    assert t.observe([le.with_counter(6)], now=121.0) == {"s"}


def test_200_shards_and_workers_joining_one_by_one_balance_in_one_cycle_each() -> None:
    rng = random.Random(7)
    owners: list[str | None] = [None] * 200
    workers: list[str] = []
    moves = 0
    for w in ["A", "B", "C", "D"]:
        workers.append(w)
        for _ in range(3):  # three take cycles of every worker
            for x in workers:
                plan = plan_takes(leases(owners), x, set(), rng=rng)
                for le in plan.take + plan.steal:
                    owners[int(le.lease_key.split("-")[1])] = x
                    moves += 1
        counts = [owners.count(x) for x in workers]
        assert max(counts) - min(counts) <= 1, counts
    # 200 to take, then 100 + 66 + 50 moved: each move was needed, none went back
    assert moves == 200 + 100 + 66 + 50


def test_a_dead_workers_leases_spread_over_the_survivors() -> None:
    rng = random.Random(3)
    owners = ["A", "B", "C", "D"] * 50
    dead = {f"shard-{i}" for i, o in enumerate(owners) if o == "D"}
    for _ in range(3):
        for x in "ABC":
            plan = plan_takes(leases(owners), x, dead, rng=rng)
            assert not plan.steal
            for le in plan.take:
                owners[int(le.lease_key.split("-")[1])] = x
                dead.discard(le.lease_key)
    assert sorted(owners.count(x) for x in "ABC") == [66, 67, 67]


def test_two_workers_joining_in_the_same_cycle_overshoot_once_then_even_out() -> None:
    # B and C plan from the same scan, before either holds a lease: neither sees the other.
    owners: list[str | None] = ["A"] * 200
    scan = leases(owners)
    plans = {x: plan_takes(scan, x, set(), rng=random.Random(5)) for x in "BC"}
    for x, plan in plans.items():
        for le in plan.steal:
            owners[int(le.lease_key.split("-")[1])] = x
    assert sorted(owners.count(x) for x in "ABC") == [0, 100, 100]  # A gave all away: the overshoot
    moves = 0
    for _ in range(3):
        for x in "ABC":
            for le in (p := plan_takes(leases(owners), x, set(), rng=random.Random(6))).take + p.steal:
                owners[int(le.lease_key.split("-")[1])] = x
                moves += 1
    counts = sorted(owners.count(x) for x in "ABC")
    assert counts[-1] - counts[0] <= 1, counts
    assert moves == 66  # A, invisible with no lease, takes its share back once; nothing after
