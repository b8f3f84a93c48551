"""The DynamoDB lease coordinator: renews, takes, steals (by graceful handoff) and releases leases
in a KCL-compatible lease table, and stores fenced checkpoints.

Threads: a renewer thread renews held leases (in parallel on a small pool, as KCL does, so a slow
table does not make the last lease in line expire); a taker thread runs the take cycles (scan,
take, steal), so a slow scan never delays a renewal. ``checkpoint``, ``release`` and the other
public methods are called from shard-consumer threads. Each held lease has a lock, so writes to
one lease are serialised and its counter is always the one we last wrote. Every failure of a
cycle backs off; a table that refuses us (access denied) or is gone stops the worker through
``LeaseListener.coordinator_failed``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import structlog

from ..backoff import Backoff
from ..clock import Clock, SystemClock
from ..errors import CheckpointThrottledError, LeaseLostError
from ..records import ExtendedSequenceNumber
from .balancing import ExpiryTracker, parents_complete
from .base import CoordinatorStats, LeaseListener, ShardFigures
from .lease import Lease, MalformedLease, key_prefix_of
from .lease_creation import LeaseCreation
from .lease_state import HeldLease
from .lease_table import LeaseConflict, LeaseTable, LeaseTableFatal, LeaseTableUnavailable
from .renewal import Renewal
from .taking import TakeCycle

log = structlog.get_logger("streamworker.coordinator")


class DynamoDBCoordinator(LeaseCreation, Renewal, TakeCycle):
    """Lease management against one lease table, for one worker. Its parts: ``lease_creation``
    (leases for new shards), ``renewal`` (the renewer thread's cycle), ``taking`` (the taker
    thread's cycle); the state they share is declared in ``lease_state``."""

    def __init__(
        self,
        table: LeaseTable,
        worker_id: str,
        listener: LeaseListener,
        *,
        failover_time: float = 10.0,
        take_interval: float = 1.0,
        steady_take_interval: float = 2.0,
        max_leases: int | None = None,
        max_steal: int | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        stream: str = "",
        checkpoint_mirror: Callable[[str, ExtendedSequenceNumber], None] | None = None,
        stream_name: str | None = None,
        figures_of: Callable[[str], ShardFigures | None] | None = None,
        mode_check: Callable[[], object] | None = None,
        mode_check_interval: float = 60.0,
    ) -> None:
        self.table = table
        self.worker_id = worker_id
        self.listener = listener
        self.failover_time = failover_time
        self.renew_interval = failover_time / 3
        self.take_interval = take_interval
        #: Scan period when nothing is moving (no free lease, no handoff, nothing to take or
        #: steal). A lease whose counter stops moving is still rechecked the moment it would
        #: expire, so failover detection does not wait for the slower period.
        self.steady_take_interval = max(take_interval, steady_take_interval)
        #: A held lease's records so far and millis behind (from its shard consumer), for the lease row.
        self.figures_of = figures_of
        self.max_leases = max_leases
        self.max_steal = max_steal
        self.clock = clock or SystemClock()
        self.stats: CoordinatorStats = CoordinatorStats()
        #: Called after each successful checkpoint (Kafka: mirror to the committed offsets).
        self.checkpoint_mirror = checkpoint_mirror
        self._rng = rng or random.Random()
        self._held: dict[str, HeldLease] = {}
        self._held_lock = threading.Lock()
        self._tracker = ExpiryTracker(failover_time)
        self._taking = True
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._renew_wake = threading.Event()
        self._renew_pool: ThreadPoolExecutor | None = None
        #: When each loop last completed a whole cycle, and the last failure (for health).
        self._last_ok = {"renew": self.clock.monotonic(), "take": self.clock.monotonic()}
        self._last_error: dict[str, str] = {}
        #: Leases released because their shard halted, not taken back by us until then.
        self._hold_off: dict[str, float] = {}
        self.failure: str | None = None
        self._log = log.bind(worker_id=worker_id, table=table.table_name, stream=stream)
        self._last_view: frozenset[tuple[str, str | None, str | None]] = frozenset()
        self._free_since: dict[str, float] = {}
        #: The Kinesis stream name, to recognise its leases in a KCL multi-stream table.
        self.stream_name = stream_name
        #: ``account:stream:creationEpoch:`` when the table holds this stream's leases in KCL's
        #: multi-stream form: new leases (children) are written the same way.
        self.key_prefix = ""
        #: The stream key prefixes (``account:stream:creationEpoch:``) of a multi-stream worker
        #: (None: one stream, or Kafka). Replaced whole, never mutated: the take cycle reads it.
        self.streams: frozenset[str] | None = None
        #: Re-read, every ``mode_check_interval``, whether sharing the table is still safe (KCL 3's
        #: client version); it raises a LeaseTableFatal when not, which stops the worker.
        self.mode_check = mode_check
        self.mode_check_interval = mode_check_interval
        self._mode_checked = self.clock.monotonic()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._loop, args=("renew",), name=f"lease-renewer-{self.worker_id}", daemon=True),
            threading.Thread(target=self._loop, args=("take",), name=f"lease-taker-{self.worker_id}", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop_taking(self) -> None:
        """Stop acquiring leases (graceful shutdown); held ones are still renewed."""
        self._taking = False

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._renew_wake.set()
        for t in self._threads:
            t.join(timeout)
        if self._renew_pool is not None:
            self._renew_pool.shutdown(wait=False)

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
                    else:
                        self._last_ok["renew"] = self.clock.monotonic()
                else:
                    due = self.take_cycle()
                    self._last_ok["take"] = self.clock.monotonic()
                if streak:
                    self._log.info(f"lease {kind} cycle recovered", failures=streak)
                streak = 0
                backoff.reset()
            except LeaseTableFatal as exc:
                self._fail(str(exc))
                return
            except Exception as exc:  # the coordinator must survive anything, without spinning
                streak += 1
                with self._held_lock:
                    self.stats.cycle_failures += 1
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

    # -- queries ---------------------------------------------------------------------------

    def is_held(self, lease_key: str) -> bool:
        """True while this worker may process the shard (it renewed the lease recently enough)."""
        with self._held_lock:
            h = self._held.get(lease_key)
        return h is not None and self._valid(h)

    def current_lease(self, lease_key: str) -> Lease | None:
        with self._held_lock:
            h = self._held.get(lease_key)
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

    # -- renew -----------------------------------------------------------------------------

    def _drop(self, lease_key: str, why: str) -> None:
        with self._held_lock:
            h = self._held.pop(lease_key, None)
            if h is not None:
                self.stats.lost += 1
        if h is not None:
            self._log.warning("lease lost", shard_id=h.lease.shard_id, lease_key=lease_key, reason=why)
            self.listener.lease_lost(lease_key)

    def _resolve_conflict(self, h: HeldLease) -> bool:
        """After a failed conditional write: True if we still hold the lease (and ``h`` is
        refreshed), False if it is gone. Must be called with ``h.lock`` held."""
        try:
            current = self.table.get(h.lease.lease_key)
        except MalformedLease:
            return False  # reported by the table; a row nobody can read is nobody's
        if current is None:
            return False
        if current.lease_owner == self.worker_id and current.checkpoint_owner is None:
            # Only this worker writes its own id as owner: the counter moved through one of our
            # own writes whose reply was lost. Safe to adopt.
            h.lease, h.handing_off = current, False
            return True
        if current.checkpoint_owner == self.worker_id:
            self._begin_handoff(h, current)
            return True
        return False

    def _begin_handoff(self, h: HeldLease, current: Lease) -> None:
        """Another worker asked for this lease: keep it as checkpoint owner until the consumer
        has finished, and tell the consumer (once). Must be called with ``h.lock`` held."""
        newly = not h.handing_off
        h.lease, h.handing_off = current, True
        if newly:
            self._log.info("lease handoff requested", shard_id=current.shard_id, to=current.lease_owner)
            self.listener.handoff_requested(current.lease_key)

    # -- writes from shard consumers ---------------------------------------------------------

    def _fenced_write(self, lease_key: str, op: str, write: _Write) -> Lease:
        with self._held_lock:
            h = self._held.get(lease_key)
        if h is None or not self._valid(h):
            raise LeaseLostError(f"shard {lease_key}: {op} refused: this worker no longer holds the lease")
        started = self.clock.monotonic()
        with h.lock:
            try:
                for attempt in range(2):
                    try:
                        h.lease = write(h.lease.lease_counter, h.handing_off)
                        h.last_renewed = started
                        return h.lease
                    except LeaseConflict:
                        if attempt == 1 or not self._resolve_conflict(h):
                            raise
            except LeaseConflict:
                pass
            except LeaseTableUnavailable as exc:
                raise CheckpointThrottledError(f"shard {lease_key}: {op} failed: {exc}") from None
            except LeaseTableFatal as exc:
                self._fail(str(exc))
                raise LeaseLostError(f"shard {lease_key}: {op} refused: {exc}") from None
        self._drop(lease_key, f"{op} refused by the lease table")
        raise LeaseLostError(f"shard {lease_key}: {op} refused: the lease is owned by another worker")

    def checkpoint(self, lease_key: str, checkpoint: ExtendedSequenceNumber,
                   pending: ExtendedSequenceNumber | None = None) -> None:
        self._fenced_write(lease_key, "checkpoint", lambda counter, co: self.table.checkpoint(
            lease_key, counter, self.worker_id, checkpoint, pending, as_checkpoint_owner=co))
        if self.checkpoint_mirror is not None:
            self.checkpoint_mirror(lease_key, checkpoint)

    def prepare_checkpoint(self, lease_key: str, pending: ExtendedSequenceNumber) -> None:
        self._fenced_write(lease_key, "prepare_checkpoint", lambda counter, co: self.table.prepare_checkpoint(
            lease_key, counter, self.worker_id, pending, as_checkpoint_owner=co))

    def record_children(self, lease_key: str, child_ids: list[str]) -> None:
        self._fenced_write(lease_key, "record child shards", lambda counter, co: self.table.set_child_shards(
            lease_key, counter, self.worker_id, child_ids, as_checkpoint_owner=co))

    def release(self, lease_key: str) -> bool:
        """Give a held lease up (after its processor has shut down): another worker can take it
        at once; during a handoff the new owner starts. Returns False if it was already gone."""
        with self._held_lock:
            h = self._held.get(lease_key)
        if h is None:
            return False
        try:
            self._fenced_write(lease_key, "release", lambda counter, co: self.table.release(
                lease_key, counter, self.worker_id, as_checkpoint_owner=co))
        except LeaseLostError:
            return False
        except CheckpointThrottledError as exc:
            self._log.warning("lease release failed; it will expire instead", shard_id=h.lease.shard_id,
                              error=str(exc))
        with self._held_lock:
            self._held.pop(lease_key, None)
        self.stats.released += 1
        self._log.info("lease released", shard_id=h.lease.shard_id)
        return True

    def forget(self, lease_key: str, reason: str = "its shard consumer found it lost") -> None:
        """Stop renewing a lease its consumer found expired (it ended as lost): counted and
        logged like one the renewer drops. A lease held anew meanwhile (valid again) is kept."""
        with self._held_lock:
            h = self._held.get(lease_key)
        if h is not None and not self._valid(h):
            self._drop(lease_key, reason)

    def mark_halted(self, lease_key: str, reason: str | None) -> None:
        """Write (or, with None, clear) the halt reason into the lease row (``swHalted``), so
        ``streamworker leases`` and other workers' operators see it. Best effort: a failed write
        is logged, the lease is not dropped for it."""
        try:
            self._fenced_write(lease_key, "mark halted", lambda counter, co: self.table.mark_halted(
                lease_key, counter, self.worker_id, reason, as_checkpoint_owner=co))
        except (LeaseLostError, CheckpointThrottledError) as exc:
            self._log.warning("could not record the halt in the lease table", lease_key=lease_key, error=str(exc))

    def hold_off(self, lease_key: str, seconds: float) -> None:
        """Do not take this lease back for ``seconds`` (released because its shard halted here,
        so that another worker gets a chance at it)."""
        with self._held_lock:
            self._hold_off[lease_key] = self.clock.monotonic() + seconds


class _Write(Protocol):
    def __call__(self, counter: int, as_checkpoint_owner: bool) -> Lease: ...

