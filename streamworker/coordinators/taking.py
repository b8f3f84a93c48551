"""The taker thread's cycle: scan the table, take free and expired leases, steal by handoff."""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from .balancing import eligible, plan_takes
from .lease import Lease
from .lease_state import HeldLease, LeaseState
from .lease_table import LeaseConflict

#: Concurrent lease-table writes when a take cycle takes or steals many leases.
PARALLEL_WRITES = 8


class TakeCycle(LeaseState):
    """One take cycle at a time, on the taker thread."""

    def _acquire(self, lease: Lease, started: float) -> None:
        with self._held_lock:
            # its shard consumer starts from zero records now
            self._held[lease.lease_key] = HeldLease(lease, started, rate_mark=(0, started))
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
        # A KCL 3 owner (it reports its metrics in the table) is asked as KCL 3 asks: see request_handoff.
        kcl3 = lease.lease_owner in self.table.kcl3_workers
        try:
            self.table.request_handoff(lease, self.worker_id, kcl3=kcl3)
        except LeaseConflict:
            return
        with self._held_lock:
            self.stats.stolen += 1
        self._log.info("lease handoff started", shard_id=lease.shard_id, from_worker=lease.lease_owner,
                       target=target, workers=workers)

    def _notice_handoffs(self, leases: list[Lease]) -> None:
        """A steal shows in the scan before our next renewal would trip over it: start the
        handoff now. A scan older than our last write is not believed (a handoff asked KCL 3's
        way leaves the counter as we wrote it; one asked of an earlier holding of ours shows an
        older counter)."""
        for lease in leases:
            if lease.checkpoint_owner != self.worker_id or lease.lease_owner == self.worker_id:
                continue
            with self._held_lock:
                h = self._held.get(lease.lease_key)
            if h is None:
                continue
            with h.lock:
                if not h.handing_off and lease.lease_counter >= h.lease.lease_counter:
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
