"""Which leases of a table are this worker's to consider: its stream's (or, in a multi-stream
worker, its streams'), recognised in a KCL multi-stream table by their key prefix."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streamworker.leases.lease import Lease, key_prefix_of, stream_of


class LeaseScope:
    """A single-stream worker's stream (``stream_name``), or a multi-stream worker's streams."""

    def __init__(self, stream_name: str | None, log: Any) -> None:
        #: The Kinesis stream name, to recognise its leases in a KCL multi-stream table.
        self.stream_name = stream_name
        #: ``account:stream:creationEpoch:`` when the table holds this stream's leases in KCL's
        #: multi-stream form: new leases (children) are written the same way.
        self.key_prefix = ""
        #: The stream key prefixes (``account:stream:creationEpoch:``) of a multi-stream worker
        #: (None: one stream, or Kafka). Replaced whole, never mutated: the take cycle reads it.
        self.streams: frozenset[str] | None = None
        self._log = log

    def own(self, leases: Iterable[Lease]) -> list[Lease]:
        """This worker's leases. In a KCL multi-stream table, other streams' leases are left
        alone and this stream's key prefix is adopted for the leases we create. A multi-stream
        worker owns the leases of the streams it currently consumes, by key prefix: a re-created
        stream's old leases are not its own."""
        if self.streams is not None:
            streams = self.streams
            return [le for le in leases if key_prefix_of(le.lease_key) in streams]
        out: list[Lease] = []
        for lease in leases:
            stream = stream_of(lease.lease_key)
            if stream is None:
                out.append(lease)
            elif self.stream_name is not None and stream == self.stream_name:
                if not self.key_prefix:
                    self.key_prefix = lease.lease_key[: -len(lease.shard_id)]
                    self._log.info("continuing a KCL multi-stream lease table", prefix=self.key_prefix)
                out.append(lease)
        return out
