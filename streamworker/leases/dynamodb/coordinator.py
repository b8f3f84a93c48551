"""The DynamoDB lease coordinator: renews, takes, steals (by graceful handoff) and releases leases
in a KCL-compatible lease table, and stores fenced checkpoints.

It is wiring: ``HeldLeases`` (what this worker holds), ``LeaseScope`` (which leases of the table
are its to consider), ``LeaseCreator`` (leases for new shards), ``Renewer`` (the renewer thread's
cycle) and ``Taker`` (the taker thread's cycle), each an object of its own. A renewer thread
renews held leases (on a small pool, as KCL does: a slow table must not expire the last in line);
a taker thread scans, takes and steals, so a slow scan never delays a renewal. The public methods
are called from shard-consumer threads. Every failure of a cycle backs off; a table that refuses us
(access denied) or is gone stops the worker through ``LeaseListener.coordinator_failed``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterable
from typing import Protocol

import structlog

from streamworker.backoff import Backoff
from streamworker.clock import Clock, SystemClock
from streamworker.errors import CheckpointThrottledError, LeaseLostError
from streamworker.leases.base import CoordinatorStats, LeaseListener, ShardFigures
from streamworker.leases.dynamodb.balancing import parents_complete
from streamworker.leases.dynamodb.creation import LeaseCreator
from streamworker.leases.dynamodb.fleet import Kcl3Fleet
from streamworker.leases.dynamodb.held import HeldLeases
from streamworker.leases.dynamodb.renewal import Renewer
from streamworker.leases.dynamodb.scope import LeaseScope
from streamworker.leases.dynamodb.table import (
    LeaseConflict,
    LeaseTable,
    LeaseTableFatal,
    LeaseTableUnavailable,
)
from streamworker.leases.dynamodb.taking import Taker
from streamworker.leases.dynamodb.worker_metrics import CAPTURE_INTERVAL, REPORT_INTERVAL
from streamworker.leases.lease import Lease, MalformedLease, key_prefix_of
from streamworker.records import ExtendedSequenceNumber, InitialPosition
from streamworker.sources.base import ShardInfo

log = structlog.get_logger("streamworker.coordinator")


class DynamoDBCoordinator:
    """Lease management against one lease table, for one worker."""

    def __init__(
        self,
        table: LeaseTable,
        worker_id: str,
        listener: LeaseListener,
        *,
        failover_time: float = 10.0,
        take_interval: float = 1.0,
        steady_take_interval: float | None = None,
        max_leases: int | None = None,
        max_steal: int | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        stream: str = "",
        checkpoint_mirror: Callable[[str, ExtendedSequenceNumber], None] | None = None,
        stream_name: str | None = None,
        figures_of: Callable[[str], ShardFigures | None] | None = None,
        kcl3: Kcl3Fleet | None = None,
        mode_check_interval: float = 60.0,
    ) -> None:
        self.table = table
        self.worker_id = worker_id
        self.listener = listener
        self.failover_time = failover_time
        self.renew_interval = failover_time / 3
        self.clock = clock or SystemClock()
        #: Called after each successful checkpoint (Kafka: mirror to the committed offsets).
        self.checkpoint_mirror = checkpoint_mirror
        self._log = log.bind(worker_id=worker_id, table=table.table_name, stream=stream)
        self.held = HeldLeases(table, worker_id, listener, self.clock, failover_time, self._log)
        self.scope = LeaseScope(stream_name, self._log)
        self.creator = LeaseCreator(table, self.scope, self._log)
        self.renewer = Renewer(table, self.held, worker_id, self.clock, failover_time=failover_time,
                               figures_of=figures_of, log=self._log)
        self.taker = Taker(table, self.held, self.scope, worker_id, self.clock, failover_time=failover_time,
                           take_interval=take_interval, steady_take_interval=steady_take_interval,
                           max_leases=max_leases, max_steal=max_steal, rng=rng or random.Random(),
                           on_acquired=self._acquired, log=self._log, renewals_late=lambda: self.renewer.late)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._renew_wake = threading.Event()
        #: When each loop last completed a whole cycle, and the last failure (for health).
        self._last_ok = {"renew": self.clock.monotonic(), "take": self.clock.monotonic()}
        self._last_error: dict[str, str] = {}
        self.failure: str | None = None
        #: A KCL 3 fleet's side (None: no KCL 3 here): its mode is re-read every ``mode_check_interval``;
        #: in leader mode it decides which leases this worker processes instead of the taker.
        self.kcl3 = kcl3
        self.mode_check_interval = mode_check_interval
        self._mode_checked = self.clock.monotonic()

    @property
    def stats(self) -> CoordinatorStats:
        return self.held.stats

    @property
    def streams(self) -> frozenset[str] | None:
        """A multi-stream worker's stream key prefixes (None: one stream)."""
        return self.scope.streams

    @streams.setter
    def streams(self, value: frozenset[str] | None) -> None:
        self.scope.streams = value

    @property
    def key_prefix(self) -> str:
        return self.scope.key_prefix

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._loop, args=("renew",), name=f"lease-renewer-{self.worker_id}", daemon=True),
            threading.Thread(target=self._loop, args=("take",), name=f"lease-taker-{self.worker_id}", daemon=True),
        ]
        if self.kcl3 is not None:
            self._threads.append(threading.Thread(target=self._report_metrics, name=f"worker-metrics-{self.worker_id}",
                                                  daemon=True))
        for t in self._threads:
            t.start()

    def stop_taking(self) -> None:
        """Stop acquiring leases (graceful shutdown); held ones are still renewed. In a KCL 3
        fleet the leader lock is given up at once and the metrics row deleted."""
        self.taker.taking = False
        if self.kcl3 is not None:
            self.kcl3.stop()

    def stop(self, timeout: float = 5.0) -> None:
        if self.kcl3 is not None:
            self.kcl3.stop()
        self._stop.set()
        self._renew_wake.set()
        for t in self._threads:
            t.join(timeout)
        self.renewer.close()

    # -- the two cycles ----------------------------------------------------------------------

    def renew_all(self) -> bool:
        """One renewal cycle (see ``Renewer``); True if a transient failure asks for a quick retry."""
        return self.renewer.renew_all()

    def next_renewal(self) -> float:
        return self.renewer.next_renewal()

    def take_cycle(self) -> float:
        """One take cycle (see ``Taker``), after the mode check when it is due; when the next is due."""
        if self.kcl3 is None:
            return self.taker.cycle()
        if self.clock.monotonic() - self._mode_checked >= self.mode_check_interval:
            self.kcl3.refresh()
            self._mode_checked = self.clock.monotonic()
        if not self.kcl3.leader_mode:
            return self.taker.cycle()
        if not self.taker.taking:
            return self.clock.monotonic() + 1.0
        return self.kcl3.cycle(self.held.keys(), self._acquired)

    def _report_metrics(self) -> None:
        """KCL 3's cadence: a sample every second, a report every 30 s (the first after two samples)."""
        assert self.kcl3 is not None
        due = self.clock.monotonic() + 2 * CAPTURE_INTERVAL
        while not self._stop.is_set() and not self.kcl3.stopped:
            self.kcl3.capture()
            if self.clock.monotonic() >= due:
                try:
                    self.kcl3.report()
                    due = self.clock.monotonic() + REPORT_INTERVAL
                except Exception as exc:  # a missed report is retried next second; the row expires in 60 s
                    self._log.warning("could not write this worker's metrics for KCL 3's leader", error=str(exc)[:300])
            self.clock.sleep(CAPTURE_INTERVAL, self._stop)

    def _acquired(self, lease: Lease, started: float) -> None:
        self.held.add(lease, started, taken=True)  # ``lease`` is the holding the consumer will write with
        self._log.info("lease acquired", shard_id=lease.shard_id, checkpoint=str(lease.checkpoint),
                       counter=lease.lease_counter)
        self._renew_wake.set()  # its renewal falls due from now
        self.listener.lease_acquired(lease)

    def _loop(self, kind: str) -> None:
        """The renew or the take loop: a cycle, then wait until the next is due. A failed cycle
        is retried after a jittered backoff (never a busy loop); a fatal one stops the worker."""
        backoff = Backoff(base=0.2, cap=max(0.5, min(5.0, self.renew_interval / 2)) if kind == "renew" else 10.0)
        streak = 0
        while not self._stop.is_set():
            now = self.clock.monotonic()
            try:
                if kind == "renew":
                    self._renew_wake.clear()
                    retry_soon = self.renew_all()
                    due = self.next_renewal()
                    if retry_soon:
                        due = min(due, now + min(0.5, self.renew_interval))
                        if self.renewer.last_error:
                            self._last_error["renew"] = self.renewer.last_error
                    else:
                        self._last_ok["renew"] = self.clock.monotonic()
                else:
                    due = self.take_cycle()
                    self._last_ok["take"] = self.clock.monotonic()
                    self.held.count("take_cycles")
                if streak:
                    self._log.info(f"lease {kind} cycle recovered", failures=streak)
                streak = 0
                backoff.reset()
            except LeaseTableFatal as exc:
                self._fail(str(exc))
                return
            except Exception as exc:  # the coordinator must survive anything, without spinning
                streak += 1
                self.held.count("cycle_failures")
                self._last_error[kind] = f"{type(exc).__name__}: {exc}"
                delay = backoff.next_delay()
                if isinstance(exc, LeaseTableUnavailable):
                    self._log.warning(f"lease {kind} cycle failed; retrying", error=str(exc), retry_in=round(delay, 2))
                elif streak == 1:
                    self._log.exception(f"lease {kind} cycle failed; retrying", retry_in=round(delay, 2))
                else:
                    self._log.warning(f"lease {kind} cycle failed again; retrying", error=repr(exc)[:300],
                                      failures=streak, retry_in=round(delay, 2))
                due = now + delay
            wait = max(0.01, due - self.clock.monotonic())
            if kind == "renew":
                self.clock.sleep(wait, self._renew_wake)
            else:
                self.clock.sleep(wait, self._stop)

    def _fail(self, error: str) -> None:
        if self.failure is None:
            self.failure = error
            self._stop.set()
            self._renew_wake.set()
            self._log.error("the lease table cannot be used; the worker stops", error=error)
            self.listener.coordinator_failed(error)

    def health(self) -> tuple[bool, str]:
        """False (with the reason) when a renew or take cycle has not completed for a failover time."""
        if self.failure is not None:
            return False, self.failure
        now = self.clock.monotonic()
        for kind, at in self._last_ok.items():
            if self._threads and now - at > self.failover_time:
                why = self._last_error.get(kind, "no reply")
                return False, f"no lease {kind} cycle completed for {now - at:.0f} s (last error: {why})"
        return True, "ok"

    # -- leases for shards -------------------------------------------------------------------

    def ensure_leases(self, shards: Iterable[ShardInfo], initial_position: InitialPosition,
                      prefix: str | None = None, leases: list[Lease] | None = None) -> list[str]:
        return self.creator.ensure_leases(shards, initial_position, prefix, leases)

    def clean_finished(self, leases: Iterable[Lease]) -> list[str]:
        return self.creator.clean_finished(leases)

    def recent_leases(self) -> list[Lease] | None:
        return self.taker.recent_scan()

    def work_in(self, shards: Iterable[ShardInfo], initial_position: InitialPosition, leases: list[Lease], *,
                prefix: str | None = None, cleanup: bool = True) -> bool:
        return self.creator.work_in(shards, initial_position, leases, prefix=prefix, cleanup=cleanup)

    def own_leases(self, leases: Iterable[Lease]) -> list[Lease]:
        return self.scope.own(leases)

    def ensure_child_leases(self, children: Iterable[tuple[str, tuple[str, ...]]], parent_key: str) -> None:
        self.creator.ensure_child_leases(children, parent_key)

    # -- queries ---------------------------------------------------------------------------

    def held_keys(self) -> list[str]:
        return self.held.keys()

    def holding(self, lease_key: str) -> Lease | None:
        h = self.held.get(lease_key)
        return h.acquired if h is not None else None

    def is_held(self, lease: Lease) -> bool:
        """True while this holding may process the shard (it renewed the lease recently enough)."""
        h = self.held.current(lease)
        return h is not None and self.held.valid(h)

    def current_lease(self, lease_key: str) -> Lease | None:
        h = self.held.get(lease_key)
        return h.lease if h else None

    def parents_complete(self, lease: Lease) -> bool:
        if not lease.parent_shard_ids:
            return True
        prefix = key_prefix_of(lease.lease_key)
        try:
            by_key = {prefix + p: le for p in lease.parent_shard_ids if (le := self.table.get(prefix + p)) is not None}
        except MalformedLease:
            return False  # a parent row nobody can read: wait until it is fixed (reported by the table)
        return parents_complete(lease, by_key)

    # -- writes from shard consumers ---------------------------------------------------------

    def _fenced_write(self, lease: Lease, op: str, write: _Write, *, within_validity: bool = True) -> Lease:
        """``write`` under the lease's counter, for the holding ``lease`` only: the one place where
        this coordinator fences (a lost holding, or one past its validity, is refused here; the
        table refuses a moved counter). ``within_validity=False``: a release, fenced by the counter."""
        lease_key = lease.lease_key
        h = self.held.current(lease)
        if h is None or (within_validity and not self.held.valid(h)):
            raise LeaseLostError(f"shard {lease_key}: {op} refused: this worker no longer holds the lease")
        started = self.clock.monotonic()
        with h.lock:
            try:
                for attempt in range(2):
                    try:
                        h.lease = write(h.lease.lease_counter, h.handing_off)
                        h.last_renewed = started
                        return h.lease
                    except LeaseConflict as conflict:
                        if attempt == 1 or not self.held.resolve_conflict(h, conflict):
                            raise
            except LeaseConflict:
                pass
            except LeaseTableUnavailable as exc:
                raise CheckpointThrottledError(f"shard {lease_key}: {op} failed: {exc}") from None
            except LeaseTableFatal as exc:
                self._fail(str(exc))
                raise LeaseLostError(f"shard {lease_key}: {op} refused: {exc}") from None
        self.held.drop(lease_key, f"{op} refused by the lease table")
        raise LeaseLostError(f"shard {lease_key}: {op} refused: the lease is owned by another worker")

    def checkpoint(self, lease: Lease, checkpoint: ExtendedSequenceNumber,
                   pending: ExtendedSequenceNumber | None = None) -> None:
        key = lease.lease_key
        self._fenced_write(lease, "checkpoint", lambda counter, co: self.table.checkpoint(
            key, counter, self.worker_id, checkpoint, pending, as_checkpoint_owner=co))
        if self.checkpoint_mirror is not None:
            self.checkpoint_mirror(key, checkpoint)

    def prepare_checkpoint(self, lease: Lease, pending: ExtendedSequenceNumber) -> None:
        key = lease.lease_key
        self._fenced_write(lease, "prepare_checkpoint", lambda counter, co: self.table.prepare_checkpoint(
            key, counter, self.worker_id, pending, as_checkpoint_owner=co))

    def record_children(self, lease: Lease, child_ids: list[str]) -> None:
        key = lease.lease_key
        self._fenced_write(lease, "record child shards", lambda counter, co: self.table.set_child_shards(
            key, counter, self.worker_id, child_ids, as_checkpoint_owner=co))

    def release(self, lease: Lease) -> bool:
        """Give a held lease up (after its processor has shut down): another worker can take it
        at once; during a handoff the new owner starts. Returns False if it was already gone."""
        lease_key = lease.lease_key
        h = self.held.current(lease)
        if h is None:
            return False
        try:
            # not refused for a renewal running late: the holding would stay, renewed as
            # checkpoint owner, while its consumer has ended, and a handoff would never finish
            self._fenced_write(lease, "release", lambda counter, co: self.table.release(
                lease_key, counter, self.worker_id, as_checkpoint_owner=co), within_validity=False)
        except LeaseLostError:
            return False
        except CheckpointThrottledError as exc:
            self._log.warning("lease release failed; it will expire instead", shard_id=h.lease.shard_id,
                              error=str(exc))
        self.held.remove(lease_key, h, released=True)
        self._log.info("lease released", shard_id=h.lease.shard_id)
        return True

    def forget(self, lease: Lease, reason: str = "its shard consumer found it lost") -> None:
        """Stop renewing a lease its consumer found lost, without writing: counted and logged
        like one the renewer drops. A holding of the same lease taken anew meanwhile is kept."""
        if self.held.current(lease) is not None:
            self.held.drop(lease.lease_key, reason)

    def mark_halted(self, lease: Lease, reason: str | None) -> None:
        """Write (or, with None, clear) the halt reason into the lease row (``swHalted``), so
        ``streamworker leases`` and other workers' operators see it. Best effort: a failed write
        is logged, the lease is not dropped for it."""
        key = lease.lease_key
        try:
            self._fenced_write(lease, "mark halted", lambda counter, co: self.table.mark_halted(
                key, counter, self.worker_id, reason, as_checkpoint_owner=co))
        except (LeaseLostError, CheckpointThrottledError) as exc:
            self._log.warning("could not record the halt in the lease table", lease_key=key, error=str(exc))

    def hold_off(self, lease_key: str, seconds: float) -> None:
        """Do not take this lease back for ``seconds`` (its shard halted here: let another try)."""
        self.held.hold_off(lease_key, seconds)


class _Write(Protocol):
    def __call__(self, counter: int, as_checkpoint_owner: bool) -> Lease: ...
