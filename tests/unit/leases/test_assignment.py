"""A leader's plan by lease count, as KCL 3's LeaseCountBasedLeaseAssignmentDecider: free and
expired leases to the workers holding fewest, up to ceil(leases/workers); balancing by graceful
handoff from workers above the target to those below; handoffs in flight left alone."""

from __future__ import annotations

from collections import Counter

from streamworker.leases.dynamodb.assignment import Move, plan, target
from streamworker.leases.lease import Lease
from streamworker.records import ExtendedSequenceNumber as ESN


def lease(key: str, owner: str | None = None, checkpoint_owner: str | None = None) -> Lease:
    return Lease(key, lease_owner=owner, checkpoint_owner=checkpoint_owner, checkpoint=ESN("TRIM_HORIZON"))


def after(leases: list[Lease], moves: list[Move]) -> Counter[str]:
    owners = {le.lease_key: le.checkpoint_owner or le.lease_owner for le in leases}
    owners.update({m.lease.lease_key: m.to for m in moves})
    return Counter(o for o in owners.values() if o)


def test_target_is_the_ceiling_capped_by_max_leases() -> None:
    assert (target(8, 3, None), target(8, 2, None), target(2, 5, None), target(8, 2, 3), target(4, 0, None)) == (3, 4, 1, 3, 0)


def test_unassigned_and_expired_leases_go_to_the_emptiest_workers_first() -> None:
    leases = [lease(f"s{i}", "kcl-1") for i in range(4)] + [lease(f"s{i}") for i in range(4, 8)]
    moves = plan(leases, ["kcl-1", "sw-1"], expired={"s3"}, balance=False)
    assert all(not m.graceful for m in moves)
    assert sorted(m.lease.lease_key for m in moves) == ["s3", "s4", "s5", "s6", "s7"]
    assert after(leases, moves) == Counter({"kcl-1": 4, "sw-1": 4})
    assert [m.lease.lease_key for m in moves][:4] == ["s4", "s5", "s6", "s7"]  # unassigned before expired


def test_balancing_moves_leases_by_handoff_to_a_new_worker() -> None:
    leases = [lease(f"s{i}", "kcl-1") for i in range(4)] + [lease(f"s{i}", "kcl-2") for i in range(4, 8)]
    assert plan(leases, ["kcl-1", "kcl-2", "sw-1"], expired=set(), balance=False) == []
    moves = plan(leases, ["kcl-1", "kcl-2", "sw-1"], expired=set(), balance=True)
    assert all(m.graceful and m.to == "sw-1" for m in moves) and len(moves) == 2
    assert sorted(after(leases, moves).values()) == [2, 3, 3]


def test_leases_in_a_handoff_are_not_moved_again_and_count_for_their_checkpoint_owner() -> None:
    leases = [lease("s0", "sw-1", checkpoint_owner="kcl-1"), lease("s1", "kcl-1"), lease("s2", "kcl-1")]
    moves = plan(leases, ["kcl-1", "sw-1"], expired=set(), blocked={"s0"}, balance=True)
    assert [(m.lease.lease_key, m.to) for m in moves] == [("s2", "sw-1")]


def test_no_live_worker_no_moves_and_dead_owners_leases_wait_for_expiry() -> None:
    leases = [lease("s0", "gone"), lease("s1")]
    assert plan(leases, [], expired=set(), balance=True) == []
    moves = plan(leases, ["sw-1"], expired=set(), balance=True)
    assert [(m.lease.lease_key, m.graceful) for m in moves] == [("s1", False)]  # s0 waits: its counter may still move
