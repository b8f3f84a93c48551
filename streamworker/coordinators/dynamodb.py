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

import functools
import random
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from ..backoff import Backoff
from ..clock import Clock, SystemClock
from ..errors import CheckpointThrottledError, LeaseLostError
from ..records import TRIM_HORIZON, ExtendedSequenceNumber, InitialPosition
from ..sources.base import ShardInfo
from .balancing import ExpiryTracker, eligible, parents_complete, plan_takes
from .base import CoordinatorStats, LeaseListener
from .cleanup import consumed_by_children, finished_leases_to_delete
from .lease import Lease, MalformedLease, key_prefix_of, stream_of
from .lease_table import LeaseConflict, LeaseTable, LeaseTableFatal, LeaseTableUnavailable

log = structlog.get_logger("streamworker.coordinator")

#: A holder stops using a lease this fraction of the failover time after its last successful
#: write, so it has stopped before any observer (who waits the full failover time) can take it.
VALIDITY_FRACTION = 0.8
#: A lease written (checkpointed) this recently, as a fraction of the renew interval, is not
#: renewed again: busy shards that checkpoint often cost no renewal writes at all.
RENEW_SLACK = 0.95
#: ...but its records/s is still written every this many renew intervals.
RATE_REFRESH = 6
#: Concurrent lease-table writes when a take cycle takes or steals many leases.
PARALLEL_WRITES = 8
#: Renewals in flight at once (KCL's maxLeaseRenewalThreads).
RENEW_THREADS = 20


