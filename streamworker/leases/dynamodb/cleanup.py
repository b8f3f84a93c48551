"""Which finished (SHARD_END) leases may be deleted: KCL's ``cleanupLeasesUponShardCompletion``.

A closed shard's lease is done once it is checkpointed at SHARD_END and every child shard has a
lease that has checkpointed at least once (so the children have taken over, and the parent's
lease is no longer needed for their parent check). Shard sync never re-creates the lease of a
closed shard whose child has a lease, so a deleted parent stays deleted.
"""

from __future__ import annotations

from collections.abc import Iterable

from streamworker.leases.lease import Lease, key_prefix_of
from streamworker.records import SENTINELS, SHARD_END


def _started(lease: Lease) -> bool:
    seq = lease.checkpoint.sequence_number
    return seq == SHARD_END or seq not in SENTINELS


def finished_leases_to_delete(leases: Iterable[Lease]) -> list[Lease]:
    """The SHARD_END leases whose children all have leases that have checkpointed."""
    all_leases = list(leases)
    by_key = {le.lease_key: le for le in all_leases}
    children_of: dict[str, set[str]] = {}
    for le in all_leases:
        prefix = key_prefix_of(le.lease_key)
        for parent in le.parent_shard_ids:
            children_of.setdefault(prefix + parent, set()).add(le.lease_key)
    out: list[Lease] = []
    for le in all_leases:
        if not le.is_finished:
            continue
        prefix = key_prefix_of(le.lease_key)
        children = {prefix + c for c in le.child_shard_ids} | children_of.get(le.lease_key, set())
        if children and all(c in by_key and _started(by_key[c]) for c in children):
            out.append(le)
    return out


def consumed_by_children(leases: Iterable[Lease], prefix: str) -> set[str]:
    """Shard ids (of the stream ``prefix``) that some lease names as a parent: their children
    have leases, so they must not get a lease again."""
    return {p for le in leases if key_prefix_of(le.lease_key) == prefix for p in le.parent_shard_ids}
