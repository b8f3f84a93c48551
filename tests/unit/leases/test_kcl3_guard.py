"""KCL 3's state decides whether streamworker may share the lease table: read from the lease table
(KCL 3.5) and from ``<app>-CoordinatorState`` / ``<app>-WorkerMetricStats`` (3.0–3.4); leader mode
is refused only while its fleet is alive. Rows are as KCL 3.5.1 wrote them (captured from its
MultiLangDaemon, built from AWS's sources, on moto)."""

from __future__ import annotations

import time
from typing import Any

import boto3
import pytest

from streamworker.clock import FakeClock
from streamworker.leases.dynamodb.kcl3 import (
    Kcl3Guard,
    Kcl3LeaderMode,
    coordinator_state_table,
    worker_metrics_table,
)
from streamworker.leases.dynamodb.table import LeaseTable, LeaseTableFatal
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


def guard(table: LeaseTable, now: float = 1_800_000_000.0, watch: float = 11.0) -> Kcl3Guard:
    return Kcl3Guard(table.client, "unit-app", table, watch=watch, clock=FakeClock(), wall=lambda: now)


NOW = 1_800_000_000.0


def test_kcl35s_coordinator_rows_are_not_leases(table: LeaseTable) -> None:
    put(table, migration_row("CLIENT_VERSION_3X"), metrics_row("kcl-1", NOW), LEADER_ROW, LEASE_ROW)
    leases = table.list_leases()
    assert [le.lease_key for le in leases] == ["shardId-000000000000"]
    assert table.malformed == {}
    assert table.kcl3_workers == {"kcl-1": NOW} and table.kcl3_leader == ("kcl-1", LEADER_ROW["recordVersionNumber"]["S"])


def test_no_kcl3_state_is_safe(table: LeaseTable) -> None:
    assert guard(table).check() is None


@pytest.mark.parametrize("cv", ["CLIENT_VERSION_2X", "CLIENT_VERSION_UPGRADE_FROM_2X"])
def test_worker_balanced_modes_are_safe_in_either_place(table: LeaseTable, cv: str) -> None:
    put(table, migration_row(cv), metrics_row("kcl-1", NOW))
    assert guard(table).check() == cv
    table.client.delete_item(TableName=table.table_name, Key={"leaseKey": {"S": "Migration3.0"}})
    legacy_tables(table.client, "unit-app", cv, {"kcl-1": NOW})
    assert guard(table).check() == cv


@pytest.mark.parametrize("cv", ["CLIENT_VERSION_3X", "CLIENT_VERSION_3X_WITH_ROLLBACK"])
def test_a_live_leader_mode_fleet_in_the_lease_table_is_refused_with_one_line(table: LeaseTable, cv: str) -> None:
    """KCL 3.5: the state is in the lease table, and no CoordinatorState table exists (the old
    guard took that as safe, and a worker took 2 of a live KCL 3.5.1 worker's 4 leases)."""
    put(table, migration_row(cv), metrics_row("kcl-1", NOW - 20), LEADER_ROW, LEASE_ROW)
    with pytest.raises(Kcl3LeaderMode) as err:
        guard(table).check()
    assert isinstance(err.value, LeaseTableFatal)  # a running worker stops on it too
    message = str(err.value)
    assert "\n" not in message and cv in message and "unit-app:" in message and "kcl-1" in message
    assert "COMPATIBLE_WITH_2X" in message


def test_a_live_kcl_3_1_fleet_in_its_separate_tables_is_refused(table: LeaseTable) -> None:
    legacy_tables(table.client, "unit-app", "CLIENT_VERSION_3X", {"kcl-1": NOW - 5})
    table.client.put_item(TableName=coordinator_state_table("unit-app"), Item={
        "key": {"S": "Leader"}, "ownerName": {"S": "kcl-1"}, "recordVersionNumber": {"S": "x"},
        "leaseDuration": {"S": "120000"}})
    with pytest.raises(Kcl3LeaderMode, match="unit-app-CoordinatorState"):
        guard(table).check()


