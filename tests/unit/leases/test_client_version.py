"""``client_version = "3x"``: a table with no KCL 3 state is put in KCL 3's default mode as KCL
3.5 puts it (the owner index, ``Migration3.0`` in the row KCL writes); a state already there —
in the lease table or in KCL 3.0–3.4's own table — is followed as it is."""

from __future__ import annotations

from typing import Any

import structlog

from streamworker.clock import FakeClock
from streamworker.leases.dynamodb.discovery import OWNER_INDEX
from streamworker.leases.dynamodb.fleet import Kcl3Fleet
from streamworker.leases.dynamodb.kcl3 import Kcl3Reader
from streamworker.leases.dynamodb.table import LeaseTable
from streamworker.leases.dynamodb.worker_metrics import WorkerMetrics
from tests.unit.leases.test_kcl3_state import legacy_tables, migration_row, put

NOW = 1_800_000_000.0


def fleet(table: LeaseTable, worker_id: str = "sw-1") -> Kcl3Fleet:
    return Kcl3Fleet(table, worker_id, Kcl3Reader(table.client, "unit-app", table),
                     lambda: WorkerMetrics(worker_id, None, wall=lambda: NOW), FakeClock(), failover_time=10.0,
                     max_leases=None, log=structlog.get_logger(), wall=lambda: NOW)


def row(table: LeaseTable, key: str) -> dict[str, Any] | None:
    return table.client.get_item(TableName=table.table_name, Key={"leaseKey": {"S": key}}).get("Item")


def index_of(table: LeaseTable) -> Any:
    described = table.client.describe_table(TableName=table.table_name)["Table"]
    return next((i for i in described.get("GlobalSecondaryIndexes", []) if i["IndexName"] == OWNER_INDEX), None)


def test_a_table_without_kcl_3_state_starts_in_kcl_3s_default_mode(table: LeaseTable) -> None:
    f = fleet(table)
    state = f.start_in_3x()
    assert state.client_version == "CLIENT_VERSION_3X" and f.leader_mode and f.layout == "lease-table"
    written = row(table, "Migration3.0")
    # the shape KCL 3.5.1 writes (migration_row is one it wrote), by this worker at this time
    expected = migration_row("CLIENT_VERSION_3X")
    assert written is not None and set(written) == set(expected)
    assert (written["mb"], written["mts"], written["entityType"]) == (
        {"S": "sw-1"}, {"N": str(int(NOW * 1000))}, expected["entityType"])
    assert written["h"]["L"][0]["M"]["cv"] == {"S": "CLIENT_VERSION_INIT"}
    index = index_of(table)
    assert index is not None and index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["leaseOwner", "leaseKey"]
    # a second worker (or a restart) changes nothing
    again = fleet(table, "sw-2")
    assert again.start_in_3x().client_version == "CLIENT_VERSION_3X"
    assert row(table, "Migration3.0") == written


def test_a_state_already_in_the_lease_table_is_followed_as_it_is(table: LeaseTable) -> None:
    put(table, migration_row("CLIENT_VERSION_UPGRADE_FROM_2X"))  # KCL 3 in compatible mode wrote it
    f = fleet(table)
    assert f.start_in_3x().client_version == "CLIENT_VERSION_UPGRADE_FROM_2X" and not f.leader_mode
    assert row(table, "Migration3.0") == migration_row("CLIENT_VERSION_UPGRADE_FROM_2X")
    assert index_of(table) is None  # nothing else touched either


def test_kcl_3_0_to_3_4s_own_tables_are_followed_and_nothing_written_beside_them(table: LeaseTable) -> None:
    legacy_tables(table.client, "unit-app", "CLIENT_VERSION_3X", {"kcl-1": NOW - 5})
    f = fleet(table)
    assert f.start_in_3x().client_version == "CLIENT_VERSION_3X" and f.layout == "legacy-table"
    assert row(table, "Migration3.0") is None
