"""streamworker as one worker of a KCL 3 fleet in its leader mode (``CLIENT_VERSION_3X``,
``CLIENT_VERSION_3X_WITH_ROLLBACK``): it reports its metrics as KCL 3's workers do, so the
leader counts it among the live workers; it processes the leases assigned to it (found through
``LeaseOwnerToLeaseKeyIndex``, as KCL 3's followers find theirs) and never takes or steals; and it
contends for the leader lock, and while it holds it assigns the leases as KCL 3's leader does
(``assignment.plan``). Which mode applies is read from ``Migration3.0`` at start and every
minute (``Kcl3Reader.state``), so a fleet that KCL's migration script flips is followed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

from streamworker.clock import Clock
from streamworker.leases.dynamodb import client_version, worker_metrics
from streamworker.leases.dynamodb.assignment import Move, plan
from streamworker.leases.dynamodb.balancing import ExpiryTracker, eligible
from streamworker.leases.dynamodb.discovery import LeaseDiscovery
from streamworker.leases.dynamodb.kcl3 import (
    METRICS_EXPIRY,
    Kcl3Reader,
    Kcl3State,
    coordinator_state_table,
    worker_metrics_table,
)
from streamworker.leases.dynamodb.leader_lock import LeaderLock
from streamworker.leases.dynamodb.table import LeaseConflict, LeaseTable
from streamworker.leases.dynamodb.worker_metrics import Layout, WorkerMetrics
from streamworker.leases.lease import Lease

#: KCL's gracefulLeaseHandoffTimeoutMillis: a handoff not finished by then (plus a lease
#: duration for the owner to notice it) is ended by assigning the lease outright.
HANDOFF_TIMEOUT = 30.0
#: KCL's varianceBalancingFrequency: every third leader run also balances.
BALANCE_EVERY = 3


class Kcl3Fleet:
    """The KCL 3 side of one worker's coordinator, driven from its take loop (``cycle``) and its
    metrics loop (``capture`` / ``report``)."""

    def __init__(self, table: LeaseTable, worker_id: str, reader: Kcl3Reader, metrics: Callable[[], WorkerMetrics],
                 clock: Clock, *,
                 failover_time: float, max_leases: int | None, log: Any, lock_duration: float | None = None,
                 assign_interval: float | None = None, wall: Callable[[], float] = time.time) -> None:
        self.table, self.worker_id, self.reader, self.clock = table, worker_id, reader, clock
        #: built when first needed: finding the platform may ask EC2's metadata service
        self._new_metrics = metrics
        self.metrics: WorkerMetrics | None = None
        self.failover_time = failover_time
        self.max_leases = max_leases
        self._log = log
        self._wall = wall
        #: streamworker's own lock is written with a shorter duration than KCL's two minutes (a
        #: KCL contender honours the duration the item states), so a killed streamworker leader
        #: is replaced in three failover times.
        self.lock_duration = lock_duration or max(3 * failover_time, 6.0)
        self.assign_interval = assign_interval or failover_time
        self.state = Kcl3State()
        self.lock: LeaderLock | None = None
        self.leading = False
        self.stopped = False
        self._lock_due = 0.0
        self._assign_due = 0.0
        self._runs = 0
        self._tracker = ExpiryTracker(failover_time)
        self._handoffs: dict[str, tuple[str | None, str | None, float]] = {}
        self.discovery = LeaseDiscovery(table, worker_id, log, clock)
        #: leases this leader assigned outright: to whom, at which counter
        self._given: dict[str, tuple[str, int]] = {}
        #: workers that let an assigned lease expire, with the report time they had then
        self._unresponsive: dict[str, float | None] = {}
        self._reports: dict[str, float | None] = {}

    # -- the mode --------------------------------------------------------------------------------

    @property
    def leader_mode(self) -> bool:
        return self.state.leader_mode

    @property
    def layout(self) -> Layout | None:
        """Where this worker reports its metrics: beside ``Migration3.0``; None with no KCL 3 state."""
        if self.state.where is None:
            return None
        return "lease-table" if self.state.where == self.table.table_name else "legacy-table"

    def start_in_3x(self) -> Kcl3State:
        """``client_version = "3x"``: a table with no KCL 3 state is put in KCL 3's default mode
        (the owner index, ``Migration3.0``); a state already there is followed as it is."""
        if self.reader.client_version()[0] is None:
            client_version.add_owner_index(self.table, self._log)
            if client_version.start_in_3x(self.table, self.worker_id, int(self._wall() * 1000)):
                self._log.info("put the lease table in KCL 3's default mode (client_version 3x)",
                               table=self.table.table_name)
        return self.refresh()

    def refresh(self) -> Kcl3State:
        """Re-read KCL 3's state; a flip of ``Migration3.0`` changes the mode from the next cycle on."""
        before = self.state
        self.state = self.reader.state()
        if self.state.client_version != before.client_version:
            self._log.info("KCL 3 client version", client_version=self.state.client_version, table=self.state.where,
                           assignment="leader" if self.leader_mode else "worker-balanced")
        if self.layout is not None and self.lock is None:
            legacy = self.layout == "legacy-table"
            self.lock = LeaderLock(
                self.table, self.worker_id, self.clock, duration=self.lock_duration,
                table_name=coordinator_state_table(self.reader.application_name) if legacy else None,
                key_name="key" if legacy else "leaseKey", entity_type=None if legacy else "LEADER")
        if not self.leader_mode and self.lock is not None and self.lock.version is not None:
            self.lock.release()  # rolled back to KCL 2's algorithm: nobody leads
            self.leading = False
        return self.state

    # -- the take loop ---------------------------------------------------------------------------

    def cycle(self, held: Collection[str], adopt: Callable[[Lease, float], None]) -> float:
        """One follower cycle (and a leader run when one is due and we hold the lock); when the
        next cycle is due."""
        now = self.clock.monotonic()
        if self.stopped:
            return now + 1.0
        if self.lock is not None and now >= self._lock_due:
            was, self.leading = self.leading, self.lock.try_acquire()
            if self.leading != was:
                self._log.info("became the KCL 3 fleet's leader" if self.leading else "no longer the fleet's leader",
                               holder=self.lock.holder)
                self._tracker = ExpiryTracker(self.failover_time)
                self._runs = 0
            self._lock_due = now + (self.lock_duration / 4 if self.leading else min(self.lock_duration / 4, 5.0))
        if self.leading and now >= self._assign_due:
            self._lead(now)
            self._assign_due = now + self.assign_interval
        for lease in self.discovery.newly_assigned(held):
            adopt(lease, self.clock.monotonic())
        return min(now + max(1.0, self.failover_time / 5), self._lock_due, self._assign_due if self.leading else 1e18)

    # -- leading ---------------------------------------------------------------------------------

    def live_workers(self) -> list[str]:
        """Workers whose metrics are fresh (KCL's leader: younger than two reporting periods),
        this one included, less those that let a lease assigned to them expire since their last
        report: a worker stopped with SIGTERM leaves a fresh row behind, and KCL's leader would
        assign it leases again until the row is a minute old."""
        now = self._wall()
        workers = {**self.reader.legacy_workers(), **self.table.kcl3_workers} if self.layout == "legacy-table" \
            else dict(self.table.kcl3_workers)
        self._reports = workers
        live = {w for w, lut in workers.items() if lut is not None and now - lut < METRICS_EXPIRY
                and self._unresponsive.get(w, -1.0) != lut}
        return sorted(live | {self.worker_id})

    def _lead(self, now: float) -> list[Move]:
        leases = self.table.list_leases()
        expired = self._tracker.observe(leases, now)
        blocked = self._pending_handoffs(leases, now, expired)
        for lease in leases:
            given = self._given.get(lease.lease_key)
            if given is not None and lease.lease_key in expired and (lease.lease_owner, lease.lease_counter) == given:
                self._unresponsive[given[0]] = self._reports.get(given[0])  # until it reports again
                self._log.warning("a worker did not start a lease assigned to it; not assigning it more until it "
                                  "reports again", worker=given[0], shard_id=lease.shard_id)
        counters = {le.lease_key: le.lease_counter for le in leases}
        self._given = {k: v for k, v in self._given.items() if k not in expired and counters.get(k) == v[1]}
        workers = self.live_workers()
        self._runs += 1
        moves = plan(eligible(leases), workers, expired, blocked=blocked,
                     balance=self._runs % BALANCE_EVERY == 1, max_leases=self.max_leases)
        done = []
        for move in moves:
            try:
                if move.graceful:
                    self.table.request_handoff(move.lease, move.to, kcl3=True)
                else:
                    taken = self.table.take(move.lease, move.to)
                    self._given[taken.lease_key] = (move.to, taken.lease_counter)
            except LeaseConflict:
                continue
            done.append(move)
        if done:
            self._log.info("leases assigned", workers=len(workers), leases=len(leases),
                           moves=[f"{m.lease.shard_id}->{m.to}{' (handoff)' if m.graceful else ''}" for m in done])
        return done

    def _pending_handoffs(self, leases: list[Lease], now: float, expired: set[str]) -> set[str]:
        """Leases in a handoff: blocked while it is young; expired (assigned outright) once it
        has taken longer than KCL's handoff timeout plus a lease duration."""
        pending: dict[str, tuple[str | None, str | None, float]] = {}
        blocked = set()
        for lease in leases:
            if lease.checkpoint_owner is None:
                continue
            seen = self._handoffs.get(lease.lease_key)
            owners = (lease.lease_owner, lease.checkpoint_owner)
            since = seen[2] if seen is not None and seen[:2] == owners else now
            pending[lease.lease_key] = (*owners, since)
            if now - since >= HANDOFF_TIMEOUT + self.failover_time:
                expired.add(lease.lease_key)
            else:
                blocked.add(lease.lease_key)
        self._handoffs = pending
        return blocked

    # -- the metrics loop ------------------------------------------------------------------------

    def capture(self) -> None:
        if self.layout is None:
            return
        if self.metrics is None:
            self.metrics = self._new_metrics()
        self.metrics.capture()

    def report(self) -> bool:
        """Write this worker's metrics row where KCL 3 reads it; False when there is no KCL 3 state."""
        layout = self.layout
        if layout is None or self.stopped or self.metrics is None:
            return False
        table = self._metrics_table(layout)
        row = self.metrics.report()
        self.table.call("UpdateItem", lambda: worker_metrics.write(self.table.client, table, row, layout))
        return True

    def _metrics_table(self, layout: Layout) -> str:
        return self.table.table_name if layout == "lease-table" else worker_metrics_table(self.reader.application_name)

    # -- stopping --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Graceful shutdown: give the lock up at once (the next worker leads on its next try),
        and stop reporting, so no leader assigns us more leases. A second call does nothing."""
        if self.stopped:
            return
        self.stopped = True
        if self.lock is not None and self.lock.version is not None:
            released = self.lock.release()
            self._log.info("leader lock released" if released else "leader lock was no longer ours")
        self.leading = False
        layout = self.layout
        if layout is not None:
            table = self._metrics_table(layout)
            key = worker_metrics.WorkerMetricsRow(self.worker_id, 0).key(layout)
            try:
                self.table.call("DeleteItem", lambda: self.table.client.delete_item(TableName=table, Key=key))
            except Exception as exc:  # best effort: the row expires in a minute anyway
                self._log.warning("could not delete this worker's metrics row", error=str(exc)[:200])

