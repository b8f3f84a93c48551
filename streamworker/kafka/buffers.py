"""Per-partition buffers between the poll thread and the shard threads, and their readers."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streamworker.kafka.records import to_records
from streamworker.sources.base import Batch, StopReading

if TYPE_CHECKING:
    from streamworker.kafka.client import KafkaClient


@dataclass(eq=False)
class PartitionBuffer:
    """Messages fetched for one partition and not yet handed to its reader."""

    topic: str
    partition: int
    #: Pause above this many bytes of buffered values; resume below half of it.
    capacity: int
    #: Messages in the chunks consume() returned them in (no per-message queue operations),
    #: each with its values' bytes.
    chunks: deque[tuple[list[Any], int]] = field(default_factory=deque)
    #: Bytes accounted for the buffered messages (values + a fixed overhead each).
    size: int = 0

    @property
    def messages(self) -> list[Any]:
        """The buffered messages, oldest first (for inspection)."""
        return [m for chunk, _ in self.chunks for m in chunk]
    cond: threading.Condition = field(default_factory=threading.Condition)
    #: Offset of the next message the buffer expects (duplicates after a resume are dropped).
    next_offset: int | None = None
    #: The consumer's position (librdkafka's ``position()``) when it lies past ``next_offset``:
    #: everything between is control records (transaction markers) or aborted records, which
    #: are never delivered, so once the last buffered message is processed the partition is
    #: processed up to here. None while the position is at ``next_offset``.
    position: int | None = None
    paused: bool = False
    closed: bool = False


class KafkaPartitionReader:
    """Reads one partition's buffer. See ``ShardReader`` for the contract."""

    def __init__(self, client: KafkaClient, buf: PartitionBuffer, *, skip_through: int | None,
                 max_records: int, wait: float, on_close: Callable[[], None] | None = None) -> None:
        self._client = client
        self._buf = buf
        self._skip_through = skip_through
        self._max = max_records
        self._wait = wait
        self._on_close = on_close
        self._closed = threading.Event()

    def read(self) -> Batch:
        buf = self._buf
        with buf.cond:
            if not buf.chunks:
                buf.cond.wait(self._wait)
            if self._closed.is_set() or buf.closed:
                raise StopReading()
            taken: list[Any] = []
            size = 0
            chunks = buf.chunks
            while chunks and len(taken) < self._max:
                chunk, chunk_size = chunks[0]
                room = self._max - len(taken)
                if len(chunk) <= room:
                    taken.extend(chunk)
                    size += chunk_size
                    chunks.popleft()
                else:
                    part = chunk[:room]
                    part_size = sum(map(len, part))
                    taken.extend(part)
                    size += part_size
                    chunks[0] = (chunk[room:], chunk_size - part_size)
            buf.size = buf.size - size - 64 * len(taken) if chunks else 0
            resume = buf.paused and buf.size <= buf.capacity // 2
        if resume:
            self._client.request_resume(buf)
        if self._skip_through is not None:
            taken = [m for m in taken if m.offset() > self._skip_through]
            if taken:
                self._skip_through = None
            size = sum(map(len, taken))
        return Batch(records=to_records(taken), size=size)

    def wake(self) -> None:
        """Cut short a ``read`` that waits for messages (it returns what there is)."""
        with self._buf.cond:
            self._buf.cond.notify_all()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            with self._buf.cond:
                self._buf.cond.notify_all()
            if self._on_close is not None:
                self._on_close()