@dataclass
class _Held:
    lease: Lease
    last_renewed: float
    handing_off: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: (records processed, when) at the last records/s measurement.
    rate_mark: tuple[int, float] | None = None


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
        steady_take_interval: float = 2.0,
        max_leases: int | None = None,
        max_steal: int | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        stream: str = "",
        checkpoint_mirror: Callable[[str, ExtendedSequenceNumber], None] | None = None,
        stream_name: str | None = None,
        records_of: Callable[[str], int | None] | None = None,
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
        #: Records processed so far on a held lease (from the shard consumer), for records/s.
        self.records_of = records_of
        self.max_leases = max_leases
        self.max_steal = max_steal
        self.clock = clock or SystemClock()
        self.stats: CoordinatorStats = CoordinatorStats()
        #: Called after each successful checkpoint (Kafka: mirror to the committed offsets).
        self.checkpoint_mirror = checkpoint_mirror
        self._rng = rng or random.Random()
        self._held: dict[str, _Held] = {}
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

    # -- lease creation --------------------------------------------------------------------

    def ensure_leases(self, shards: Iterable[ShardInfo], initial_position: InitialPosition,
                      prefix: str | None = None, leases: list[Lease] | None = None) -> list[str]:
        """Create a lease for every shard that has none. Children of leased shards start at
        TRIM_HORIZON (nothing of theirs may be skipped); with LATEST, closed shards are skipped.
        ``prefix`` is the stream's ``account:stream:creationEpoch:`` in a multi-stream table;
        ``leases`` a scan of the table already made (else one is made)."""
        ours = self.own_leases(self.table.list_leases() if leases is None else leases)
        prefix = self.key_prefix if prefix is None else prefix
        existing = {lease.shard_id for lease in ours if lease.lease_key == prefix + lease.shard_id}
        # A closed shard whose child has a lease was finished (its own lease may be cleaned up).
        done = consumed_by_children(ours, prefix)
        shards = list(shards)
        wanted = [
            s for s in shards if s.shard_id not in existing
            and (s.is_open or (s.shard_id not in done and initial_position != InitialPosition.LATEST))
        ]
        planned = existing | {s.shard_id for s in wanted}
        created: list[str] = []
        for s in wanted:
            start = TRIM_HORIZON if any(p in planned for p in s.parent_shard_ids) else initial_position.value
            lease = Lease(
                lease_key=prefix + s.shard_id,
                checkpoint=ExtendedSequenceNumber(start),
                parent_shard_ids=frozenset(s.parent_shard_ids),
                starting_hash_key=s.starting_hash_key,
                ending_hash_key=s.ending_hash_key,
            )
            if self.table.create_if_absent(lease):
                created.append(s.shard_id)
        if created:
            self._log.info("created leases", leases=sorted(created))
        return created

    def clean_finished(self, leases: Iterable[Lease]) -> list[str]:
        """Delete this worker's streams' SHARD_END leases that their children have taken over
        (each conditional on the counter seen). Returns the keys deleted."""
        deleted = [le.lease_key for le in finished_leases_to_delete(self.own_leases(leases))
                   if self.table.delete(le.lease_key, le.lease_counter)]
        if deleted:
            self._log.info("deleted finished leases (their children took over)", leases=sorted(deleted))
        return deleted

    def own_leases(self, leases: Iterable[Lease]) -> list[Lease]:
        """This stream's leases. In a KCL multi-stream table, other streams' leases are left alone
        and this stream's key prefix is adopted for the leases we create. A multi-stream worker
        (``streams`` set) owns the leases of the streams it currently consumes, by key prefix: a
        re-created stream's old leases are not its own."""
        out: list[Lease] = []
        if self.streams is not None:
            return [le for le in leases if key_prefix_of(le.lease_key) in self.streams]
        for lease in leases:
            stream = stream_of(lease.lease_key)
            if stream is None:
                out.append(lease)
            elif self.stream_name is not None and stream == self.stream_name:
                if not self.key_prefix:
                    self.key_prefix = lease.lease_key[: -len(lease.shard_id)]
                    self._log.info("continuing a KCL multi-stream lease table", prefix=self.key_prefix)
                out.append(lease)
        return out

    def ensure_child_leases(self, children: Iterable[tuple[str, tuple[str, ...]]], parent_key: str) -> None:
        """Leases for a closed shard's children, in the parent lease's stream."""
        prefix = key_prefix_of(parent_key)
        for child_id, parents in children:
            self.table.create_if_absent(Lease(
                lease_key=prefix + child_id, checkpoint=ExtendedSequenceNumber(TRIM_HORIZON),
                parent_shard_ids=frozenset(parents)))

    # -- queries ---------------------------------------------------------------------------

    def held_keys(self) -> list[str]:
        with self._held_lock:
            return sorted(self._held)

    def _valid(self, h: _Held, now: float | None = None) -> bool:
        now = self.clock.monotonic() if now is None else now
        return now - h.last_renewed < self.failover_time * VALIDITY_FRACTION

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

    def _resolve_conflict(self, h: _Held) -> bool:
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

    def _begin_handoff(self, h: _Held, current: Lease) -> None:
        """Another worker asked for this lease: keep it as checkpoint owner until the consumer
        has finished, and tell the consumer (once). Must be called with ``h.lock`` held."""
        newly = not h.handing_off
        h.lease, h.handing_off = current, True
        if newly:
            self._log.info("lease handoff requested", shard_id=current.shard_id, to=current.lease_owner)
            self.listener.handoff_requested(current.lease_key)

    def renew_all(self) -> bool:
        """Renew every lease that is due, in parallel; return True if a transient failure asks
        for a quick retry. Raises LeaseTableFatal when the table refuses us or is gone."""
        with self._held_lock:
            held = list(self._held.items())
        due: list[tuple[str, _Held, float]] = []
        for key, h in held:
            if not self._valid(h):
                self._drop(key, f"not renewed within {self.failover_time * VALIDITY_FRACTION:.1f} s "
                                "(80 % of the failover time)")
                continue
            now = self.clock.monotonic()
            if now - h.last_renewed < self.renew_interval * RENEW_SLACK and not self._rate_stale(h, now):
                continue  # a checkpoint wrote the lease recently: that write renewed it
            due.append((key, h, now))
        if len(due) <= 1:
            return any([self._renew_one(*d) for d in due])
        if self._renew_pool is None:
            self._renew_pool = ThreadPoolExecutor(RENEW_THREADS, thread_name_prefix="lease-renew")
        futures = [self._renew_pool.submit(self._renew_one, *d) for d in due]
        return any([f.result() for f in futures])  # all of them, so a fatal error surfaces

    def _renew_one(self, key: str, h: _Held, started: float) -> bool:
        """Renew one lease; True if it failed transiently (kept, retried soon)."""
        with h.lock:
            if self._held.get(key) is not h:
                return False  # released or lost meanwhile
            try:
                for _ in range(2):
                    try:
                        h.lease = self.table.renew(key, h.lease.lease_counter, self.worker_id,
                                                   as_checkpoint_owner=h.handing_off,
                                                   records_per_second=self._rate(key, h, started))
                        h.last_renewed = started
                        return False
                    except LeaseConflict:
                        if not self._resolve_conflict(h):
                            raise
            except LeaseConflict:
                pass
            except LeaseTableUnavailable as exc:
                with self._held_lock:
                    self.stats.renew_failures += 1
                self._last_error["renew"] = str(exc)
                self._log.warning("lease renewal failed; keeping the lease and retrying",
                                  shard_id=h.lease.shard_id, error=str(exc))
                return True
        self._drop(key, "taken by another worker (its counter moved)")
        return False

    def next_renewal(self) -> float:
        """When the next held lease falls due for renewal (a renewal per lease every
        failover/3 since its last successful write, KCL's rate)."""
        with self._held_lock:
            marks = [h.last_renewed for h in self._held.values()]
        now = self.clock.monotonic()
        due = min(marks, default=now) + self.renew_interval
        return max(due, now + self.renew_interval * (1 - RENEW_SLACK))

    def _rate_stale(self, h: _Held, now: float) -> bool:
        """Records/s is refreshed at least every RATE_REFRESH renew intervals."""
        if self.records_of is None:
            return False
        return h.rate_mark is None or now - h.rate_mark[1] >= self.renew_interval * RATE_REFRESH

    def _rate(self, key: str, h: _Held, now: float) -> float | None:
        """Records/s on this lease since the last measurement, or None when unknown."""
        if self.records_of is None:
            return None
        done = self.records_of(key)
        if done is None:
            return None
        mark, h.rate_mark = h.rate_mark, (done, now)
        if mark is None or now <= mark[1] or done < mark[0]:
            return None
        return (done - mark[0]) / (now - mark[1])

    # -- take ------------------------------------------------------------------------------

    def _acquire(self, lease: Lease, started: float) -> None:
        with self._held_lock:
            # its shard consumer starts from zero records now
            self._held[lease.lease_key] = _Held(lease, started, rate_mark=(0, started))
        self._log.info("lease acquired", shard_id=lease.shard_id, checkpoint=str(lease.checkpoint),
                       counter=lease.lease_counter)
        self._renew_wake.set()  # its renewal falls due from now
        self.listener.lease_acquired(lease)

    def take_cycle(self) -> float:
        """Scan the table, take and steal; return when the next cycle is due: soon while leases
        are moving, at the steady period otherwise (or when a silent lease would expire)."""
        if self.mode_check is not None and self.clock.monotonic() - self._mode_checked >= self.mode_check_interval:
            self.mode_check()
            self._mode_checked = self.clock.monotonic()
        leases = self.own_leases(self.table.list_leases())
        now = self.clock.monotonic()
        held = set(self.held_keys())
        expired = self._tracker.observe(leases, now) - held
        by_key = {le.lease_key: le for le in leases}
        view = frozenset((le.lease_key, le.lease_owner, le.checkpoint_owner) for le in leases)
        changed, self._last_view = view != self._last_view, view
        busy = changed or bool(expired) or any(
            le.lease_owner is None or le.checkpoint_owner is not None for le in eligible(leases))
        interval = self.take_interval if busy else self.steady_take_interval
        silent = self._tracker.next_expiry(k for k, le in by_key.items() if k not in held and le.lease_owner)
        next_cycle = now + interval if silent is None else min(now + interval, max(silent, now + 0.01))
        self._notice_handoffs(leases)
        if not self._taking:
            return next_cycle
        # Leases already ours in the table but not held here: a finished handoff to us, or a
        # previous process with the same worker id. A stalled handoff is ended once it expires.
        for lease in leases:
            if lease.checkpoint_owner == self.worker_id and lease.lease_key not in held:
                # A handoff asked of a lease we were granted but had not started (or held in a
                # previous life): nothing of ours runs on it, so finish the handoff at once.
                try:
                    self.table.release(lease.lease_key, lease.lease_counter, self.worker_id, as_checkpoint_owner=True)
                    self._log.info("handoff of a lease not running here completed", shard_id=lease.shard_id)
                except LeaseConflict:
                    pass
                continue
            if lease.lease_key in held or lease.lease_owner != self.worker_id or lease.is_finished:
                continue
            if (lease.checkpoint_owner is None or lease.lease_key in expired) and not self._held_off(lease.lease_key, now):
                self._try_take(lease, stolen=False)
        plan = plan_takes(
            [le for le in leases if le.lease_key not in held] + [self._held_view(k, by_key) for k in held],
            self.worker_id, expired, max_leases=self.max_leases, max_steal=self.max_steal, rng=self._rng,
            unclaimed=self._unclaimed(leases, expired, now),
        )
        self._parallel([functools.partial(self._try_take, le, stolen=False)
                        for le in plan.take if le.lease_owner != self.worker_id and not self._held_off(le.lease_key, now)])
        self._parallel([functools.partial(self._request_handoff, le, plan.target, plan.workers)
                        for le in plan.steal])
        if plan.take or plan.steal:
            return min(next_cycle, now + self.take_interval)
        return next_cycle

    def _held_off(self, lease_key: str, now: float) -> bool:
        with self._held_lock:
            until = self._hold_off.get(lease_key)
            if until is not None and now >= until:
                del self._hold_off[lease_key]
                until = None
        return until is not None

    def _unclaimed(self, leases: list[Lease], expired: set[str], now: float) -> set[str]:
        """Free leases nobody has taken for half a failover time."""
        free = {le.lease_key for le in leases if le.lease_owner is None or le.lease_key in expired}
        self._free_since = {k: self._free_since.get(k, now) for k in free}
        return {k for k, t in self._free_since.items() if now - t >= self.failover_time / 2}

    def _parallel(self, writes: list[Callable[[], None]]) -> None:
        """Run a cycle's takes or steals a few at a time: a joining worker's share of a large
        table is taken in a fraction of a cycle rather than one round trip after another."""
        if len(writes) <= 1:
            for w in writes:
                w()
            return
        with ThreadPoolExecutor(min(PARALLEL_WRITES, len(writes)), thread_name_prefix="lease-write") as pool:
            for f in [pool.submit(w) for w in writes]:
                f.result()

    def _request_handoff(self, lease: Lease, target: int, workers: int) -> None:
        try:
            self.table.request_handoff(lease, self.worker_id)
        except LeaseConflict:
            return
        with self._held_lock:
            self.stats.stolen += 1
        self._log.info("lease handoff started", shard_id=lease.shard_id, from_worker=lease.lease_owner,
                       target=target, workers=workers)

    def _notice_handoffs(self, leases: list[Lease]) -> None:
        """A steal shows in the scan before our next renewal would trip over it: start the
        handoff now. Only a newer counter than ours is believed (the scan may be stale)."""
        for lease in leases:
            if lease.checkpoint_owner != self.worker_id or lease.lease_owner == self.worker_id:
                continue
            with self._held_lock:
                h = self._held.get(lease.lease_key)
            if h is None:
                continue
            with h.lock:
                if not h.handing_off and lease.lease_counter > h.lease.lease_counter:
                    self._begin_handoff(h, lease)

    def _held_view(self, key: str, by_key: dict[str, Lease]) -> Lease:
        with self._held_lock:
            h = self._held.get(key)
        return h.lease if h is not None else by_key[key]

    def _try_take(self, lease: Lease, *, stolen: bool) -> None:
        started = self.clock.monotonic()
        try:
            taken = self.table.take(lease, self.worker_id)
        except LeaseConflict:
            return
        with self._held_lock:
            self.stats.taken += 1
        self._acquire(taken, started)

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

