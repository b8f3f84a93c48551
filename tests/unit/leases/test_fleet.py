"""A worker in a KCL 3 fleet's leader mode: it follows the leader's assignments (never takes or
steals), reports its metrics where KCL 3 reads them, leads when it holds the lock, follows a flip
of ``Migration3.0`` without dropping a lease, and gives the lock up at once when it stops."""

from __future__ import annotations

from typing import Any

import structlog

from streamworker.clock import FakeClock
from streamworker.leases.dynamodb.coordinator import DynamoDBCoordinator
from streamworker.leases.dynamodb.fleet import Kcl3Fleet
from streamworker.leases.dynamodb.kcl3 import Kcl3Reader
from streamworker.leases.dynamodb.table import LeaseTable
from streamworker.leases.dynamodb.worker_metrics import WorkerMetrics
from streamworker.leases.lease import Lease
from streamworker.records import ExtendedSequenceNumber as ESN
from tests.unit.leases.test_discovery import with_owner_index
from tests.unit.leases.test_kcl3_state import LEADER_ROW, metrics_row, migration_row, put

NOW = 1_800_000_000.0


class Listener:
    def __init__(self) -> None:
        self.acquired: list[str] = []
        self.lost: list[str] = []

    def lease_acquired(self, lease: Lease) -> None:
        self.acquired.append(lease.lease_key)

    def lease_lost(self, key: str) -> None:
        self.lost.append(key)

    def handoff_requested(self, key: str) -> None: ...

    def coordinator_failed(self, error: str) -> None:
        raise AssertionError(error)


def worker(table: LeaseTable, clock: FakeClock, worker_id: str = "sw-1") -> tuple[DynamoDBCoordinator, Listener]:
    listener = Listener()
    fleet = Kcl3Fleet(table, worker_id, Kcl3Reader(table.client, "unit-app", table),
                      lambda: WorkerMetrics(worker_id, None, wall=lambda: NOW), clock, failover_time=10.0,
                      max_leases=None, log=structlog.get_logger(), wall=lambda: NOW)
    fleet.refresh()
    return DynamoDBCoordinator(table, worker_id, listener, clock=clock, kcl3=fleet), listener


def leases(table: LeaseTable, owners: dict[str, str | None]) -> None:
    for key, owner in owners.items():
        table.create_if_absent(Lease(key, lease_owner=owner, lease_counter=1, checkpoint=ESN("TRIM_HORIZON")))


