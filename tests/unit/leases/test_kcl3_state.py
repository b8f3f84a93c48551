"""KCL 3's state (client version, workers, leader), read from the lease table (KCL 3.5) and from
``<app>-CoordinatorState`` / ``<app>-WorkerMetricStats`` (3.0–3.4). Rows are as KCL 3.5.1 wrote
them (captured from its MultiLangDaemon, built from AWS's sources, on moto)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from streamworker.leases.dynamodb.kcl3 import (
    Kcl3Reader,
    Kcl3State,
    coordinator_state_table,
    worker_metrics_table,
)
from streamworker.leases.dynamodb.table import LeaseTable
from streamworker.leases.lease import Lease
from streamworker.records import ExtendedSequenceNumber as ESN


def migration_row(cv: str) -> dict[str, Any]:
    """KCL 3.5.1's Migration3.0 row in the lease table."""
    return {"cv": {"S": cv}, "mb": {"S": "kcl-1"}, "entityType": {"S": "CLIENT_VERSION_MIGRATION"},
            "h": {"L": [{"M": {"cv": {"S": "CLIENT_VERSION_INIT"}, "mb": {"S": "kcl-1"},
                               "mts": {"N": "1796620522689"}}}]},
            "leaseKey": {"S": "Migration3.0"}, "mts": {"N": "1796620522691"}}


def metrics_row(worker: str, lut: float) -> dict[str, Any]:
    """KCL 3.5.1's WORKER_METRIC_STATS row (lut: wall-clock seconds of its last report)."""
    return {"leaseKey": {"S": worker}, "opr": {"M": {}}, "sts": {"M": {}}, "entityType": {"S": "WORKER_METRIC_STATS"},
            "lut": {"N": str(int(lut))}, "slu": {"N": str(int(lut))}, "sup": {"N": "1"}}


LEADER_ROW = {"leaseKey": {"S": "Leader"}, "ownerName": {"S": "kcl-1"},
              "recordVersionNumber": {"S": "e04918ea-b523-45ff-80e0-c67cda1a0e1a"}, "entityType": {"S": "LEADER"},
              "leaseDuration": {"S": "120000"}}
LEASE_ROW = {"checkpoint": {"S": "49680912930667988929618623841025381161169199956462927874"},
             "endingHashKey": {"S": "85070591730234615865843651857942052862"}, "leaseCounter": {"N": "4"},
             "entityType": {"S": "LEASE"}, "ownerSwitchesSinceCheckpoint": {"N": "0"},
             "checkpointSubSequenceNumber": {"N": "0"}, "leaseKey": {"S": "shardId-000000000000"},
             "startingHashKey": {"S": "0"}, "leaseOwner": {"S": "kcl-1"}, "throughputKBps": {"N": "0.018008"}}


def put(table: LeaseTable, *items: dict[str, Any]) -> None:
    for item in items:
        table.client.put_item(TableName=table.table_name, Item=item)


