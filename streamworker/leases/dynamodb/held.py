"""The leases one worker holds: each with its lock (writes to one lease are serialised, so its
counter is always the one we last wrote), its validity on this worker's clock, the handoffs asked
of it, and the counts the worker reports."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from streamworker.clock import Clock
from streamworker.leases.base import CoordinatorStats, LeaseListener
from streamworker.leases.dynamodb.table import LeaseConflict, LeaseTable
from streamworker.leases.lease import Lease, MalformedLease

#: A holder stops using a lease this fraction of the failover time after its last successful
#: write, so it has stopped before any observer (who waits the full failover time) can take it.
VALIDITY_FRACTION = 0.8


@dataclass(eq=False)
class HeldLease:
    """A lease this worker holds. ``lock`` serialises writes to it, so its counter is always
    the one we last wrote. Its identity is the holding: a lease lost and taken again is a new
    ``HeldLease``."""

    #: The row as we last wrote it (its counter is the one the next write is conditional on).
    lease: Lease
    last_renewed: float
    #: The holding handed to the listener when the lease was acquired: consumers write with it.
    acquired: Lease | None = None
    handing_off: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: (records processed, payload bytes processed, when) at the last measurement.
    rate_mark: tuple[int, int, float] | None = None
    #: KCL 3's throughputKBps: an exponential average (alpha 0.5, as KCL's LeaseStatsRecorder),
    #: starting from what the row said when the lease was taken.
    kbps: float | None = None

    def __post_init__(self) -> None:
        if self.kbps is None:
            self.kbps = self.lease.throughput_kbps


class HeldLeases:
    """The held leases of one worker, safe to use from the renewer, the taker and the shard
    consumers' threads. Losing one tells the listener (``lease_lost``)."""

    def __init__(self, table: LeaseTable, worker_id: str, listener: LeaseListener, clock: Clock,
                 failover_time: float, log: Any) -> None:
        self.table, self.worker_id, self.listener, self.clock = table, worker_id, listener, clock
        self.failover_time = failover_time
        self._log = log
        self.stats = CoordinatorStats()
        self._held: dict[str, HeldLease] = {}
        self._lock = threading.Lock()
        #: Leases released because their shard halted, not taken back by us until then.
        self._hold_off: dict[str, float] = {}

    # -- the map ---------------------------------------------------------------------------------

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._held)

    def get(self, lease_key: str) -> HeldLease | None:
        with self._lock:
            return self._held.get(lease_key)

    def current(self, lease: Lease) -> HeldLease | None:
        """The holding ``lease`` if it is still the current one of its key (None once lost,
        even if the lease was acquired again since)."""
        h = self.get(lease.lease_key)
        return h if h is not None and h.acquired is lease else None

    def items(self) -> list[tuple[str, HeldLease]]:
        with self._lock:
            return list(self._held.items())

    def add(self, lease: Lease, started: float, *, taken: bool) -> HeldLease:
        """A lease just acquired (its shard consumer starts from zero records now)."""
        h = HeldLease(lease, started, acquired=lease, rate_mark=(0, 0, started))
        with self._lock:
            self._held[lease.lease_key] = h
            if taken:
                self.stats.taken += 1
        return h

    def remove(self, lease_key: str, h: HeldLease, *, released: bool) -> None:
        """Forget ``h`` (released, or handed over) if it is still the holding of ``lease_key``."""
        with self._lock:
            if self._held.get(lease_key) is h:
                del self._held[lease_key]
            if released:
                self.stats.released += 1

    def count(self, stat: str) -> None:
        with self._lock:
            setattr(self.stats, stat, getattr(self.stats, stat) + 1)

    def valid(self, h: HeldLease, now: float | None = None) -> bool:
        now = self.clock.monotonic() if now is None else now
        return now - h.last_renewed < self.failover_time * VALIDITY_FRACTION

    # -- losing and handing over -------------------------------------------------------------------

    def drop(self, lease_key: str, why: str) -> None:
        """The lease is gone: counted, logged, and its consumer told."""
        with self._lock:
            h = self._held.pop(lease_key, None)
            if h is not None:
                self.stats.lost += 1
        if h is not None:
            self._log.warning("lease lost", shard_id=h.lease.shard_id, lease_key=lease_key, reason=why)
            self.listener.lease_lost(lease_key)

    def resolve_conflict(self, h: HeldLease, conflict: LeaseConflict) -> bool:
        """After ``conflict`` refused a conditional write: True if we still hold the lease (and
        ``h`` is refreshed), False if it is gone. Must be called with ``h.lock`` held."""
        try:
            current = self.table.after_conflict(conflict, h.lease.lease_key)
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
            self.begin_handoff(h, current)
            return True
        return False

    def begin_handoff(self, h: HeldLease, current: Lease) -> None:
        """Another worker asked for this lease: keep it as checkpoint owner until the consumer
        has finished, and tell the consumer (once). Must be called with ``h.lock`` held."""
        newly = not h.handing_off
        h.lease, h.handing_off = current, True
        if newly:
            self._log.info("lease handoff requested", shard_id=current.shard_id, to=current.lease_owner)
            self.listener.handoff_requested(current.lease_key)

    # -- hold-offs -------------------------------------------------------------------------------

    def hold_off(self, lease_key: str, seconds: float) -> None:
        with self._lock:
            self._hold_off[lease_key] = self.clock.monotonic() + seconds

    def held_off(self, lease_key: str, now: float) -> bool:
        with self._lock:
            until = self._hold_off.get(lease_key)
            if until is not None and now >= until:
                del self._hold_off[lease_key]
                until = None
        return until is not None
