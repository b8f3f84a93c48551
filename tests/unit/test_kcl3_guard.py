"""KCL 3's coordinator state decides whether streamworker may share the lease table."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from streamworker.coordinators.kcl3 import Kcl3Guard, Kcl3LeaderMode, coordinator_state_table
from streamworker.coordinators.lease_table import LeaseTable, LeaseTableFatal


def write_state(client: Any, app: Any, cv: Any) -> None:
    name = coordinator_state_table(app)
    try:
        client.create_table(TableName=name, KeySchema=[{"AttributeName": "key", "KeyType": "HASH"}],
                            AttributeDefinitions=[{"AttributeName": "key", "AttributeType": "S"}],
                            BillingMode="PAY_PER_REQUEST")
    except client.exceptions.ResourceInUseException:
        pass
    # the item as KCL 3.1's MigrationState writes it (cv, mb, mts, h)
    client.put_item(TableName=name, Item={"key": {"S": "Migration3.0"}, "cv": {"S": cv}, "mb": {"S": "kcl-1"},
                                          "mts": {"N": "1764700000000"}})


def test_no_kcl3_table_is_safe(table: LeaseTable) -> None:
    assert Kcl3Guard(table.client, "unit-app").check() is None


@pytest.mark.parametrize("cv", ["CLIENT_VERSION_2X", "CLIENT_VERSION_UPGRADE_FROM_2X"])
def test_worker_balanced_modes_are_safe(table: LeaseTable, cv: Any) -> None:
    write_state(table.client, "unit-app", cv)
    assert Kcl3Guard(table.client, "unit-app").check() == cv


@pytest.mark.parametrize("cv", ["CLIENT_VERSION_3X", "CLIENT_VERSION_3X_WITH_ROLLBACK"])
def test_leader_modes_are_refused_with_one_line(table: LeaseTable, cv: Any) -> None:
    write_state(table.client, "unit-app", cv)
    with pytest.raises(Kcl3LeaderMode) as err:
        Kcl3Guard(table.client, "unit-app").check()
    assert isinstance(err.value, LeaseTableFatal)  # a running worker stops on it too
    message = str(err.value)
    assert "\n" not in message and cv in message and "unit-app-CoordinatorState" in message
    assert "COMPATIBLE_WITH_2X" in message


def test_the_running_coordinator_stops_when_kcl3_flips_to_leader_mode(table: LeaseTable) -> None:
    from streamworker.clock import FakeClock
    from streamworker.coordinators.dynamodb import DynamoDBCoordinator

    class Listener:
        def lease_acquired(self, lease: Any) -> None: ...
        def lease_lost(self, key: Any) -> None: ...
        def handoff_requested(self, key: Any) -> None: ...
        def coordinator_failed(self, error: Any) -> None: ...

    clock = FakeClock()
    guard = Kcl3Guard(table.client, "unit-app")
    c = DynamoDBCoordinator(table, "w1", Listener(), clock=clock, mode_check=guard.check, mode_check_interval=60)
    c.take_cycle()
    write_state(table.client, "unit-app", "CLIENT_VERSION_3X_WITH_ROLLBACK")
    c.take_cycle()  # not due yet: no extra read per cycle
    clock.advance(61)
    with pytest.raises(Kcl3LeaderMode):  # _loop turns a LeaseTableFatal into coordinator_failed, exit 1
        c.take_cycle()


def test_an_unreadable_state_table_does_not_stop_the_worker(aws_env: None) -> None:
    from botocore.stub import Stubber

    client = boto3.client("dynamodb", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_client_error("get_item", "AccessDeniedException", "not allowed")
    with stub:
        assert Kcl3Guard(client, "unit-app").check() is None
