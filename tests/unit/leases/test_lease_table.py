from __future__ import annotations

import pytest

from streamworker.leases.dynamodb.table import LeaseConflict, LeaseTable
from streamworker.leases.lease import Lease, lease_from_item
from streamworker.records import ExtendedSequenceNumber as ESN
from tests.unit.conftest import row


def test_table_is_created_pay_per_request_with_kcl_key(table: LeaseTable) -> None:
    desc = table.client.describe_table(TableName="unit-app")["Table"]
    assert desc["KeySchema"] == [{"AttributeName": "leaseKey", "KeyType": "HASH"}]
    assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table.ensure_table() is False  # idempotent


def test_kcl_java_rows_are_read_as_is(table: LeaseTable) -> None:
    # A row exactly as KCL Java's DynamoDBLeaseSerializer writes it (3.x, mid-handoff).
    table.client.put_item(TableName="unit-app", Item={
        "leaseKey": {"S": "shardId-000000000007"}, "leaseOwner": {"S": "java-worker"},
        "leaseCounter": {"N": "42"}, "ownerSwitchesSinceCheckpoint": {"N": "1"},
        "checkpoint": {"S": "49590338271490256608559692538361571095921575989136588898"},
        "checkpointSubSequenceNumber": {"N": "3"},
        "pendingCheckpoint": {"S": "49590338271490256608559692538361571095921575989136588899"},
        "pendingCheckpointSubSequenceNumber": {"N": "0"},
        "parentShardId": {"SS": ["shardId-000000000001", "shardId-000000000002"]},
        "childShardIds": {"SS": ["shardId-000000000009"]},
        "startingHashKey": {"S": "0"}, "endingHashKey": {"S": "170141183460469231731687303715884105727"},
        "checkpointOwner": {"S": "java-worker-old"}, "throughputKBps": {"N": "12.5"},
    })
    (lease,) = table.list_leases()
    assert lease.lease_key == "shardId-000000000007" and lease.shard_id == "shardId-000000000007"
    assert lease.lease_owner == "java-worker" and lease.lease_counter == 42
    assert lease.checkpoint == ESN("49590338271490256608559692538361571095921575989136588898", 3)
    assert lease.pending_checkpoint == ESN("49590338271490256608559692538361571095921575989136588899", 0)
    assert lease.parent_shard_ids == {"shardId-000000000001", "shardId-000000000002"}
    assert lease.child_shard_ids == {"shardId-000000000009"}
    assert lease.checkpoint_owner == "java-worker-old"
    assert lease_from_item({"leaseKey": {"S": "acct:stream:1700000000:shardId-3"}}).shard_id == "shardId-3"


def test_create_if_absent_never_overwrites(table: LeaseTable) -> None:
    assert table.create_if_absent(Lease("s1"))
    table.take(row(table, "s1"), "A")
    assert not table.create_if_absent(Lease("s1"))
    assert row(table, "s1").lease_owner == "A"


def test_every_write_is_fenced_by_the_counter(table: LeaseTable) -> None:
    table.create_if_absent(Lease("s1"))
    taken = table.take(row(table, "s1"), "A")
    assert taken.lease_owner == "A" and taken.lease_counter == 1
    renewed = table.renew("s1", 1, "A")
    assert renewed.lease_counter == 2
    # B takes it over (say A looked expired to B)
    table.take(renewed, "B")
    # A, still believing counter 2, is fenced out of every write
    with pytest.raises(LeaseConflict):
        table.renew("s1", 2, "A")
    with pytest.raises(LeaseConflict):
        table.checkpoint("s1", 2, "A", ESN("100"), None)
    with pytest.raises(LeaseConflict):
        table.release("s1", 2, "A")
    # a stale taker is fenced as well
    with pytest.raises(LeaseConflict):
        table.take(renewed, "C")
    current = row(table, "s1")
    assert current.lease_owner == "B" and current.checkpoint == ESN("TRIM_HORIZON")
    assert current.owner_switches_since_checkpoint == 1


def test_checkpoint_writes_kcl_fields_and_clears_pending(table: LeaseTable) -> None:
    table.create_if_absent(Lease("s1"))
    le = table.take(row(table, "s1"), "A")
    le = table.prepare_checkpoint("s1", le.lease_counter, "A", ESN("55", 2))
    assert le.pending_checkpoint == ESN("55", 2)
    le = table.checkpoint("s1", le.lease_counter, "A", ESN("55", 2), None)
    raw = table.client.get_item(TableName="unit-app", Key={"leaseKey": {"S": "s1"}})["Item"]
    assert raw["checkpoint"] == {"S": "55"} and raw["checkpointSubSequenceNumber"] == {"N": "2"}
    assert "pendingCheckpoint" not in raw and raw["ownerSwitchesSinceCheckpoint"] == {"N": "0"}


def test_release_lets_anyone_take_at_once(table: LeaseTable) -> None:
    table.create_if_absent(Lease("s1"))
    le = table.take(row(table, "s1"), "A")
    released = table.release("s1", le.lease_counter, "A")
    assert released.lease_owner is None
    assert table.take(released, "B").lease_owner == "B"


def test_graceful_handoff_follows_kcl3_checkpoint_owner(table: LeaseTable) -> None:
    table.create_if_absent(Lease("s1"))
    le = table.take(row(table, "s1"), "A")
    handed = table.request_handoff(le, "B")
    assert handed.lease_owner == "B" and handed.checkpoint_owner == "A"
    # A renews and checkpoints as checkpoint owner, not as lease owner
    with pytest.raises(LeaseConflict):
        table.renew("s1", handed.lease_counter, "A")
    le = table.renew("s1", handed.lease_counter, "A", as_checkpoint_owner=True)
    le = table.checkpoint("s1", le.lease_counter, "A", ESN("77"), None, as_checkpoint_owner=True)
    # B may not act as owner while the handoff is open
    with pytest.raises(LeaseConflict):
        table.renew("s1", le.lease_counter, "B")
    done = table.release("s1", le.lease_counter, "A", as_checkpoint_owner=True)
    assert done.lease_owner == "B" and done.checkpoint_owner is None and done.checkpoint == ESN("77")
    assert table.renew("s1", done.lease_counter, "B").lease_owner == "B"
    # a second handoff request on a lease already in handoff is refused
    again = table.request_handoff(row(table, "s1"), "C")
    with pytest.raises(LeaseConflict):
        table.request_handoff(again.with_counter(again.lease_counter), "D")


def test_a_handoff_request_lands_though_the_owner_renewed_since_the_scan(table: LeaseTable) -> None:
    """Fenced on the owner, not the counter: a large table's owner renews every lease every
    failover/3, and a thief's scan is always a renewal or two behind."""
    table.create_if_absent(Lease("s1"))
    seen = table.take(row(table, "s1"), "A")
    table.renew("s1", seen.lease_counter, "A")
    handed = table.request_handoff(seen, "B")
    assert handed.lease_owner == "B" and handed.checkpoint_owner == "A"
    assert handed.lease_counter == seen.lease_counter + 2  # bumped: a KCL 2 owner's renewal fails
    done = table.release("s1", handed.lease_counter, "A", as_checkpoint_owner=True)
    assert done.lease_owner == "B"
    with pytest.raises(LeaseConflict):  # a view in which A still owns it is refused now
        table.request_handoff(seen, "C")
