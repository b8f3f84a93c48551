"""The contract every source adapter (Kinesis, Kafka) fulfils."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from streamworker.errors import SourceError
from streamworker.records import ChildShard, Record, StartPosition


class StopReading(Exception):
    """A reader was closed while it waited."""


class SourceAccessDenied(SourceError):
    """A permission to read the source is missing (or was revoked): retrying does not help, so
    the worker ends its shards gracefully and stops with this one-line message."""


class InvalidStartPosition(SourceError):
    """The source refused the position to read from (e.g. a checkpoint that is not a sequence
    number of this shard): the lease row needs fixing."""


@dataclass(frozen=True)
class ShardInfo:
    """A shard and its lineage. A Kafka partition has no parents and no hash range."""

    shard_id: str
    parent_shard_ids: tuple[str, ...] = ()
    starting_hash_key: str | None = None
    ending_hash_key: str | None = None
    #: False once the shard was closed by a split or merge (it still holds data until trimmed).
    is_open: bool = True


@dataclass
class Batch:
    """One read from a shard."""

    records: list[Record]
    millis_behind_latest: int | None = None
    #: The shard is closed and every record was returned: no further reads.
    shard_end: bool = False
    child_shards: tuple[ChildShard, ...] = field(default_factory=tuple)
    #: Payload bytes of ``records`` when the reader knows them for free (else computed on use).
    size: int | None = None


class ShardReader(Protocol):
    """Reads one shard from a position, in order. Not thread-safe: one thread calls ``read``.

    ``read`` blocks for at most about the source's idle time plus retry backoff; it retries
    transient faults (throttling, 5xx, expired iterators) itself and raises only on a stop or a
    permanent error. It never returns a record at or before the position it was opened at.
    """

    def read(self) -> Batch: ...

    def close(self) -> None:
        """End reading: a ``read`` blocked on another thread raises StopReading soon after.
        Called from another thread than ``read``'s; must not block."""
        ...


class Source(Protocol):
    """Discovers shards and opens readers. Thread-safe."""

    @property
    def stream(self) -> str: ...

    def describe(self) -> str:
        """Check the stream exists and the endpoint answers; SourceError with one clear line if not."""
        ...

    def list_shards(self) -> list[ShardInfo]: ...

    def open_reader(self, shard_id: str, position: StartPosition) -> ShardReader: ...
