"""Deleting the leases of streams a multi-stream application no longer consumes.

KCL's ``AutoDetectionAndDeferredDeletionStrategy``: a stream whose leases are in the table but
which is not among the worker's streams (removed from the configuration, no longer matching the
pattern, deleted, or re-created under a new creation epoch) is *former*. Once it has been former
for the configured delay, each of its leases whose counter stood still for that whole time (and
for at least a failover time, so no live worker holds it) is deleted, on the condition that the
counter is still the one seen. A lease some worker still
renews (because its configuration still has the stream) is never deleted; every worker of an
application should agree on its streams.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog

from streamworker.clock import Clock
from streamworker.leases.dynamodb.table import LeaseTable
from streamworker.leases.lease import Lease, key_prefix_of

log = structlog.get_logger("streamworker.former_streams")


class FormerStreamLeases:
    """Tracks former streams' leases across shard syncs and deletes them after ``delay`` seconds."""

    def __init__(self, table: LeaseTable, delay: float, clock: Clock, failover_time: float = 0.0) -> None:
        self.table = table
        self.delay = max(delay, failover_time)
        self.clock = clock
        #: lease key -> (counter when first seen former or changed, when)
        self._still: dict[str, tuple[int, float]] = {}

    def sweep(self, leases: Iterable[Lease], current_prefixes: set[str]) -> list[str]:
        """Note the former streams' leases among ``leases``; delete those due. Returns the keys
        deleted."""
        now = self.clock.monotonic()
        former = [le for le in leases if key_prefix_of(le.lease_key) not in current_prefixes
                  and key_prefix_of(le.lease_key)]
        seen: dict[str, tuple[int, float]] = {}
        deleted: list[str] = []
        for lease in former:
            counter, since = self._still.get(lease.lease_key, (lease.lease_counter, now))
            if counter != lease.lease_counter:  # somebody renewed or took it: start over
                counter, since = lease.lease_counter, now
            if now - since >= self.delay and self.table.delete(lease.lease_key, counter):
                deleted.append(lease.lease_key)
                continue
            seen[lease.lease_key] = (counter, since)
        self._still = seen
        if deleted:
            log.info("deleted the leases of former streams", leases=sorted(deleted),
                     streams=sorted({key_prefix_of(k)[:-1] for k in deleted}))
        return deleted