def legacy_tables(client: Any, app: str, cv: str, workers: dict[str, float]) -> None:
    """KCL 3.0–3.4's separate tables, with the items as KCL 3.1 writes them."""
    for name, key in ((coordinator_state_table(app), "key"), (worker_metrics_table(app), "wid")):
        client.create_table(TableName=name, KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
    client.put_item(TableName=coordinator_state_table(app), Item={
        "key": {"S": "Migration3.0"}, "cv": {"S": cv}, "mb": {"S": "kcl-1"}, "mts": {"N": "1764700000000"}})
    for wid, lut in workers.items():
        client.put_item(TableName=worker_metrics_table(app), Item={"wid": {"S": wid}, "lut": {"N": str(int(lut))}})


def reader(table: LeaseTable) -> Kcl3Reader:
    return Kcl3Reader(table.client, "unit-app", table)


NOW = 1_800_000_000.0


def test_kcl35s_coordinator_rows_are_not_leases(table: LeaseTable) -> None:
    put(table, migration_row("CLIENT_VERSION_3X"), metrics_row("kcl-1", NOW), LEADER_ROW, LEASE_ROW)
    leases = table.list_leases()
    assert [le.lease_key for le in leases] == ["shardId-000000000000"]
    assert table.malformed == {}
    assert table.kcl3_workers == {"kcl-1": NOW} and table.kcl3_leader == ("kcl-1", LEADER_ROW["recordVersionNumber"]["S"])


def test_no_kcl3_state(table: LeaseTable) -> None:
    assert reader(table).state() == Kcl3State()


@pytest.mark.parametrize("cv", ["CLIENT_VERSION_2X", "CLIENT_VERSION_UPGRADE_FROM_2X"])
def test_worker_balanced_modes_in_either_place(table: LeaseTable, cv: str) -> None:
    put(table, migration_row(cv), metrics_row("kcl-1", NOW))
    state = reader(table).state()
    assert (state.client_version, state.where, state.leader_mode) == (cv, "unit-app", False)
    table.client.delete_item(TableName=table.table_name, Key={"leaseKey": {"S": "Migration3.0"}})
    legacy_tables(table.client, "unit-app", cv, {"kcl-1": NOW})
    state = reader(table).state()
    assert (state.client_version, state.where, state.leader_mode) == (cv, "unit-app-CoordinatorState", False)


@pytest.mark.parametrize("cv", ["CLIENT_VERSION_3X", "CLIENT_VERSION_3X_WITH_ROLLBACK"])
def test_a_leader_mode_fleet_in_the_lease_table(table: LeaseTable, cv: str) -> None:
    """KCL 3.5: the state is in the lease table, and no CoordinatorState table exists."""
    put(table, migration_row(cv), metrics_row("kcl-1", NOW - 20), LEADER_ROW, LEASE_ROW)
    state = reader(table).state()
    assert state == Kcl3State(cv, "unit-app", {"kcl-1": NOW - 20}, "kcl-1") and state.leader_mode


def test_a_kcl_3_1_fleet_in_its_separate_tables(table: LeaseTable) -> None:
    legacy_tables(table.client, "unit-app", "CLIENT_VERSION_3X", {"kcl-1": NOW - 5})
    table.client.put_item(TableName=coordinator_state_table("unit-app"), Item={
        "key": {"S": "Leader"}, "ownerName": {"S": "kcl-1"}, "recordVersionNumber": {"S": "x"},
        "leaseDuration": {"S": "120000"}})
    state = reader(table).state()
    assert state == Kcl3State("CLIENT_VERSION_3X", "unit-app-CoordinatorState", {"kcl-1": NOW - 5}, "kcl-1")


def test_an_unreadable_state_table_does_not_stop_the_worker(aws_env: None) -> None:
    from botocore.stub import Stubber

    client = boto3.client("dynamodb", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_client_error("get_item", "AccessDeniedException", "not allowed")
    stub.add_client_error("get_item", "AccessDeniedException", "not allowed")
    with stub:
        assert Kcl3Reader(client, "unit-app", LeaseTable(client, "unit-app")).state() == Kcl3State()


def test_a_kcl3_owner_is_asked_for_a_handoff_as_kcl3_asks(table: LeaseTable) -> None:
    """No counter bump (its renewals go on and find checkpointOwner: shutdownRequested); a
    KCL 2 or streamworker owner's counter is bumped as before."""
    put(table, metrics_row("kcl-1", NOW), LEASE_ROW)
    table.create_if_absent(Lease("shardId-000000000001", lease_owner="kcl2-worker", lease_counter=7,
                                 checkpoint=ESN("TRIM_HORIZON")))
    kcl3_lease, kcl2_lease = sorted(table.list_leases(), key=lambda le: le.lease_key)
    asked = table.request_handoff(kcl3_lease, "sw-1", kcl3=True)
    assert (asked.lease_owner, asked.checkpoint_owner, asked.lease_counter) == ("sw-1", "kcl-1", 4)
    raw = table.client.get_item(TableName=table.table_name, Key={"leaseKey": {"S": "shardId-000000000000"}})["Item"]
    assert raw["throughputKBps"] == LEASE_ROW["throughputKBps"] and raw["entityType"] == {"S": "LEASE"}  # KCL's own
    bumped = table.request_handoff(kcl2_lease, "sw-1")
    assert (bumped.lease_owner, bumped.checkpoint_owner, bumped.lease_counter) == ("sw-1", "kcl2-worker", 8)