def pass_time(c: DynamoDBCoordinator, clock: FakeClock, seconds: float) -> None:
    """Let ``seconds`` pass with the worker renewing on time, then run a take cycle."""
    for _ in range(int(seconds // 2)):
        clock.advance(2)
        c.renew_all()
    c.take_cycle()


def owners(table: LeaseTable) -> dict[str, str | None]:
    return {le.lease_key: le.lease_owner for le in table.list_leases(consistent=True)}


def test_a_follower_takes_nothing_and_starts_what_the_leader_assigns(table: LeaseTable) -> None:
    with_owner_index(table)
    put(table, migration_row("CLIENT_VERSION_3X"), metrics_row("kcl-1", NOW - 5), LEADER_ROW)
    leases(table, {"s0": None, "s1": "kcl-1", "s2": "kcl-1"})
    clock = FakeClock()
    c, listener = worker(table, clock)
    assert c.kcl3 is not None and c.kcl3.leader_mode
    c.take_cycle()
    assert listener.acquired == [] and owners(table) == {"s0": None, "s1": "kcl-1", "s2": "kcl-1"}
    assert c.kcl3.lock is not None and c.kcl3.lock.holder == "kcl-1" and not c.kcl3.leading
    # the metrics loop's report: the row KCL's leader reads, with the owner the index lists
    c.kcl3.capture()
    assert c.kcl3.report()
    assert table.list_leases() and table.kcl3_workers == {"kcl-1": NOW - 5, "sw-1": NOW}
    # KCL's leader assigns s0 (assignLease: owner and counter)
    table.take(table.get("s0"), "sw-1")  # type: ignore[arg-type]
    c.take_cycle()
    assert listener.acquired == ["s0"] and c.held_keys() == ["s0"]
    assert c.renew_all() is False and owners(table)["s0"] == "sw-1"  # renewed at the leader's counter


def test_a_worker_follows_a_flip_to_leader_mode_and_back_without_dropping_a_lease(table: LeaseTable) -> None:
    put(table, migration_row("CLIENT_VERSION_UPGRADE_FROM_2X"), metrics_row("kcl-1", NOW - 5))
    leases(table, {"s0": None, "s1": None})
    clock = FakeClock()
    c, listener = worker(table, clock)
    c.take_cycle()
    assert sorted(listener.acquired) == ["s0", "s1"]  # KCL 2's algorithm: it takes free leases
    put(table, migration_row("CLIENT_VERSION_3X"), LEADER_ROW)  # KCL's migration script flips the table
    leases(table, {"s2": None})
    pass_time(c, clock, 62)
    assert c.kcl3 is not None and c.kcl3.leader_mode
    assert sorted(c.held_keys()) == ["s0", "s1"] and listener.lost == []
    assert owners(table)["s2"] is None  # the leader's to assign, not ours to take
    put(table, migration_row("CLIENT_VERSION_2X"))  # rolled back
    pass_time(c, clock, 62)
    assert sorted(c.held_keys()) == ["s0", "s1", "s2"] and listener.lost == []


def test_with_no_live_leader_a_worker_leads_and_assigns_by_lease_count(table: LeaseTable) -> None:
    put(table, migration_row("CLIENT_VERSION_3X"), metrics_row("kcl-2", NOW - 5), metrics_row("sw-1", NOW - 1))
    leases(table, {f"s{i}": None for i in range(4)} | {"s4": "kcl-2", "s5": "kcl-2", "s6": "kcl-2", "s7": "kcl-2"})
    clock = FakeClock()
    c, listener = worker(table, clock)
    c.take_cycle()
    assert c.kcl3 is not None and c.kcl3.leading
    after = owners(table)
    assert sum(o == "sw-1" for o in after.values()) == 4 and sum(o == "kcl-2" for o in after.values()) == 4
    # it found its own assignments through the scan fallback (no index on this table)
    assert sorted(listener.acquired) == ["s0", "s1", "s2", "s3"]


def test_a_leader_balances_by_graceful_handoff_and_gives_the_lock_up_when_stopping(table: LeaseTable) -> None:
    put(table, migration_row("CLIENT_VERSION_3X"), metrics_row("kcl-2", NOW - 5), metrics_row("sw-1", NOW - 1))
    leases(table, {f"s{i}": "kcl-2" for i in range(4)})
    clock = FakeClock()
    c, _ = worker(table, clock)
    c.take_cycle()
    rows = {le.lease_key: le for le in table.list_leases(consistent=True)}
    handed = sorted(k for k, le in rows.items() if le.checkpoint_owner == "kcl-2")
    assert len(handed) == 2 and all(rows[k].lease_owner == "sw-1" and rows[k].lease_counter == 1 for k in handed)
    c.stop_taking()
    client: Any = table.client
    assert "Item" not in client.get_item(TableName=table.table_name, Key={"leaseKey": {"S": "Leader"}})
    assert "Item" not in client.get_item(TableName=table.table_name, Key={"leaseKey": {"S": "sw-1"}})


def test_a_leader_stops_assigning_to_a_worker_that_left_its_fresh_row_behind(table: LeaseTable) -> None:
    """KCL 3.5.1 stopped with SIGTERM releases its leases and leaves its metrics row, fresh for a
    minute: a lease assigned to it expires unstarted, and from then on goes elsewhere."""
    put(table, migration_row("CLIENT_VERSION_3X"), metrics_row("kcl-gone", NOW - 3))
    leases(table, {"s0": None, "s1": None})
    clock = FakeClock()
    c, listener = worker(table, clock)
    c.take_cycle()
    first = owners(table)
    assert sorted(str(o) for o in first.values()) == ["kcl-gone", "sw-1"]  # one each: the row looks alive
    pass_time(c, clock, 12)  # a failover time and an assignment interval: kcl-gone never renewed
    pass_time(c, clock, 12)
    assert owners(table) == {"s0": "sw-1", "s1": "sw-1"} and sorted(listener.acquired) == ["s0", "s1"]
