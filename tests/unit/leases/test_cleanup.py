"""Which finished (SHARD_END) leases may be deleted, and that shard sync does not bring them back."""

from __future__ import annotations

from streamworker.leases.dynamodb.cleanup import consumed_by_children, finished_leases_to_delete
from streamworker.leases.lease import Lease
from streamworker.records import ExtendedSequenceNumber as ESN


def lease(key: str, checkpoint: str = "TRIM_HORIZON", parents: tuple[str | str, ...] = (), children: tuple[str | str, ...] = ()) -> Lease:
    return Lease(key, checkpoint=ESN(checkpoint), parent_shard_ids=frozenset(parents),
                 child_shard_ids=frozenset(children))


def keys(leases: list[Lease]) -> list[str]:
    return sorted(le.lease_key for le in leases)


def test_a_parent_goes_once_every_child_has_checkpointed() -> None:
    parent = lease("s-0", "SHARD_END", children=("s-1", "s-2"))
    c1 = lease("s-1", "49500", parents=("s-0",))
    assert keys(finished_leases_to_delete([parent, c1, lease("s-2", "TRIM_HORIZON", parents=("s-0",))])) == []
    assert keys(finished_leases_to_delete([parent, c1])) == []  # a child without a lease yet
    assert keys(finished_leases_to_delete([parent, c1, lease("s-2", "SHARD_END", parents=("s-0",))])) == ["s-0"]


def test_children_are_also_found_by_their_parent_ids_and_unfinished_leases_stay() -> None:
    parent = lease("s-0", "SHARD_END")  # an older row without childShardIds
    assert keys(finished_leases_to_delete([parent])) == []  # no child known: kept
    child = lease("s-1", "123", parents=("s-0",))
    assert keys(finished_leases_to_delete([parent, child])) == ["s-0"]
    assert keys(finished_leases_to_delete([lease("s-0", "999"), child])) == []  # not finished


def test_a_merge_child_waits_for_both_parents_and_lets_each_go() -> None:
    p1, p2 = lease("s-0", "SHARD_END", children=("s-2",)), lease("s-1", "777")
    child = lease("s-2", "TRIM_HORIZON", parents=("s-0", "s-1"))
    assert keys(finished_leases_to_delete([p1, p2, child])) == []
    p2 = lease("s-1", "SHARD_END", children=("s-2",))
    child = lease("s-2", "555", parents=("s-0", "s-1"))
    assert keys(finished_leases_to_delete([p1, p2, child])) == ["s-0", "s-1"]


def test_multi_stream_shard_ids_repeat_across_streams_without_mixing() -> None:
    a, b = "1:a:100:", "1:b:200:"
    leases = [lease(a + "s-0", "SHARD_END", children=("s-1",)), lease(a + "s-1", "42", parents=("s-0",)),
              lease(b + "s-0", "SHARD_END", children=("s-1",)), lease(b + "s-1", "TRIM_HORIZON", parents=("s-0",))]
    assert keys(finished_leases_to_delete(leases)) == [a + "s-0"]
    assert consumed_by_children(leases, a) == {"s-0"} and consumed_by_children(leases, "") == set()
