import random

from streamworker.coordinators.balancing import ExpiryTracker, eligible, plan_takes
from streamworker.coordinators.lease import Lease
from streamworker.records import ExtendedSequenceNumber as ESN


def leases(owners, **kw):
    return [Lease(lease_key=f"shard-{i}", lease_owner=o, **kw) for i, o in enumerate(owners)]


def test_first_worker_takes_all_unowned():
    plan = plan_takes(leases([None] * 4), "A", set())
    assert len(plan.take) == 4 and plan.target == 4


def test_second_worker_takes_its_share_of_free_leases():
    plan = plan_takes(leases(["A", "A", None, None]), "B", set())
    assert plan.target == 2 and len(plan.take) == 2 and not plan.steal


def test_new_worker_steals_from_the_most_loaded_up_to_target():
    plan = plan_takes(leases(["A"] * 4), "B", set(), max_steal=3)
    assert plan.target == 2 and len(plan.steal) == 2
    assert all(le.lease_owner == "A" for le in plan.steal)


def test_steal_is_capped_per_cycle():
    plan = plan_takes(leases(["A"] * 10), "B", set(), max_steal=2)
    assert len(plan.steal) == 2


def test_balanced_fleets_do_not_trade_leases():
    # 5 leases, 2 workers: 3/2 is as even as it gets; neither side moves.
    ls = leases(["A", "A", "A", "B", "B"])
    assert plan_takes(ls, "A", set()).steal == () and plan_takes(ls, "A", set()).take == ()
    assert plan_takes(ls, "B", set()).steal == ()
    # 4 leases, 3 workers 2/1/1: nobody moves.
    ls = leases(["A", "A", "B", "C"])
    for w in "ABC":
        p = plan_takes(ls, w, set())
        assert not p.steal and not p.take


def test_expired_leases_are_taken_before_stealing():
    ls = leases(["A", "A", "dead", "dead"])
    plan = plan_takes(ls, "A", {"shard-2", "shard-3"})
    # the dead worker no longer counts: A is alone and takes everything at once
    assert plan.workers == 1 and {le.lease_key for le in plan.take} == {"shard-2", "shard-3"}


def test_simulated_fleet_converges_without_ping_pong():
    rng = random.Random(1)
    owners = [None] * 20
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


def test_finished_and_blocked_leases_are_not_eligible():
    parent = Lease("p", checkpoint=ESN("100"))
    child = Lease("c", parent_shard_ids=frozenset({"p"}))
    done = Lease("d", checkpoint=ESN("SHARD_END"))
    orphan = Lease("o", parent_shard_ids=frozenset({"trimmed-away"}))
    assert {le.lease_key for le in eligible([parent, child, done, orphan])} == {"p", "o"}
    finished_parent = Lease("p", checkpoint=ESN("SHARD_END"))
    assert {le.lease_key for le in eligible([finished_parent, child])} == {"c"}


def test_expiry_is_judged_on_the_observers_clock():
    t = ExpiryTracker(failover_time=10)
    le = Lease("s", lease_counter=5, lease_owner="A")
    assert t.observe([le], now=100.0) == set()
    assert t.observe([le], now=109.9) == set()
    assert t.observe([le], now=110.0) == {"s"}
    # the counter moved: the clock restarts from when this observer saw the new value
    assert t.observe([le.with_counter(6)], now=111.0) == set()
    assert t.observe([le.with_counter(6)], now=120.9) == set()
    assert t.observe([le.with_counter(6)], now=121.0) == {"s"}
