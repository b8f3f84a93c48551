"""The renewer thread's cycle: every held lease renewed every failover/3, in parallel."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from streamworker.clock import Clock
from streamworker.leases.base import ShardFigures
from streamworker.leases.dynamodb.held import VALIDITY_FRACTION, HeldLease, HeldLeases
from streamworker.leases.dynamodb.table import LeaseConflict, LeaseTable, LeaseTableUnavailable

#: A lease written (checkpointed) this recently, as a fraction of the renew interval, is not
#: renewed again: busy shards that checkpoint often cost no renewal writes at all.
RENEW_SLACK = 0.95
#: ...but its records/s is still written every this many renew intervals.
RATE_REFRESH = 6
#: Renewals in flight at once (KCL's maxLeaseRenewalThreads).
RENEW_THREADS = 20


#: The weight of the newest measurement in KCL 3's throughput average (LeaseStatsRecorder's alpha).
KBPS_ALPHA = 0.5
#: Renewals completing later than this fraction of the slack (a lease is given up at 80 % of the
#: failover time, renewed every third of it) mean the worker cannot renew what it holds in time.
LATE_FRACTION = 0.5
#: The "renewals are late" warning is logged at most this often (seconds).
LATE_WARNING_EVERY = 60.0


class Renewer:
    """Renews held leases (a slow table must not make the last lease in line expire)."""

    def __init__(self, table: LeaseTable, held: HeldLeases, worker_id: str, clock: Clock, *, failover_time: float,
                 figures_of: Callable[[str], ShardFigures | None] | None, log: Any) -> None:
        self.table, self.held, self.worker_id, self.clock = table, held, worker_id, clock
        self.failover_time = failover_time
        self.interval = failover_time / 3
        self.figures_of = figures_of
        self._log = log
        self._pool: ThreadPoolExecutor | None = None
        #: The last transient failure, for health.
        self.last_error: str | None = None
        #: How long past its due time the latest renewal of the last cycle completed (seconds).
        self.delay = 0.0
        self._late_warned: float | None = None

    @property
    def late_after(self) -> float:
        """A renewal delay beyond this says the worker holds more than it can renew in time."""
        return LATE_FRACTION * (self.failover_time * VALIDITY_FRACTION - self.interval)

    @property
    def late(self) -> bool:
        """The last cycle's renewals completed late (CPU-bound, or a slow table): until they are
        on time again the taker steals none and takes only leases nobody else has taken, or the
        worker would lose what it holds."""
        return self.delay > self.late_after

    def renew_all(self) -> bool:
        """Renew every lease that is due, in parallel; return True if a transient failure asks
        for a quick retry. Raises LeaseTableFatal when the table refuses us or is gone."""
        due: list[tuple[str, HeldLease, float]] = []
        for key, h in self.held.items():
            if not self.held.valid(h):
                self.held.drop(key, f"not renewed within {self.failover_time * VALIDITY_FRACTION:.1f} s "
                                    "(80 % of the failover time)")
                continue
            now = self.clock.monotonic()
            if now - h.last_renewed < self.interval * RENEW_SLACK and not self._rate_stale(h, now):
                continue  # a checkpoint wrote the lease recently: that write renewed it
            due.append((key, h, now))
        if len(due) <= 1:
            results = [self._renew_one(*d) for d in due]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.table.parallel_calls(RENEW_THREADS),
                                                thread_name_prefix="lease-renew")
            futures = [self._pool.submit(self._renew_one, *d) for d in due]
            results = [f.result() for f in futures]  # all of them, so a fatal error surfaces
        if due or not self.held.keys():  # holding nothing, nothing can be late
            self._note_delay(max((delay for _, delay in results), default=0.0), len(due))
        return any(retry for retry, _ in results)

    def _note_delay(self, delay: float, renewed: int) -> None:
        self.delay = self.held.stats.renewal_delay = delay
        if not self.late:
            return
        now = self.clock.monotonic()
        if self._late_warned is None or now - self._late_warned >= LATE_WARNING_EVERY:
            self._late_warned = now
            self._log.warning("lease renewals are running late: this worker holds more leases than it renews in "
                              "time (CPU-bound, or a slow lease table); until they are on time it steals none and takes "
                              "only leases nobody else has taken",
                              late_by=round(delay, 2), leases_held=len(self.held.keys()), renewed=renewed,
                              given_up_at=round(self.failover_time * VALIDITY_FRACTION - self.interval, 2))

    def _renew_one(self, key: str, h: HeldLease, started: float) -> tuple[bool, float]:
        """Renew one lease; (True if it failed transiently (kept, retried soon), how long past
        its due time the renewal completed)."""
        with h.lock:
            if self.held.get(key) is not h:
                return False, 0.0  # released or lost meanwhile
            due = h.last_renewed + self.interval
            try:
                rate, behind, kbps = self._figures(key, h, started)
                for _ in range(2):
                    try:
                        h.lease = self.table.renew(key, h.lease.lease_counter, self.worker_id,
                                                   as_checkpoint_owner=h.handing_off,
                                                   records_per_second=rate, millis_behind_latest=behind,
                                                   throughput_kbps=kbps)
                        h.last_renewed = started
                        return False, max(0.0, self.clock.monotonic() - due)
                    except LeaseConflict as conflict:
                        if not self.held.resolve_conflict(h, conflict):
                            raise
            except LeaseConflict:
                pass
            except LeaseTableUnavailable as exc:
                self.held.count("renew_failures")
                self.last_error = str(exc)
                self._log.warning("lease renewal failed; keeping the lease and retrying",
                                  shard_id=h.lease.shard_id, error=str(exc))
                return True, 0.0
        self.held.drop(key, "taken by another worker (its counter moved)")
        return False, 0.0

    def next_renewal(self) -> float:
        """When the next held lease falls due for renewal (a renewal per lease every
        failover/3 since its last successful write, KCL's rate)."""
        marks = [h.last_renewed for _, h in self.held.items()]
        now = self.clock.monotonic()
        due = min(marks, default=now) + self.interval
        return max(due, now + self.interval * (1 - RENEW_SLACK))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def _rate_stale(self, h: HeldLease, now: float) -> bool:
        """Records/s is refreshed at least every RATE_REFRESH renew intervals."""
        if self.figures_of is None:
            return False
        return h.rate_mark is None or now - h.rate_mark[2] >= self.interval * RATE_REFRESH

    def _figures(self, key: str, h: HeldLease, now: float) -> tuple[float | None, int | None, float | None]:
        """Records/s on this lease since the last measurement, its millis behind, and KCL 3's
        throughput (payload KB/s, averaged over measurements as KCL averages it), each None
        when unknown."""
        figures = self.figures_of(key) if self.figures_of is not None else None
        if figures is None:
            return None, None, None
        mark, h.rate_mark = h.rate_mark, (figures.records, figures.bytes, now)
        if mark is None or now <= mark[2] or figures.records < mark[0] or figures.bytes < mark[1]:
            return None, figures.millis_behind_latest, None
        seconds = now - mark[2]
        kbps = (figures.bytes - mark[1]) / 1024 / seconds
        h.kbps = kbps if h.kbps is None else KBPS_ALPHA * kbps + (1 - KBPS_ALPHA) * h.kbps
        return (figures.records - mark[0]) / seconds, figures.millis_behind_latest, round(h.kbps, 6)
