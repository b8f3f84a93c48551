"""A follower finds what a KCL 3 leader assigned to it as KCL 3's lease discoverer does: keys from
``LeaseOwnerToLeaseKeyIndex``, then each row read, taken up only when still its own and no
handoff to it is pending."""

from __future__ import annotations

from typing import Any

import structlog

from streamworker.clock import FakeClock
from streamworker.leases.dynamodb.discovery import INDEX_RETRY, OWNER_INDEX, LeaseDiscovery
from streamworker.leases.dynamodb.table import LeaseTable


def with_owner_index(table: LeaseTable) -> None:
    """The index as KCL 3 creates it on the lease table."""
    client: Any = table.client
    client.update_table(TableName=table.table_name,
                        AttributeDefinitions=[{"AttributeName": "leaseOwner", "AttributeType": "S"},
                                              {"AttributeName": "leaseKey", "AttributeType": "S"}],
                        GlobalSecondaryIndexUpdates=[{"Create": {
                            "IndexName": OWNER_INDEX,
                            "KeySchema": [{"AttributeName": "leaseOwner", "KeyType": "HASH"},
                                          {"AttributeName": "leaseKey", "KeyType": "RANGE"}],
                            "Projection": {"ProjectionType": "KEYS_ONLY"}}}])


def lease_row(key: str, owner: str | None, checkpoint_owner: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"leaseKey": {"S": key}, "leaseCounter": {"N": "3"}, "checkpoint": {"S": "TRIM_HORIZON"},
                            "checkpointSubSequenceNumber": {"N": "0"}, "ownerSwitchesSinceCheckpoint": {"N": "0"},
                            "entityType": {"S": "LEASE"}}
    if owner:
        item["leaseOwner"] = {"S": owner}
    if checkpoint_owner:
        item["checkpointOwner"] = {"S": checkpoint_owner}
    return item


def test_the_leases_a_leader_assigned_are_found_by_the_owner_index(table: LeaseTable) -> None:
    with_owner_index(table)
    rows = [lease_row("shard-0", "sw-1"), lease_row("shard-1", "sw-1"), lease_row("shard-2", "kcl-1"),
            lease_row("shard-3", None), lease_row("shard-4", "sw-1", checkpoint_owner="kcl-1")]
    for item in rows:
        table.client.put_item(TableName=table.table_name, Item=item)
    found = LeaseDiscovery(table, "sw-1", structlog.get_logger(), FakeClock())
    assert sorted(found.owned_keys()) == ["shard-0", "shard-1", "shard-4"]
    assert table.calls.get("Query") == 1 and "Scan" not in table.calls
    # shard-0 is held already; shard-4's previous owner is still finishing its handoff
    assert [le.lease_key for le in found.newly_assigned({"shard-0"})] == ["shard-1"]
    table.client.update_item(TableName=table.table_name, Key={"leaseKey": {"S": "shard-4"}},
                             UpdateExpression="REMOVE checkpointOwner")
    assert sorted(le.lease_key for le in found.newly_assigned({"shard-0"})) == ["shard-1", "shard-4"]


def test_a_table_without_the_index_is_scanned_instead(table: LeaseTable) -> None:
    for item in (lease_row("shard-0", "sw-1"), lease_row("shard-1", "kcl-1"), lease_row("shard-2", "sw-1", "kcl-1")):
        table.client.put_item(TableName=table.table_name, Item=item)
    clock = FakeClock()
    found = LeaseDiscovery(table, "sw-1", structlog.get_logger(), clock)
    assert [le.lease_key for le in found.newly_assigned(())] == ["shard-0"]
    assert not found.indexed and table.calls.get("Scan") == 1
    assert sorted(found.owned_keys()) == ["shard-0", "shard-2"] and table.calls.get("Query") == 1
    assert table.calls["Scan"] == 2  # the index is not asked again before INDEX_RETRY


def test_an_index_added_later_is_used_from_its_next_try_on(table: LeaseTable) -> None:
    table.client.put_item(TableName=table.table_name, Item=lease_row("shard-0", "sw-1"))
    clock = FakeClock()
    found = LeaseDiscovery(table, "sw-1", structlog.get_logger(), clock)
    assert found.owned_keys() == ["shard-0"] and table.calls["Scan"] == 1
    with_owner_index(table)  # e.g. added by a worker with client_version 3x, or by KCL 3
    clock.advance(INDEX_RETRY - 1)
    assert found.owned_keys() == ["shard-0"] and table.calls["Scan"] == 2
    clock.advance(1)
    assert found.owned_keys() == ["shard-0"] and found.indexed
    assert table.calls["Scan"] == 2 and table.calls["Query"] == 2
