"""The shapes a shard's lifecycle shares with its runner and the worker: its states, settings,
live figures and where its batches come from."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from streamworker.consumer.event_loop import EventLoopThread
from streamworker.dead_letter.shard import GuardLimits
from streamworker.sources.base import Batch, ShardReader

if TYPE_CHECKING:
    from streamworker.dead_letter.sinks import DeadLetterSink


class ConsumerState(str, enum.Enum):
    WAITING_ON_PARENTS = "WAITING_ON_PARENTS"
    INITIALIZING = "INITIALIZING"
    PROCESSING = "PROCESSING"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    SHARD_ENDING = "SHARD_ENDING"
    LEASE_LOST = "LEASE_LOST"
    HALTED = "HALTED"
    DONE = "DONE"


@dataclass(frozen=True)
class ConsumerSettings:
    max_pending_batches: int = 4
    processor_retries: int = 3
    retry_backoff: float = 0.5
    parent_poll_interval: float = 1.0
    call_process_records_even_for_empty_list: bool = False
    initial_timestamp: datetime | None = None
    stream: str = ""
    worker_id: str = ""
    dead_letter: DeadLetterSink | None = None
    #: Failed batches go to ``dead_letter`` (on_error = dead-letter); False: only records past max_record_age.
    dead_letter_failures: bool = True
    #: on_error = bisect: split a failing batch until the records that fail alone are found.
    bisect: bool = False
    #: Release a halted shard's lease after this many seconds (None: keep it until restarted).
    release_halted_after: float | None = None
    #: The automatic checkpoint policy (None, None: only the processor checkpoints).
    checkpoint_interval: float | None = None
    checkpoint_every: int | None = None
    #: Records older than this (seconds, by arrival time) go to the dead-letter sink unprocessed.
    max_record_age: float | None = None
    dead_letter_guard: GuardLimits = field(default_factory=GuardLimits)
    #: Read ahead on a thread of the shard's own (Kinesis: reads are network calls). False where
    #: reads come from memory another thread fills (Kafka's partition buffers): the shard thread
    #: reads itself, so the partition buffer is the only buffer and a batch crosses one thread.
    read_ahead: bool = True
    #: Per-key mode (processors with process_record): lanes per shard, and the shutdown bound.
    parallelism: int = 1
    shutdown_timeout: float = 20.0
    #: Lanes run on the shard's own thread, one record after another (the test harness).
    inline_lanes: bool = False
    #: Runs ``async def`` processor methods; its thread starts on first use. The worker shares one.
    event_loop: EventLoopThread = field(default_factory=EventLoopThread)


@dataclass
class ShardProgress:
    """Live figures for status displays."""

    records: int = 0
    bytes: int = 0
    batches: int = 0
    last_sequence: str | None = None
    millis_behind_latest: int | None = None
    failures: int = 0


class BatchFeed(Protocol):
    """Where the lifecycle takes its batches from, once the reader is open."""

    def start(self, reader: ShardReader) -> None: ...

    def next(self) -> Batch | BaseException | None:
        """The next batch, a permanent read error, or None if nothing is there yet (may wait briefly)."""
        ...

    def stop(self) -> None: ...

    def wake(self) -> None:
        """Cut short a ``next`` that waits (an interrupt arrived)."""
        ...
