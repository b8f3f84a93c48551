"""The narrow view of a worker that the ops layer reads (and nothing else of it)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from streamworker.consumer.shard_consumer import ShardConsumer
    from streamworker.leases.base import CoordinatorStats
    from streamworker.sources.kinesis.calls import ReaderStats


class WorkerView(Protocol):
    """Read-only figures of one worker, safe to call from any thread."""

    def healthy(self) -> tuple[bool, str]: ...

    def ready(self) -> tuple[bool, str]: ...

    def consumers(self) -> list[ShardConsumer]: ...

    def held_count(self) -> int: ...

    def lease_stats(self) -> CoordinatorStats | None: ...

    def kafka_lag(self, consumer: ShardConsumer) -> int | None: ...

    def reader_stats(self) -> ReaderStats | None: ...

    def status_document(self) -> dict[str, Any]:
        """The status page's JSON (ops/fleet.py)."""
        ...
