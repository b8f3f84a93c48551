"""Shard sync for a lease table: a lease for every shard listed, finished leases cleaned up,
former streams' leases swept. Run by the scheduler at start and every ``shard_sync_interval``."""

from __future__ import annotations

import structlog

from streamworker.coordinator.streams import StreamTracker
from streamworker.errors import SourceError
from streamworker.leases.base import LeaseTableCoordinator
from streamworker.leases.dynamodb.former_streams import FormerStreamLeases
from streamworker.leases.dynamodb.table import LeaseTable
from streamworker.leases.keys import stream_of
from streamworker.records import InitialPosition
from streamworker.sources.base import Source

log = structlog.get_logger("streamworker.coordinator.shard_sync")


class ShardSync:
    """One stream (``source``) or a multi-stream worker's streams (``streams``)."""

    def __init__(self, table: LeaseTable, coordinator: LeaseTableCoordinator, initial_position: InitialPosition, *,
                 source: Source | None, streams: StreamTracker | None, former: FormerStreamLeases | None = None,
                 cleanup: bool = True) -> None:
        self.table, self.coordinator, self.initial_position = table, coordinator, initial_position
        self.source, self.streams, self.former, self.cleanup = source, streams, former, cleanup

    def __call__(self) -> None:
        unknown = self.streams.sync(self.coordinator) if self.streams is not None else set()
        # Consistent: this scan decides which leases to create and which finished ones to delete.
        leases = self.table.list_leases(consistent=True)
        if self.streams is not None:
            for name, source in list(self.streams.sources.items()):
                try:  # one failing stream must not hold up the others' new shards
                    shards = source.list_shards()
                except SourceError as exc:
                    log.warning("shard sync of one stream failed; will retry", failed=name, error=str(exc))
                    continue
                self.coordinator.ensure_leases(shards, self.initial_position, prefix=self.streams.prefixes[name],
                                               leases=leases)
            if self.former is not None:
                self.former.sweep([le for le in leases if stream_of(le.lease_key) not in unknown],
                                  set(self.streams.prefixes.values()))
        elif self.source is not None:
            self.coordinator.ensure_leases(self.source.list_shards(), self.initial_position, leases=leases)
        if self.cleanup:
            self.coordinator.clean_finished(leases)
