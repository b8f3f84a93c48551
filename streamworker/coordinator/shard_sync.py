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
from streamworker.leases.lease import Lease, key_prefix_of
from streamworker.records import InitialPosition
from streamworker.sources.base import ShardInfo, Source

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
        listings = self._listings()
        # The take cycle's last scan (eventually consistent, a few seconds old) says whether there
        # is anything to do; only then is the table scanned consistently. A steady fleet's syncs
        # read nothing: a consistent scan per worker a minute would cost more than its take cycles.
        hint = self.coordinator.recent_leases()
        if hint is not None and not self._work(hint, listings, unknown):
            return
        # Consistent: this scan decides which leases to create and which finished ones to delete.
        leases = self.table.list_leases(consistent=True)
        for prefix, shards in listings:
            self.coordinator.ensure_leases(shards, self.initial_position, prefix=prefix, leases=leases)
        if self.streams is not None and self.former is not None:
            self.former.sweep([le for le in leases if stream_of(le.lease_key) not in unknown],
                              set(self.streams.prefixes.values()))
        if self.cleanup:
            self.coordinator.clean_finished(leases)

    def _listings(self) -> list[tuple[str | None, list[ShardInfo]]]:
        """Each stream's key prefix (None: the single stream's) and its shards."""
        if self.streams is None:
            return [] if self.source is None else [(None, self.source.list_shards())]
        listings: list[tuple[str | None, list[ShardInfo]]] = []
        for name, source in list(self.streams.sources.items()):
            try:  # one failing stream must not hold up the others' new shards
                listings.append((self.streams.prefixes[name], source.list_shards()))
            except SourceError as exc:
                log.warning("shard sync of one stream failed; will retry", failed=name, error=str(exc))
        return listings

    def _work(self, leases: list[Lease], listings: list[tuple[str | None, list[ShardInfo]]],
              unknown: set[str]) -> bool:
        """Whether a sync over ``leases`` would create, clean up or sweep anything."""
        if self.streams is not None and self.former is not None:
            current = set(self.streams.prefixes.values())
            if any(key_prefix_of(le.lease_key) and key_prefix_of(le.lease_key) not in current
                   and stream_of(le.lease_key) not in unknown for le in leases):
                return True  # the sweep times former streams' leases: it runs every sync while there are any
        if any(self.coordinator.work_in(shards, self.initial_position, leases, prefix=prefix, cleanup=False)
               for prefix, shards in listings):
            return True
        # finished leases are looked for once over the table, not once per stream
        return self.cleanup and self.coordinator.work_in([], self.initial_position, leases, cleanup=True)
