"""Deferred deletion of the leases of streams a multi-stream worker no longer consumes."""

from __future__ import annotations

from typing import Any

from streamworker.clock import FakeClock
from streamworker.leases.dynamodb.former_streams import FormerStreamLeases
from streamworker.leases.dynamodb.table import LeaseTable
from streamworker.leases.lease import Lease
from streamworker.records import ExtendedSequenceNumber as ESN

KEEP = "123:keep:1700000000:"
GONE = "123:gone:1700000000:"
OLD = "123:keep:1600000000:"  # an earlier incarnation of a re-created stream


def seed(table: Any, *keys: Any) -> None:
    for key in keys:
        assert table.create_if_absent(Lease(key, checkpoint=ESN("TRIM_HORIZON")))


def keys(table: LeaseTable) -> list[str]:
    return sorted(le.lease_key for le in table.list_leases(consistent=True))


def test_leases_of_gone_and_recreated_streams_go_after_the_delay(table: LeaseTable) -> None:
    clock = FakeClock()
    seed(table, KEEP + "shardId-0", GONE + "shardId-0", GONE + "shardId-1", OLD + "shardId-0", "shardId-9")
    former = FormerStreamLeases(table, 60.0, clock)
    assert former.sweep(table.list_leases(), {KEEP}) == []  # first seen former: the clock starts
    clock.advance(59)
    assert former.sweep(table.list_leases(), {KEEP}) == []
    clock.advance(1)
    assert sorted(former.sweep(table.list_leases(), {KEEP})) == [
        GONE + "shardId-0", GONE + "shardId-1", OLD + "shardId-0"]
    # the current stream's lease stays, and so does a single-stream key (not multi-stream form)
    assert keys(table) == [KEEP + "shardId-0", "shardId-9"]


def test_a_lease_still_renewed_by_some_worker_is_never_deleted(table: LeaseTable) -> None:
    clock = FakeClock()
    seed(table, GONE + "shardId-0")
    former = FormerStreamLeases(table, 60.0, clock)
    held = table.take(table.list_leases()[0], "other-worker")  # a worker that still has the stream
    former.sweep(table.list_leases(), {KEEP})
    for _ in range(4):
        clock.advance(30)
        held = table.renew(held.lease_key, held.lease_counter, "other-worker")
        assert former.sweep(table.list_leases(), {KEEP}) == []
    # the other worker stops renewing (died, or was reconfigured): deleted a delay later
    clock.advance(30)
    assert former.sweep(table.list_leases(), {KEEP}) == []
    clock.advance(30)
    assert former.sweep(table.list_leases(), {KEEP}) == [GONE + "shardId-0"]


def test_a_lease_changed_since_the_scan_is_not_deleted(table: LeaseTable) -> None:
    clock = FakeClock()
    seed(table, GONE + "shardId-0")
    former = FormerStreamLeases(table, 0.0, clock)
    stale = table.list_leases()
    table.take(stale[0], "late-worker")  # between the scan and the delete
    assert former.sweep(stale, {KEEP}) == []
    assert keys(table) == [GONE + "shardId-0"]


def test_a_stream_back_before_the_delay_keeps_its_leases(table: LeaseTable) -> None:
    clock = FakeClock()
    seed(table, GONE + "shardId-0")
    former = FormerStreamLeases(table, 60.0, clock)
    former.sweep(table.list_leases(), {KEEP})
    clock.advance(30)
    former.sweep(table.list_leases(), {KEEP, GONE})  # re-added
    clock.advance(40)
    assert former.sweep(table.list_leases(), {KEEP}) == []  # gone again: the delay starts over
    clock.advance(60)
    assert former.sweep(table.list_leases(), {KEEP}) == [GONE + "shardId-0"]
