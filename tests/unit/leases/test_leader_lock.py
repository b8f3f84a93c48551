"""The leader lock as AWS's DynamoDB lock client holds it: the item KCL 3.5.1 writes, a stale lock
taken only after its own duration with its version unchanged, heartbeats conditional on the
version we wrote, and a release that frees it at once."""

from __future__ import annotations

from typing import Any

from streamworker.clock import FakeClock
from streamworker.leases.dynamodb.leader_lock import LeaderLock
from streamworker.leases.dynamodb.table import LeaseTable
from tests.unit.leases.test_kcl3_state import LEADER_ROW


def lock_item(table: LeaseTable) -> dict[str, Any] | None:
    return table.client.get_item(TableName=table.table_name, Key={"leaseKey": {"S": "Leader"}}).get("Item")


def test_a_free_lock_is_taken_with_kcls_attributes_and_released_at_once(table: LeaseTable) -> None:
    clock = FakeClock()
    versions = iter(["v1", "v2", "v3"])
    lock = LeaderLock(table, "sw-1", clock, duration=30.0, new_version=lambda: next(versions))
    assert lock.try_acquire() and lock.held
    assert lock_item(table) == {"leaseKey": {"S": "Leader"}, "ownerName": {"S": "sw-1"}, "leaseDuration": {"S": "30000"},
                                "recordVersionNumber": {"S": "v1"}, "entityType": {"S": "LEADER"}}
    clock.advance(7)
    assert lock.try_acquire()  # a heartbeat: a new version, conditional on ours
    assert lock_item(table)["recordVersionNumber"] == {"S": "v2"}  # type: ignore[index]
    other = LeaderLock(table, "kcl-2", clock)
    assert not other.try_acquire() and other.holder == "sw-1"
    assert lock.release() and lock_item(table) is None and not lock.held
    assert other.try_acquire()  # free at once, no waiting out the duration


def test_a_kcl_leaders_lock_is_taken_only_after_its_own_duration_unchanged(table: LeaseTable) -> None:
    table.client.put_item(TableName=table.table_name, Item=LEADER_ROW)  # KCL 3.5.1's: 120 s
    clock = FakeClock()
    lock = LeaderLock(table, "sw-1", clock, duration=30.0)
    assert not lock.try_acquire() and lock.holder == "kcl-1"
    clock.advance(119)
    assert not lock.try_acquire()
    # KCL heartbeats: the wait starts again from the new version
    table.client.update_item(TableName=table.table_name, Key={"leaseKey": {"S": "Leader"}},
                             UpdateExpression="SET recordVersionNumber = :v", ExpressionAttributeValues={":v": {"S": "k2"}})
    clock.advance(2)
    assert not lock.try_acquire()
    clock.advance(119)
    assert not lock.try_acquire()
    clock.advance(1)
    assert lock.try_acquire() and lock_item(table)["ownerName"] == {"S": "sw-1"}  # type: ignore[index]


def test_a_lock_taken_over_meanwhile_is_lost_at_the_next_heartbeat(table: LeaseTable) -> None:
    clock = FakeClock()
    lock = LeaderLock(table, "sw-1", clock, duration=30.0)
    assert lock.try_acquire()
    table.client.put_item(TableName=table.table_name, Item=LEADER_ROW)  # someone took it over
    assert not lock.try_acquire() and not lock.held and lock.holder == "kcl-1"
    assert not lock.release()  # not ours: left alone
    assert lock_item(table)["ownerName"] == {"S": "kcl-1"}  # type: ignore[index]


def test_the_lock_of_kcl_3_0_to_3_4_lives_in_the_coordinator_state_table(table: LeaseTable) -> None:
    client: Any = table.client
    client.create_table(TableName="unit-app-CoordinatorState", KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
                        AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
                        BillingMode="PAY_PER_REQUEST")
    lock = LeaderLock(table, "sw-1", FakeClock(), table_name="unit-app-CoordinatorState", key_name="key",
                      entity_type=None)
    assert lock.try_acquire()
    item = client.get_item(TableName="unit-app-CoordinatorState", Key={"key": {"S": "Leader"}})["Item"]
    assert set(item) == {"key", "ownerName", "leaseDuration", "recordVersionNumber"}
