"""Lease arithmetic: which leases a worker should take or steal. Pure functions, no I/O."""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from streamworker.leases.lease import Lease, key_prefix_of


@dataclass(frozen=True)
class TakePlan:
    take: tuple[Lease, ...] = ()
    steal: tuple[Lease, ...] = ()
    target: int = 0
    workers: int = 1


def parents_complete(lease: Lease, by_key: Mapping[str, Lease]) -> bool:
    """A child may start only when every parent still in the table is checkpointed at SHARD_END.
    A parent missing from the table was trimmed and cleaned up: nothing left to wait for.
    ``parentShardId`` holds bare shard ids (also in multi-stream tables): a parent's lease key is
    the child's stream prefix plus that id."""
    prefix = key_prefix_of(lease.lease_key)
    return all(prefix + p not in by_key or by_key[prefix + p].is_finished for p in lease.parent_shard_ids)


def eligible(leases: Iterable[Lease]) -> list[Lease]:
    """Leases that want a worker: not finished and not blocked on a parent."""
    all_leases = list(leases)
    by_key = {lease.lease_key: lease for lease in all_leases}
    return [lease for lease in all_leases if not lease.is_finished and parents_complete(lease, by_key)]


def plan_takes(
    leases: Iterable[Lease],
    me: str,
    expired: set[str],
    *,
    max_leases: int | None = None,
    max_steal: int | None = None,
    rng: random.Random | None = None,
    unclaimed: AbstractSet[str] = frozenset(),
) -> TakePlan:
    """Leases to take (unowned or expired) and to steal (by handoff) in one take cycle.

    The target per worker is ceil(eligible leases / live workers), live workers being the owners
    of unexpired leases plus this one. Free leases (unowned or expired) are taken first, all at
    once up to the target; each worker picks its share at random, so a departed worker's leases
    spread over the survivors. When nothing is free, leases are stolen one at a time from the
    most loaded worker while it holds at least two more than this one: every move narrows the
    spread, so balanced fleets (within one lease) never move and no lease ping-pongs. Several
    workers may be stolen from in one cycle, so a joining worker reaches its share at once.
    Load (records/s per lease, as last written by its holder) is the tie-breaker only: between
    victims with as many leases the busier one gives, and the leases moved are the ones that
    bring this worker's records/s nearest the fleet's mean.

    ``unclaimed`` are free leases nobody has taken for a while: their share-holders are gone or
    stuck (a worker that died but has not expired yet still counts). They are shared out over
    the workers regardless of the target, so no shard waits a failover time for nothing.
    """
    rng = rng or random.Random()
    candidates = eligible(leases)
    counts: Counter[str] = Counter()
    owned: dict[str, list[Lease]] = {}
    free: list[Lease] = []
    for lease in candidates:
        if lease.lease_owner is None or lease.lease_key in expired:
            free.append(lease)
        else:
            counts[lease.lease_owner] += 1
            owned.setdefault(lease.lease_owner, []).append(lease)
    workers = len(set(counts) | {me})
    target = math.ceil(len(candidates) / workers) if candidates else 0
    if max_leases is not None:
        target = min(target, max_leases)
    mine = counts.get(me, 0)
    need = target - mine
    if need <= 0:
        overdue = [le for le in free if le.lease_key in unclaimed]
        if overdue and max_leases is None:
            rng.shuffle(overdue)
            return TakePlan(take=tuple(overdue[:math.ceil(len(overdue) / workers)]), target=target,
                            workers=workers)
        return TakePlan(target=target, workers=workers)
    if free:
        rng.shuffle(free)
        return TakePlan(take=tuple(free[:need]), target=target, workers=workers)
    limit = need if max_steal is None else min(need, max_steal)
    load: dict[str, float] = {w: sum(le.records_per_second for le in ls) for w, ls in owned.items()}
    my_load = load.get(me, 0.0)
    mean_load = sum(load.values()) / workers
    # Only leases not already in a handoff can be stolen.
    stealable = {w: [le for le in ls if le.checkpoint_owner is None] for w, ls in owned.items() if w != me}
    for ls in stealable.values():
        rng.shuffle(ls)  # equal loads: a random choice, so concurrent thieves rarely collide
    steps = _steal_count(counts, me, limit, set(stealable))
    steal: list[Lease] = []
    while len(steal) < steps:
        victims = [w for w, ls in stealable.items() if ls and counts[w] - mine >= 2]
        if not victims:
            break
        victim = max(victims, key=lambda w: (counts[w], load.get(w, 0.0), w))
        ls = stealable[victim]
        # Aim this worker at the fleet's mean records/s once it holds its share: this lease
        # should carry what the mean still lacks beyond what the remaining (typical) ones bring.
        typical = statistics.median_low(le.records_per_second for le in ls)
        aim = mean_load - my_load - (steps - len(steal) - 1) * typical
        pick = min(range(len(ls)), key=lambda i: abs(aim - ls[i].records_per_second))
        lease = ls.pop(pick)
        steal.append(lease)
        counts[victim] -= 1
        load[victim] = load.get(victim, 0.0) - lease.records_per_second
        mine += 1
        my_load += lease.records_per_second
    return TakePlan(steal=tuple(steal), target=target, workers=workers)


def _steal_count(counts: Counter[str], me: str, limit: int, victims: set[str]) -> int:
    """How many single-lease steals the difference >= 2 rule makes (ties do not change it)."""
    c = Counter({w: n for w, n in counts.items() if w in victims})
    mine, n = counts.get(me, 0), 0
    while n < limit and c:
        w, top = c.most_common(1)[0]
        if top - mine < 2:
            break
        c[w] -= 1
        mine += 1
        n += 1
    return n


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

    def next_expiry(self, keys: Iterable[str]) -> float | None:
        """When the earliest of ``keys`` would expire if its counter does not move again."""
        times = [self._seen[k][1] + self.failover_time for k in keys if k in self._seen]
        return min(times) if times else None
