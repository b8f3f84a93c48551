from __future__ import annotations

import threading
import time
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest
from structlog.testing import capture_logs

from streamworker.clock import FakeClock
from streamworker.errors import LeaseLostError
from streamworker.leases.base import ShardFigures
from streamworker.leases.dynamodb.coordinator import DynamoDBCoordinator
from streamworker.leases.dynamodb.table import LeaseTable, LeaseTableUnavailable
from streamworker.leases.lease import Lease
from streamworker.records import ExtendedSequenceNumber as ESN
from streamworker.records import InitialPosition
from streamworker.sources.base import ShardInfo
from tests.unit.conftest import row


def held(coordinator: Any, key: str) -> Lease:
    """The coordinator's current holding of ``key`` (which it must hold)."""
    holding = coordinator.holding(key)
    assert holding is not None, f"{key} is not held"
    return holding  # type: ignore[no-any-return]

class Events:
    def __init__(self) -> None:
        self.acquired: list[Any] = []
        self.lost: list[Any] = []
        self.handoff: list[Any] = []
        self.failed: list[str] = []

    def lease_acquired(self, lease: Any) -> None:
        self.acquired.append(lease.lease_key)

    def lease_lost(self, key: Any) -> None:
        self.lost.append(key)

    def handoff_requested(self, key: Any) -> None:
        self.handoff.append(key)

    def coordinator_failed(self, error: str) -> None:
        self.failed.append(error)


FAILOVER = 10.0


@pytest.fixture
def fleet(table: Any) -> Any:
    clock = FakeClock()
    shared = LeaseTable(table.client, table.table_name, clock=clock)

    def make(name: Any) -> Any:
        ev = Events()
        return DynamoDBCoordinator(shared, name, ev, failover_time=FAILOVER, clock=clock), ev

    shards = [ShardInfo(f"shardId-{i}") for i in range(4)]
    a, ev_a = make("A")
    a.ensure_leases(shards, InitialPosition.TRIM_HORIZON)
    b, ev_b = make("B")
    return clock, (a, ev_a), (b, ev_b)


def test_leases_are_created_with_lineage_and_children_start_at_trim_horizon(table: LeaseTable) -> None:
    c = DynamoDBCoordinator(table, "A", Events(), clock=FakeClock())
    shards = [ShardInfo("closed", is_open=False), ShardInfo("open-1"),
              ShardInfo("child", parent_shard_ids=("closed",), starting_hash_key="0", ending_hash_key="9")]
    assert sorted(c.ensure_leases(shards, InitialPosition.LATEST)) == ["child", "open-1"]
    child = row(table, "child")
    assert child.checkpoint == ESN("LATEST")  # its parent was skipped under LATEST
    assert child.parent_shard_ids == {"closed"} and child.ending_hash_key == "9"
    c2 = DynamoDBCoordinator(table, "A", Events(), clock=FakeClock())
    table.delete_all()
    c2.ensure_leases(shards, InitialPosition.TRIM_HORIZON)
    assert row(table, "child").checkpoint == ESN("TRIM_HORIZON")
    assert row(table, "closed").checkpoint == ESN("TRIM_HORIZON")


def test_second_worker_gets_half_by_graceful_handoff(fleet: Any) -> None:
    clock, (a, ev_a), (b, ev_b) = fleet
    a.take_cycle()
    assert len(a.held_keys()) == 4
    b.take_cycle()
    assert b.held_keys() == [] and b.stats.stolen == 2  # handoff requested, not yet granted
    clock.advance(a.renew_interval)  # A learns of it at its next renewal
    a.renew_all()
    assert len(ev_a.handoff) == 2 and ev_a.lost == []
    # A's consumers checkpoint (as checkpoint owner) and release, as ShardConsumer does
    for key in ev_a.handoff:
        a.checkpoint(held(a, key), ESN("100"))
        assert a.release(held(a, key))
    b.take_cycle()
    assert sorted(b.held_keys()) == sorted(ev_a.handoff)
    assert len(a.held_keys()) == 2
    assert all(b.current_lease(k).checkpoint == ESN("100") for k in b.held_keys())
    # balanced now: further cycles move nothing
    for _ in range(3):
        clock.advance(1)
        a.renew_all(), b.renew_all(), a.take_cycle(), b.take_cycle()
    assert len(a.held_keys()) == len(b.held_keys()) == 2 and ev_a.lost == ev_b.lost == []


