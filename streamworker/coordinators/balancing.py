"""Lease arithmetic: which leases a worker should take or steal. Pure functions, no I/O."""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .lease import Lease


@dataclass(frozen=True)
class TakePlan:
    take: tuple[Lease, ...] = ()
    steal: tuple[Lease, ...] = ()
    target: int = 0
    workers: int = 1


def parents_complete(lease: Lease, by_shard: Mapping[str, Lease]) -> bool:
    """A child may start only when every parent still in the table is checkpointed at SHARD_END.
    A parent missing from the table was trimmed and cleaned up: nothing left to wait for.
    ``by_shard`` maps shard ids (what ``parentShardId`` holds, also in multi-stream tables)."""
    return all(p not in by_shard or by_shard[p].is_finished for p in lease.parent_shard_ids)


def eligible(leases: Iterable[Lease]) -> list[Lease]:
    """Leases that want a worker: not finished and not blocked on a parent."""
    all_leases = list(leases)
    by_shard = {lease.shard_id: lease for lease in all_leases}
    return [lease for lease in all_leases if not lease.is_finished and parents_complete(lease, by_shard)]


def plan_takes(
    leases: Iterable[Lease],
    me: str,
    expired: set[str],
    *,
    max_leases: int | None = None,
    max_steal: int = 3,
    rng: random.Random | None = None,
) -> TakePlan:
    """Leases to take (unowned or expired) and to steal (from the most loaded worker).

    The target per worker is ceil(eligible leases / live workers), live workers being the owners
    of unexpired leases plus this one. Expired leases are all taken at once up to the target.
    A steal happens only when nothing is free, and only from a worker above the target (or at it
    when this worker needs more than one): balanced fleets never trade leases back and forth.
    """
    rng = rng or random.Random()
    candidates = eligible(leases)
    counts: Counter[str] = Counter()
    free: list[Lease] = []
    for lease in candidates:
        if lease.lease_owner is None or lease.lease_key in expired:
            free.append(lease)
        else:
            counts[lease.lease_owner] += 1
    workers = len(set(counts) | {me})
    target = math.ceil(len(candidates) / workers) if candidates else 0
    if max_leases is not None:
        target = min(target, max_leases)
    need = target - counts.get(me, 0)
    if need <= 0:
        return TakePlan(target=target, workers=workers)
    if free:
        rng.shuffle(free)
        return TakePlan(take=tuple(free[:need]), target=target, workers=workers)
    others = [(n, w) for w, n in counts.items() if w != me]
    if not others:
        return TakePlan(target=target, workers=workers)
    most, victim = max(others, key=lambda nw: (nw[0], nw[1]))
    if most > target or (most == target and need > 1):
        n = min(need, max(1, most - target), max_steal)
        theirs = [le for le in candidates if le.lease_owner == victim and le.checkpoint_owner is None
                  and le.lease_key not in expired]
        rng.shuffle(theirs)
        return TakePlan(steal=tuple(theirs[:n]), target=target, workers=workers)
    return TakePlan(target=target, workers=workers)


class ExpiryTracker:
    """Judges expiry on the observer's monotonic clock: a lease is expired once its counter has
    not moved for ``failover_time`` since this worker first saw that counter value."""

    def __init__(self, failover_time: float) -> None:
        self.failover_time = failover_time
        self._seen: dict[str, tuple[int, float]] = {}

    def observe(self, leases: Iterable[Lease], now: float) -> set[str]:
        expired: set[str] = set()
        keys = set()
        for lease in leases:
            keys.add(lease.lease_key)
            seen = self._seen.get(lease.lease_key)
            if seen is None or seen[0] != lease.lease_counter:
                self._seen[lease.lease_key] = (lease.lease_counter, now)
                continue
            if now - seen[1] >= self.failover_time:
                expired.add(lease.lease_key)
        for gone in set(self._seen) - keys:
            del self._seen[gone]
        return expired
