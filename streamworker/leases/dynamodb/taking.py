"""The taker thread's cycle: scan the table, take free and expired leases, steal by handoff."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from streamworker.clock import Clock
from streamworker.leases.dynamodb.balancing import ExpiryTracker, TakePlan, eligible, plan_takes
from streamworker.leases.dynamodb.held import HeldLeases
from streamworker.leases.dynamodb.scope import LeaseScope
from streamworker.leases.dynamodb.table import LeaseConflict, LeaseTable
from streamworker.leases.lease import Lease

#: KCL's ``epsilonMillis`` (LeaseManagementConfig): its taker runs every 2 x (failover + epsilon).
KCL_EPSILON = 0.025

#: Concurrent lease-table writes when a take cycle takes or steals many leases.
PARALLEL_WRITES = 8


class Taker:
    """One take cycle at a time, on the taker thread. ``on_acquired`` is told of each lease
    taken (the coordinator starts its renewals and tells its listener)."""

    def __init__(self, table: LeaseTable, held: HeldLeases, scope: LeaseScope, worker_id: str, clock: Clock, *,
                 failover_time: float, take_interval: float, steady_take_interval: float | None,
                 max_leases: int | None, max_steal: int | None, rng: random.Random,
                 on_acquired: Callable[[Lease, float], None], log: Any,
                 renewals_late: Callable[[], bool] = lambda: False) -> None:
        self.table, self.held, self.scope, self.worker_id, self.clock = table, held, scope, worker_id, clock
        self.failover_time = failover_time
        self.take_interval = take_interval
        #: Scan period when nothing is moving (no free lease, no handoff, nothing to take or
        #: steal); by default failover time + KCL's epsilon (25 ms): an eventually consistent
        #: scan that often costs what KCL's consistent scan every 2 x (failover + epsilon) does.
        #: A lease whose counter stops moving is still rechecked the moment it would expire, and
        #: a handoff asked of a lease held here is seen by its next renewal, not by a scan.
        self.steady_take_interval = max(take_interval, failover_time + KCL_EPSILON if steady_take_interval is None
                                        else steady_take_interval)
        self.max_leases, self.max_steal, self._rng = max_leases, max_steal, rng
        self._on_acquired, self._log = on_acquired, log
        #: True while this worker's renewals complete late: it steals nothing and takes only
        #: leases left free for a while (more leases would make it lose the ones it holds, and
        #: their shards churn; none is left without a worker for it).
        self.renewals_late = renewals_late
        self.taking = True
        self._tracker = ExpiryTracker(failover_time)
        self._last_view: frozenset[tuple[str, str | None, str | None]] = frozenset()
        self._free_since: dict[str, float] = {}
        #: The last cycle's scan (the whole table: shard sync also sweeps former streams' leases)
        #: and when it was made.
        self.last_scan: tuple[list[Lease], float] | None = None

    def cycle(self) -> float:
        """Scan the table, take and steal; return when the next cycle is due: soon while leases
        are moving, at the steady period otherwise (or when a silent lease would expire)."""
        scanned = self.table.list_leases()
        leases = self.scope.own(scanned)
        now = self.clock.monotonic()
        self.last_scan = (scanned, now)
        held = set(self.held.keys())
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
        if not self.taking:
            return next_cycle
        # Leases already ours in the table but not held here: a finished handoff to us, or a
        # previous process with the same worker id. A stalled handoff is ended once it expires.
        # Taken in parallel: a joining worker's share of a large table finishes its handoffs
        # together, and one round trip after another would take seconds.
        ours: list[Lease] = []
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
            if (lease.checkpoint_owner is None or lease.lease_key in expired) and not self.held.held_off(
                    lease.lease_key, now):
                ours.append(lease)
        self._parallel([functools.partial(self._try_take, le) for le in ours])
        unclaimed = self._unclaimed(leases, expired, now)
        plan = plan_takes(
            [le for le in leases if le.lease_key not in held] + [self._held_view(k, by_key) for k in held],
            self.worker_id, expired, max_leases=self.max_leases, max_steal=self.max_steal, rng=self._rng,
            unclaimed=unclaimed,
        )
        if self.renewals_late():
            # Renewals complete late: steal nothing, and take only leases nobody else has taken
            # for a while (left to workers with time to spare first, never left unprocessed).
            plan = TakePlan(take=tuple(le for le in plan.take if le.lease_key in unclaimed), target=plan.target,
                            workers=plan.workers)
        self._parallel([functools.partial(self._try_take, le)
                        for le in plan.take if le.lease_owner != self.worker_id and not self.held.held_off(le.lease_key, now)])
        self._parallel([functools.partial(self._request_handoff, le, plan.target, plan.workers)
                        for le in plan.steal])
        if plan.take or plan.steal:
            return min(next_cycle, now + self.take_interval)
        return next_cycle

    def recent_scan(self) -> list[Lease] | None:
        """The last cycle's scan (eventually consistent) if younger than two steady periods;
        None if there is none as recent (no cycle yet, or a KCL 3 follower's)."""
        if self.last_scan is None or self.clock.monotonic() - self.last_scan[1] > 2 * self.steady_take_interval:
            return None
        return self.last_scan[0]

    def _unclaimed(self, leases: list[Lease], expired: set[str], now: float) -> set[str]:
        """Free leases nobody has taken for half a failover time, or for as long as the other
        workers may need to see them free if that is longer: a worker scanning at the steady
        period sees a lease freed (or a dead owner's renewals stop) up to one period after this
        one did, and taking its share before then makes it steal back what it should have had."""
        free = {le.lease_key for le in leases if le.lease_owner is None or le.lease_key in expired}
        self._free_since = {k: self._free_since.get(k, now) for k in free}
        wait = max(self.failover_time / 2, self.steady_take_interval + self.take_interval)
        return {k for k, t in self._free_since.items() if now - t >= wait}

    def _parallel(self, writes: list[Callable[[], None]]) -> None:
        """Run a cycle's takes or steals a few at a time: a joining worker's share of a large
        table is taken in a fraction of a cycle rather than one round trip after another."""
        if len(writes) <= 1:
            for w in writes:
                w()
            return
        with ThreadPoolExecutor(min(self.table.parallel_calls(PARALLEL_WRITES), len(writes)),
                                thread_name_prefix="lease-write") as pool:
            for f in [pool.submit(w) for w in writes]:
                f.result()

    def _request_handoff(self, lease: Lease, target: int, workers: int) -> None:
        # A KCL 3 owner (it reports its metrics in the table) is asked as KCL 3 asks: see request_handoff.
        kcl3 = lease.lease_owner in self.table.kcl3_workers
        try:
            self.table.request_handoff(lease, self.worker_id, kcl3=kcl3)
        except LeaseConflict:
            return
        self.held.count("stolen")
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
            h = self.held.get(lease.lease_key)
            if h is None:
                continue
            with h.lock:
                if not h.handing_off and lease.lease_counter >= h.lease.lease_counter:
                    self.held.begin_handoff(h, lease)

    def _held_view(self, key: str, by_key: dict[str, Lease]) -> Lease:
        h = self.held.get(key)
        return h.lease if h is not None else by_key[key]

    def _try_take(self, lease: Lease) -> None:
        started = self.clock.monotonic()
        try:
            taken = self.table.take(lease, self.worker_id)
        except LeaseConflict:
            return
        self._on_acquired(taken, started)