def test_a_handoff_finishes_though_the_owners_renewals_run_late(fleet: Any) -> None:
    """At 200 leases a renewal in flight can outlast the holding's validity: the consumer's
    release was refused for it, the renewal then succeeded, and the coordinator went on renewing
    the lease as checkpoint owner while its consumer had ended: the handoff never finished
    (benchmarks/balance.py stalled with 71 of 100 leases in handoff). The release is fenced by
    the counter alone."""
    clock, (a, ev_a), (b, ev_b) = fleet
    a.take_cycle()
    b.take_cycle()  # B asks for two leases
    clock.advance(a.renew_interval)
    a.renew_all()
    assert len(ev_a.handoff) == 2
    clock.advance(FAILOVER * 0.8 + 0.1)  # no renewal since: past its validity, not yet expired
    for key in ev_a.handoff:
        assert a.release(held(a, key))
    assert sorted(a.held_keys()) == sorted(set(row_keys(a)) - set(ev_a.handoff))
    b.take_cycle()
    assert sorted(b.held_keys()) == sorted(ev_a.handoff) and ev_a.lost == []


@pytest.mark.parametrize("endpoint", ["dynamodb", "dynalite", "predates-the-parameter"])
def test_a_refused_renewal_learns_why_from_the_refusal(fleet: Any, endpoint: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A renewal refused by a handoff request or a takeover learns which from the row the
    refusal carries (DynamoDB's ReturnValuesOnConditionCheckFailure): during a handoff storm each
    refused renewal cost a GetItem as well. A table that sends no row (dynalite ignores the
    parameter) is read instead, to the same end, and so is one whose endpoint refuses the
    parameter (said once; no write is lost to it)."""
    clock, (a, ev_a), (b, ev_b) = fleet
    table = a.table
    table_sends_row = endpoint == "dynamodb"
    update_item = table.client.update_item
    refusals, lock = [0], threading.Lock()
    two_at_once = threading.Barrier(2, timeout=10)  # the take cycle's parallel writes meet the refusal together

    def without_row(**kwargs: Any) -> Any:
        if "ReturnValuesOnConditionCheckFailure" in kwargs and endpoint == "predates-the-parameter":
            with lock:
                refusals[0] += 1
                first_two = refusals[0] <= 2
            if first_two:
                two_at_once.wait()
            raise botocore.exceptions.ClientError(
                {"Error": {"Code": "ValidationException",
                           "Message": "Unexpected field: ReturnValuesOnConditionCheckFailure"}}, "UpdateItem")
        kwargs.pop("ReturnValuesOnConditionCheckFailure", None)
        return update_item(**kwargs)

    if not table_sends_row:
        monkeypatch.setattr(table.client, "update_item", without_row)
    with capture_logs() as logs:  # from the first write: takes meet the endpoint first
        a.take_cycle()
        b.take_cycle()  # B asks A for two leases
        taken_by_c = next(k for k in a.held_keys() if k not in {le.lease_key for le in table.list_leases(consistent=True)
                                                                   if le.checkpoint_owner == "A"})
        table.take(row(table, taken_by_c), "C")  # and C takes a third one outright
        counters = {le.lease_key: le.lease_counter for le in table.list_leases(consistent=True)}
        gets = table.calls.get("GetItem", 0)
        clock.advance(a.renew_interval)
        a.renew_all()
    refused = [e for e in logs if "refuses ReturnValuesOnConditionCheckFailure" in e["event"]]
    assert len(refused) == (1 if endpoint == "predates-the-parameter" else 0)
    assert len(ev_a.handoff) == 2 and ev_a.lost == [taken_by_c]
    assert table.calls.get("GetItem", 0) - gets == (0 if table_sends_row else 3)
    for key in ev_a.handoff:  # then renewed as checkpoint owner, which only a known handoff is
        now = row(table, key)
        assert key in a.held_keys() and (now.lease_owner, now.checkpoint_owner) == ("B", "A")
        assert now.lease_counter == counters[key] + 1
    assert taken_by_c not in a.held_keys() and row(table, taken_by_c).lease_owner == "C"


def test_renewals_keep_within_a_callers_connection_pool(table: LeaseTable) -> None:
    """A client passed to Worker keeps botocore's 10 connections; 20 renewals at once opened and
    discarded a connection per renewal beyond them. Renewals run at most half the pool at once
    (and that many: a slow table must not make the last lease in line expire)."""
    client = boto3.client("dynamodb", config=botocore.config.Config(max_pool_connections=10))
    clock = FakeClock()
    c = DynamoDBCoordinator(LeaseTable(client, table.table_name, clock=clock), "A", Events(),
                            failover_time=FAILOVER, clock=clock)
    c.ensure_leases([ShardInfo(f"shardId-{i}") for i in range(30)], InitialPosition.TRIM_HORIZON)
    c.take_cycle()
    assert len(c.held_keys()) == 30
    update_item = client.update_item
    lock, calls, in_flight, most = threading.Lock(), [0], [0], [0]
    five_at_once = threading.Barrier(5, timeout=30)  # the first five wait for each other: 5 run at once

    def counted(**kwargs: Any) -> Any:
        with lock:
            first_five = calls[0] < 5
            calls[0] += 1
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        try:
            if first_five:
                try:
                    five_at_once.wait()
                except threading.BrokenBarrierError:
                    pass  # fewer than five at once: asserted below
            time.sleep(0.01)  # a round trip, so that calls overlap as they do against DynamoDB
            return update_item(**kwargs)
        finally:
            with lock:
                in_flight[0] -= 1

    client.update_item = counted  # type: ignore[method-assign]
    clock.advance(c.renew_interval)
    c.renew_all()
    assert not five_at_once.broken and most[0] == 5
    assert len(c.held_keys()) == 30 and c.stats.renew_failures == 0


def row_keys(coordinator: Any) -> list[str]:
    return [le.lease_key for le in coordinator.table.list_leases(consistent=True)]


def test_a_silent_holder_stops_before_anyone_can_take_its_leases(fleet: Any) -> None:
    clock, (a, ev_a), (b, ev_b) = fleet
    b.taker.max_steal = 0  # expiry alone here; stealing has its own test
    a.take_cycle()
    b.take_cycle()  # B first observes A's counters now
    key = a.held_keys()[0]
    holding = held(a, key)
    a.checkpoint(holding, ESN("10"))  # moves the counter: B's clock for this lease restarts
    # A is paused (SIGSTOP): it neither renews nor takes.
    clock.advance(FAILOVER * 0.8)
    assert not a.is_held(holding)  # the holder has already stopped feeding the shard...
    b.take_cycle()
    assert b.held_keys() == []  # ...while B still waits out the failover time
    clock.advance(FAILOVER * 0.2)
    b.take_cycle()
    # three leases expired; A still counts as alive through the fourth, so B takes its share
    assert len(b.held_keys()) == 2 and key not in b.held_keys()
    clock.advance(FAILOVER * 0.8)
    b.take_cycle()
    assert len(b.held_keys()) == 4
    # A wakes up: its checkpoint is refused and it learns it lost every lease
    with pytest.raises(LeaseLostError):
        a.checkpoint(holding, ESN("20"))
    a.renew_all()
    assert sorted(ev_a.lost) == sorted(b.held_keys())
    assert b.current_lease(key).checkpoint == ESN("10")


def test_a_fenced_checkpoint_never_overwrites_the_new_owner(fleet: Any) -> None:
    clock, (a, _), (b, _) = fleet
    b.taker.max_steal = 0
    a.take_cycle()
    key = a.held_keys()[0]
    held_by_a = held(a, key)
    b.take_cycle()
    clock.advance(FAILOVER)
    b.take_cycle()
    b.checkpoint(held(b, key), ESN("500"))
    # A's lease is not valid locally any more, and a forced write would fail its condition too
    with pytest.raises(LeaseLostError):
        a.checkpoint(held_by_a, ESN("400"))
    assert row(b.table, key).checkpoint == ESN("500")


def test_one_failed_renewal_does_not_drop_a_lease(fleet: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock, (a, ev_a), _ = fleet
    a.take_cycle()
    real = a.table.renew
    calls = {"n": 0}

    def flaky(*args: Any, **kw: Any) -> Any:
        calls["n"] += 1
        if calls["n"] <= 4:
            raise LeaseTableUnavailable("throttled")
        return real(*args, **kw)

    monkeypatch.setattr(a.table, "renew", flaky)
    clock.advance(a.renew_interval)
    assert a.renew_all() is True  # asks for a quick retry
    assert len(a.held_keys()) == 4 and ev_a.lost == []
    clock.advance(1)
    assert a.renew_all() is False
    assert len(a.held_keys()) == 4 and ev_a.lost == []


def test_late_renewals_are_told_and_hold_the_worker_back(fleet: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker whose renewals complete late (CPU-bound at a thousand shards, a slow table)
    says so (a warning, ``streamworker_lease_renewal_delay_seconds``) and takes only leases
    nobody else has taken for a while (more leases would make it lose those it holds, and
    churn; none is left without a worker), until its renewals are on time again."""
    import threading

    from structlog.testing import capture_logs

    clock, (a, ev_a), _ = fleet
    a.take_cycle()
    assert len(a.held_keys()) == 4
    a.ensure_leases([ShardInfo(f"shardId-{i}") for i in range(8)], InitialPosition.TRIM_HORIZON)
    real = a.table.renew
    gate = {"slow": threading.Lock()}

    def slow(*args: Any, **kw: Any) -> Any:
        if gate["slow"].acquire(blocking=False):
            clock.advance(3.0)  # the cycle's first renewal completes 3 s late: the rest after it
        return real(*args, **kw)

    def late_cycle() -> None:
        gate["slow"] = threading.Lock()
        clock.advance(a.next_renewal() - clock.monotonic())
        a.renew_all()

    monkeypatch.setattr(a.table, "renew", slow)
    with capture_logs() as logs:
        late_cycle()
    assert a.stats.renewal_delay == pytest.approx(3.0, abs=0.01) and a.renewer.late
    late = [e for e in logs if e["event"].startswith("lease renewals are running late")]
    assert len(late) == 1 and late[0]["log_level"] == "warning" and late[0]["leases_held"] == 4
    first_seen = clock.monotonic()
    a.take_cycle()
    assert len(a.held_keys()) == 4  # the four free leases are left to workers with time to spare
    while clock.monotonic() - first_seen < a.taker.steady_take_interval + a.taker.take_interval:
        late_cycle()
        assert a.renewer.late
        a.take_cycle()
        if clock.monotonic() - first_seen < FAILOVER / 2:
            assert len(a.held_keys()) == 4
    late_cycle()
    a.take_cycle()
    assert len(a.held_keys()) == 8 and ev_a.lost == []  # nobody took them: never left unprocessed

    monkeypatch.setattr(a.table, "renew", real)
    clock.advance(a.next_renewal() - clock.monotonic())  # renewed when due, at once
    a.renew_all()
    assert a.stats.renewal_delay < 0.5 and not a.renewer.late


def test_a_worker_holding_nothing_is_never_late(fleet: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Late renewals, then every lease given up: the next cycle has nothing to renew, and the
    worker must not stay held back by a delay no lease of its has any more."""
    clock, (a, _), _ = fleet
    a.take_cycle()
    real = a.table.renew

    def slow(*args: Any, **kw: Any) -> Any:
        clock.advance(1.0)
        return real(*args, **kw)

    monkeypatch.setattr(a.table, "renew", slow)
    clock.advance(a.renew_interval)
    a.renew_all()
    assert a.renewer.late
    for key in a.held_keys():
        a.release(held(a, key))
    a.renew_all()
    assert not a.renewer.late and a.stats.renewal_delay == 0.0


def test_released_leases_are_taken_without_waiting(fleet: Any) -> None:
    clock, (a, _), (b, ev_b) = fleet
    a.take_cycle()
    b.take_cycle()
    for key in a.held_keys():
        a.release(held(a, key))
    b.take_cycle()
    assert len(b.held_keys()) == 4 and len(ev_b.acquired) == 4


def test_children_are_taken_only_after_parents_reach_shard_end(table: LeaseTable) -> None:
    clock = FakeClock()
    c = DynamoDBCoordinator(table, "A", Events(), clock=clock)
    c.ensure_leases([ShardInfo("parent", is_open=False), ShardInfo("child", parent_shard_ids=("parent",))],
                    InitialPosition.TRIM_HORIZON)
    c.take_cycle()
    assert c.held_keys() == ["parent"]
    c.checkpoint(held(c, "parent"), ESN("SHARD_END"))
    c.release(held(c, "parent"))
    c.take_cycle()
    assert c.held_keys() == ["child"]


def test_renewals_fall_due_per_lease_and_a_checkpoint_counts_as_one(fleet: Any) -> None:
    clock, (a, ev_a), _ = fleet
    a.take_cycle()
    keys = a.held_keys()
    calls = a.table.calls
    before = calls.get("Renew", 0)
    a.renew_all()
    assert calls.get("Renew", 0) == before  # just taken: nothing is due
    clock.advance(a.renew_interval * 0.9)
    a.checkpoint(held(a, keys[0]), ESN("7"))
    clock.advance(a.renew_interval * 0.1)
    a.renew_all()
    assert calls.get("Renew", 0) == before + 3  # the checkpointed lease was written just now
    assert a.next_renewal() == pytest.approx(clock.monotonic() + a.renew_interval * 0.9)
    clock.advance(a.renew_interval * 0.9)
    a.renew_all()
    assert calls.get("Renew", 0) == before + 4 and ev_a.lost == []


def test_renewals_record_records_per_second_for_the_balancer(table: LeaseTable) -> None:
    clock = FakeClock()
    done = {"n": 0}
    a = DynamoDBCoordinator(table, "A", Events(), failover_time=FAILOVER, clock=clock,
                            figures_of=lambda key: ShardFigures(done["n"]))
    a.ensure_leases([ShardInfo("s-1")], InitialPosition.TRIM_HORIZON)
    a.take_cycle()
    done["n"] = 500
    clock.advance(a.renew_interval)
    a.renew_all()
    assert row(table, "s-1").records_per_second == pytest.approx(500 / a.renew_interval, rel=0.01)


def test_renewals_write_kcl3s_throughput_averaged_as_kcl_averages_it(table: LeaseTable) -> None:
    """``throughputKBps``, which a KCL 3 leader balances on: payload KB/s since the last renewal,
    in an exponential average with alpha 0.5, starting from what the row said when it was taken."""
    clock = FakeClock()
    done = {"records": 0, "bytes": 0}
    table.client.update_item(TableName=table.table_name, Key={"leaseKey": {"S": "s-1"}},
                             UpdateExpression="SET throughputKBps = :k, leaseCounter = :c, checkpoint = :cp",
                             ExpressionAttributeValues={":k": {"N": "40.0"}, ":c": {"N": "1"},
                                                        ":cp": {"S": "TRIM_HORIZON"}})
    a = DynamoDBCoordinator(table, "A", Events(), failover_time=FAILOVER, clock=clock,
                            figures_of=lambda key: ShardFigures(done["records"], None, done["bytes"]))
    a.take_cycle()
    assert row(table, "s-1").throughput_kbps == 40.0  # a KCL 3 worker's figure, kept until we measure
    for expected in (30.0, 25.0):  # 20 KB/s: (40 + 20) / 2, then (30 + 20) / 2
        done["records"] += 100
        done["bytes"] += int(20 * 1024 * a.renew_interval)
        clock.advance(a.renew_interval)
        a.renew_all()
        assert row(table, "s-1").throughput_kbps == pytest.approx(expected, rel=1e-4)


def test_the_scan_slows_down_when_nothing_moves_but_not_past_an_expiry(fleet: Any) -> None:
    clock, (a, _), (b, _) = fleet
    b.taker.steady_take_interval = 5.0
    a.take_cycle()
    assert b.take_cycle() == pytest.approx(clock.monotonic() + b.taker.take_interval)  # steals: moving
    clock.advance(a.renew_interval)
    a.renew_all()  # A learns of the handoffs and finishes them
    for key in a.held_keys():
        if a.current_lease(key).lease_owner == "B":
            a.release(held(a, key))
    seen_a = clock.monotonic()  # B's next scan is the first to see A's final counters
    assert b.take_cycle() == pytest.approx(clock.monotonic() + b.taker.take_interval)
    assert len(b.held_keys()) == 2
    assert b.take_cycle() == pytest.approx(clock.monotonic() + 5.0)  # nothing moves: steady period
    # A goes silent. B's scans stay 5 s apart but one lands exactly when A's leases expire.
    nxt = clock.monotonic() + 5.0
    while len(b.held_keys()) < 4 and clock.monotonic() < seen_a + 30:
        clock.advance(max(0.0, nxt - clock.monotonic()))
        b.renew_all()
        nxt = b.take_cycle()
    assert len(b.held_keys()) == 4
    assert clock.monotonic() == pytest.approx(seen_a + FAILOVER, abs=0.05)


class HandsOver(Events):
    """Finishes handoffs the way a shard consumer does: after the current step, release."""

    def __init__(self) -> None:
        super().__init__()
        self.coordinator: DynamoDBCoordinator | None = None

    def finish(self) -> None:
        assert self.coordinator is not None
        while self.handoff:
            key = self.handoff.pop()
            self.coordinator.release(held(self.coordinator, key))


def test_200_shards_spread_evenly_as_workers_join_and_leave(table: LeaseTable) -> None:
    clock = FakeClock()
    fleet: dict[str, DynamoDBCoordinator] = {}
    listeners: dict[str, HandsOver] = {}

    def join(name: str) -> None:
        ev = HandsOver()
        # Steady scans every 2 s: unclaimed leases are shared out after half a failover time
        # (with the default period, the failover time, after one period: see the next test).
        c = DynamoDBCoordinator(table, name, ev, failover_time=FAILOVER, clock=clock, steady_take_interval=2.0)
        ev.coordinator = c
        fleet[name], listeners[name] = c, ev

    def cycle() -> None:
        clock.advance(1.0)
        for name, c in list(fleet.items()):
            c.renew_all()
            c.take_cycle()
            listeners[name].finish()

    def counts() -> Any:
        return sorted(len(c.held_keys()) for c in fleet.values())

    join("A")
    fleet["A"].ensure_leases([ShardInfo(f"shardId-{i:03}") for i in range(200)], InitialPosition.TRIM_HORIZON)
    cycle()
    assert counts() == [200]
    for name, share in [("B", [100, 100]), ("C", [66, 67, 67]), ("D", [50, 50, 50, 50])]:
        join(name)
        for _ in range(3):
            cycle()
        assert counts() == share, name
    moves = sum(c.stats.taken for c in fleet.values())
    assert moves == 200 + 100 + 66 + 50  # every move was needed: nothing went back and forth
    for _ in range(5):
        cycle()
    assert sum(c.stats.taken for c in fleet.values()) == moves  # balanced: nothing moves
    # D leaves gracefully, C dies: their leases spread over A and B, not onto one of them
    leaving = fleet.pop("D")
    for key in leaving.held_keys():
        leaving.release(held(leaving, key))
    fleet.pop("C")
    for _ in range(3):
        cycle()
    assert counts() == [67, 67]  # their shares while C still counts as alive
    # C has not expired yet, but D's last 16 leases must not wait for that: after half a
    # failover time unclaimed, A and B share them out beyond their target
    for _ in range(int(FAILOVER / 2) + 1):
        cycle()
    assert sum(counts()) == 150 and counts()[1] - counts()[0] <= 2
    for _ in range(int(FAILOVER / 2) + 2):
        cycle()
    assert counts() == [100, 100]  # C expired: its 50 leases, half each


def test_a_dead_workers_leases_split_evenly_between_survivors_scanning_out_of_phase(table: LeaseTable) -> None:
    """At the default steady period (the failover time) survivors see a dead owner's renewals
    stop up to one period apart. The first must take its share only, not the later one's too
    (which that one would then steal back: every lease moved twice)."""
    clock = FakeClock()
    shared = LeaseTable(table.client, table.table_name, clock=clock)
    fleet = {n: DynamoDBCoordinator(shared, n, HandsOver(), failover_time=FAILOVER, clock=clock) for n in "ABC"}
    for c in fleet.values():
        c.listener.coordinator = c  # type: ignore[attr-defined]
    fleet["A"].ensure_leases([ShardInfo(f"shardId-{i:03}") for i in range(30)], InitialPosition.TRIM_HORIZON)
    # each runs its cycles when they are due, as its threads would
    due = {n: {"renew": 0.0, "take": 0.0} for n in "ABC"}
    start = clock.monotonic()

    def run(seconds: float, names: str) -> None:
        end = clock.monotonic() + seconds
        while clock.monotonic() < end:
            clock.advance(0.25)
            for n in names:
                c, now = fleet[n], clock.monotonic() - start
                if now >= due[n]["renew"]:
                    c.renew_all()
                    due[n]["renew"] = c.next_renewal() - start
                if now >= due[n]["take"]:
                    due[n]["take"] = c.take_cycle() - start
                c.listener.finish()  # type: ignore[attr-defined]

    run(6 * FAILOVER, "ABC")
    assert sorted(len(c.held_keys()) for c in fleet.values()) == [10, 10, 10]
    before = {n: (c.stats.taken, c.stats.stolen) for n, c in fleet.items()}
    fleet.pop("C")  # killed: no release, its leases expire
    due["B"]["take"] = due["A"]["take"] + 0.8 * FAILOVER  # B scans most of a period after A
    run(4 * FAILOVER, "AB")
    assert [len(fleet[n].held_keys()) for n in "AB"] == [15, 15]
    assert sum(fleet[n].stats.taken - before[n][0] for n in "AB") == 10  # each of C's leases moved once
    assert all(fleet[n].stats.stolen == before[n][1] for n in "AB")  # and nothing was stolen back


def test_a_handoff_of_a_granted_but_unstarted_lease_completes_at_once(fleet: Any) -> None:
    clock, (a, _), (b, _) = fleet
    c = DynamoDBCoordinator(a.table, "C", Events(), failover_time=FAILOVER, clock=clock)
    a.take_cycle()
    key = a.held_keys()[0]
    lease = row(a.table, key)
    granted = a.table.request_handoff(lease, "B")
    a.release(held(a, key))  # A finished the handoff: B owns the lease but has not scanned yet
    c.table.request_handoff(row(a.table, key), "C")  # C steals it from B before B starts it
    assert row(a.table, key).checkpoint_owner == "B" and granted.lease_owner == "B"
    b.take_cycle()  # B runs nothing on it: it completes the handoff instead of stalling it
    assert key not in b.held_keys() and row(a.table, key).checkpoint_owner is None
    c.take_cycle()
    assert key in c.held_keys()