def test_a_fleet_stopped_gracefully_a_moment_ago_is_continued_at_once(table: LeaseTable) -> None:
    """KCL 3.5.1's SIGTERM: its leader row deleted, its leases released, its metrics row left
    (lut a few seconds old). Nothing to watch: continued without waiting."""
    released = {k: v for k, v in LEASE_ROW.items() if k != "leaseOwner"}
    put(table, migration_row("CLIENT_VERSION_3X"), metrics_row("kcl-1", NOW - 5), released)
    g = guard(table)
    started = g._clock.monotonic()
    assert g.check() == "CLIENT_VERSION_3X"
    assert g._clock.monotonic() - started == 0


def test_a_stopped_leader_mode_fleet_is_continued(table: LeaseTable) -> None:
    """Metrics older than KCL's own expiry and no counter moving while watched: the fleet is
    gone (a LEADER row left by a kill -9 is no sign of life), its table is continued."""
    put(table, migration_row("CLIENT_VERSION_3X"), metrics_row("kcl-1", NOW - 600), LEADER_ROW, LEASE_ROW)
    g = guard(table)
    started = g._clock.monotonic()
    assert g.check() == "CLIENT_VERSION_3X"
    assert g._clock.monotonic() - started >= 11.0  # it watched the counters for the whole window


def test_a_leader_mode_fleet_renewing_its_leases_is_refused_even_with_stale_metrics(table: LeaseTable) -> None:
    """Metrics are wall-clock seconds written by another machine; a renewal seen here is not."""
    put(table, migration_row("CLIENT_VERSION_3X"), metrics_row("kcl-1", NOW - 600), LEASE_ROW)
    scans = {"n": 0}
    real = table.list_leases

    def renewing(**kw: Any) -> list[Lease]:
        scans["n"] += 1
        if scans["n"] == 4:  # KCL renews while we watch
            table.client.update_item(TableName=table.table_name, Key={"leaseKey": {"S": "shardId-000000000000"}},
                                     UpdateExpression="SET leaseCounter = :c", ExpressionAttributeValues={":c": {"N": "5"}})
        return real(**kw)

    table.list_leases = renewing  # type: ignore[method-assign]
    with pytest.raises(Kcl3LeaderMode, match="kcl-1 renewed lease shardId-000000000000"):
        guard(table).check()


def test_a_running_worker_stops_when_a_live_kcl3_fleet_turns_to_leader_mode(table: LeaseTable) -> None:
    from streamworker.leases.dynamodb.coordinator import DynamoDBCoordinator

    class Listener:
        def lease_acquired(self, lease: Any) -> None: ...
        def lease_lost(self, key: Any) -> None: ...
        def handoff_requested(self, key: Any) -> None: ...
        def coordinator_failed(self, error: Any) -> None: ...

    clock = FakeClock()
    g = Kcl3Guard(table.client, "unit-app", table, clock=clock, wall=time.time)
    c = DynamoDBCoordinator(table, "w1", Listener(), clock=clock, mode_check=g.recheck, mode_check_interval=60)
    put(table, migration_row("CLIENT_VERSION_UPGRADE_FROM_2X"), metrics_row("kcl-1", time.time()))
    c.take_cycle()
    put(table, migration_row("CLIENT_VERSION_3X"), LEADER_ROW)  # KCL's migration script flipped it
    c.take_cycle()  # not due yet: no extra read per cycle
    clock.advance(61)
    with pytest.raises(Kcl3LeaderMode):  # _loop turns a LeaseTableFatal into coordinator_failed, exit 1
        c.take_cycle()


def test_an_unreadable_state_table_does_not_stop_the_worker(aws_env: None) -> None:
    from botocore.stub import Stubber

    client = boto3.client("dynamodb", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_client_error("get_item", "AccessDeniedException", "not allowed")
    stub.add_client_error("get_item", "AccessDeniedException", "not allowed")
    with stub:
        assert Kcl3Guard(client, "unit-app", LeaseTable(client, "unit-app")).check() is None


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
