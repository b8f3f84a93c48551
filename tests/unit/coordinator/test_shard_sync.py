"""Shard sync reads the table consistently only when the take cycle's last scan shows work."""

from __future__ import annotations

from typing import Any

from streamworker.clock import FakeClock
from streamworker.coordinator.shard_sync import ShardSync
from streamworker.leases.dynamodb.coordinator import DynamoDBCoordinator
from streamworker.leases.dynamodb.table import LeaseTable
from streamworker.records import SHARD_END, ExtendedSequenceNumber, InitialPosition
from streamworker.sources.base import ShardInfo
from tests.unit.conftest import row


class Listing:
    """A source whose shard listing the test sets."""

    def __init__(self, shards: list[ShardInfo]) -> None:
        self.shards = shards

    def list_shards(self) -> list[ShardInfo]:
        return list(self.shards)


class Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


def test_a_steady_fleets_shard_sync_reads_nothing_and_a_new_shard_is_still_leased(table: LeaseTable) -> None:
    clock = FakeClock()
    shared = LeaseTable(table.client, table.table_name, clock=clock)
    coordinator = DynamoDBCoordinator(shared, "A", Quiet(), failover_time=10.0, clock=clock)
    source = Listing([ShardInfo("shardId-0"), ShardInfo("shardId-1")])
    sync = ShardSync(shared, coordinator, InitialPosition.TRIM_HORIZON, source=source, streams=None)  # type: ignore[arg-type]

    def scans() -> int:
        return shared.calls.get("Scan", 0)

    sync()  # no take cycle yet: a consistent scan, and the leases
    assert scans() == 1 and {le.lease_key for le in shared.list_leases()} == {"shardId-0", "shardId-1"}
    coordinator.take_cycle()
    before = scans()
    sync()
    assert scans() == before  # the take cycle's scan shows every shard leased: nothing read
    source.shards.append(ShardInfo("shardId-2"))
    sync()
    assert scans() == before + 1 and row(shared, "shardId-2").checkpoint == ExtendedSequenceNumber("TRIM_HORIZON")
    # a parent at SHARD_END whose children are leased is cleaned up, once the scan shows it
    coordinator.take_cycle()
    parent = row(shared, "shardId-0")
    shared.set_checkpoint(parent, ExtendedSequenceNumber(SHARD_END))
    source.shards = [ShardInfo("shardId-0", is_open=False), ShardInfo("shardId-1"), ShardInfo("shardId-2"),
                     ShardInfo("shardId-3", parent_shard_ids=("shardId-0",))]
    sync()  # the scan is stale (no SHARD_END, no child lease): the missing child is the work
    assert row(shared, "shardId-3").parent_shard_ids == {"shardId-0"}
    shared.set_checkpoint(row(shared, "shardId-3"), ExtendedSequenceNumber("49600"))  # the child started
    coordinator.take_cycle()
    before = scans()
    sync()  # the take cycle's scan shows the parent finished and its child going: one consistent scan
    assert scans() == before + 1 and shared.get("shardId-0") is None
