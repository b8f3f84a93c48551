"""Leases for new shards (and the cleanup of finished ones), in this worker's streams only."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streamworker.leases.dynamodb.cleanup import consumed_by_children, finished_leases_to_delete
from streamworker.leases.dynamodb.scope import LeaseScope
from streamworker.leases.dynamodb.table import LeaseTable
from streamworker.leases.lease import Lease, key_prefix_of
from streamworker.records import TRIM_HORIZON, ExtendedSequenceNumber, InitialPosition
from streamworker.sources.base import ShardInfo


class LeaseCreator:
    """Creates a lease for every shard listed, in the worker's scope of the table."""

    def __init__(self, table: LeaseTable, scope: LeaseScope, log: Any) -> None:
        self.table, self.scope, self._log = table, scope, log

    def ensure_leases(self, shards: Iterable[ShardInfo], initial_position: InitialPosition,
                      prefix: str | None = None, leases: list[Lease] | None = None) -> list[str]:
        """Create a lease for every shard that has none. Children of leased shards start at
        TRIM_HORIZON (nothing of theirs may be skipped); with LATEST, closed shards are skipped.
        ``prefix`` is the stream's ``account:stream:creationEpoch:`` in a multi-stream table;
        ``leases`` a scan of the table already made (else one is made)."""
        ours = self.scope.own(self.table.list_leases() if leases is None else leases)
        prefix = self.scope.key_prefix if prefix is None else prefix
        existing, wanted = self._wanted(ours, list(shards), initial_position, prefix)
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

    def work_in(self, shards: Iterable[ShardInfo], initial_position: InitialPosition, leases: list[Lease], *,
                prefix: str | None = None, cleanup: bool = True) -> bool:
        """Whether ``leases`` (a scan, possibly stale) lack a lease for a listed shard or, with
        ``cleanup``, hold a finished lease to delete: if not, a shard sync has nothing to do."""
        ours = self.scope.own(leases)
        prefix = self.scope.key_prefix if prefix is None else prefix
        return bool(self._wanted(ours, list(shards), initial_position, prefix)[1]
                    or (cleanup and finished_leases_to_delete(ours)))

    @staticmethod
    def _wanted(ours: list[Lease], shards: list[ShardInfo], initial_position: InitialPosition,
                prefix: str) -> tuple[set[str], list[ShardInfo]]:
        """The shard ids with a lease, and the shards that should have one and have none."""
        existing = {lease.shard_id for lease in ours if lease.lease_key == prefix + lease.shard_id}
        # A closed shard whose child has a lease was finished (its own lease may be cleaned up).
        done = consumed_by_children(ours, prefix)
        wanted = [
            s for s in shards if s.shard_id not in existing
            and (s.is_open or (s.shard_id not in done and initial_position != InitialPosition.LATEST))
        ]
        return existing, wanted

    def clean_finished(self, leases: Iterable[Lease]) -> list[str]:
        """Delete this worker's streams' SHARD_END leases that their children have taken over
        (each conditional on the counter seen). Returns the keys deleted."""
        deleted = [le.lease_key for le in finished_leases_to_delete(self.scope.own(leases))
                   if self.table.delete(le.lease_key, le.lease_counter)]
        if deleted:
            self._log.info("deleted finished leases (their children took over)", leases=sorted(deleted))
        return deleted

    def ensure_child_leases(self, children: Iterable[tuple[str, tuple[str, ...]]], parent_key: str) -> None:
        """Leases for a closed shard's children, in the parent lease's stream."""
        prefix = key_prefix_of(parent_key)
        for child_id, parents in children:
            self.table.create_if_absent(Lease(
                lease_key=prefix + child_id, checkpoint=ExtendedSequenceNumber(TRIM_HORIZON),
                parent_shard_ids=frozenset(parents)))
