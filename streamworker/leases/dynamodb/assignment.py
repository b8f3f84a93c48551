"""A KCL 3 leader's decisions, by lease count (KCL's LeaseCountBasedLeaseAssignmentDecider):
expired and unassigned leases first, to the live workers holding fewest, up to the target
(ceil(leases / workers), capped by ``max_leases``); then, on balancing runs, leases move from
workers above the target to workers below it, one at a time, by graceful handoff. Pure
functions, no I/O."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from streamworker.leases.lease import Lease


@dataclass(frozen=True)
class Move:
    """Give ``lease`` to ``to``: ``graceful`` asks its live owner to hand it over (KCL's
    initiateGracefulLeaseHandoff); otherwise it is assigned outright (KCL's assignLease)."""

    lease: Lease
    to: str
    graceful: bool


def owner_of(lease: Lease) -> str | None:
    """The worker processing the lease: during a handoff still the checkpoint owner (KCL's actualOwner)."""
    return lease.checkpoint_owner or lease.lease_owner


def target(leases: int, workers: int, max_leases: int | None) -> int:
    if workers <= 0:
        return 0
    t = 1 if workers >= leases else -(-leases // workers)
    return min(t, max_leases) if max_leases else t


def plan(leases: Iterable[Lease], workers: Collection[str], expired: Collection[str], *,
         blocked: Collection[str] = (), balance: bool, max_leases: int | None = None) -> list[Move]:
    """The moves of one leader run. ``leases``: the unfinished leases whose parents are done;
    ``workers``: the live workers (fresh metrics rows); ``expired``: keys whose counter has not
    moved for the lease duration; ``blocked``: leases whose handoff is still within its time (not
    moved again)."""
    leases = list(leases)
    if not workers:
        return []
    counts = {w: 0 for w in workers}
    by_worker: dict[str, list[Lease]] = {w: [] for w in workers}
    free: list[Lease] = []
    for lease in leases:
        owner = owner_of(lease)
        if owner is None or lease.lease_key in expired:
            free.append(lease)
        elif owner in counts:
            counts[owner] += 1
            by_worker[owner].append(lease)
    goal = target(len(leases), len(counts), max_leases)
    moves: list[Move] = []
    # unassigned ones first, then expired ones, each in key order: the same answer on every leader
    free.sort(key=lambda le: (le.lease_owner is not None, le.lease_key))
    queue = sorted(counts, key=lambda w: (counts[w], w))
    i = 0
    for lease in free:
        while i < len(queue) and counts[queue[i]] >= goal:
            i += 1
        if i >= len(queue):
            break
        moves.append(Move(lease, queue[i], graceful=False))
        counts[queue[i]] += 1
    if not balance:
        return moves
    low = sorted(counts, key=lambda w: (counts[w], w))
    high = list(reversed(low))
    movable = {w: [le for le in sorted(by_worker[w], key=lambda le: le.lease_key)
                   if le.lease_key not in blocked and le.checkpoint_owner is None] for w in counts}
    for under in low:
        for over in high:
            while counts[under] < goal and counts[over] > goal and movable[over]:
                lease = movable[over].pop()
                moves.append(Move(lease, under, graceful=True))
                counts[under] += 1
                counts[over] -= 1
    return moves
