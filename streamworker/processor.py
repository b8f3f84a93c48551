"""The processor contracts, one base class per mode, and the objects passed to them:
``RecordProcessor`` is given batches (``process_records``, KCL's and amazon-kclpy's shape);
``PerRecordProcessor`` is given one record at a time (``process_record``), records of one key in
order and different keys at once (``parallelism``)."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import structlog

from streamworker.records import ChildShard, ExtendedSequenceNumber, Record

if TYPE_CHECKING:
    from streamworker.checkpoint.checkpointer import Checkpointer

__all__ = ["ChildShard", "InitializationInput", "LeaseLostInput", "MaybeAwaitable", "PerRecordProcessor",
           "ProcessRecordsInput", "RecordProcessor", "ShardEndedInput", "ShutdownReason", "ShutdownRequestedInput"]


class ShutdownReason(str, enum.Enum):
    """Why a processor's shard is being taken away."""

    #: Another worker took the lease (or this one could not renew it): checkpointing is refused.
    LEASE_LOST = "LEASE_LOST"
    #: Every record of the shard was delivered; checkpoint SHARD_END so its children can start.
    SHARD_END = "SHARD_END"
    #: The worker is stopping, or handing the shard to another worker: checkpoint what is done.
    REQUESTED = "REQUESTED"


@dataclass(frozen=True)
class InitializationInput:
    shard_id: str
    #: The checkpoint the shard resumes after (a sentinel such as TRIM_HORIZON when none yet).
    extended_sequence_number: ExtendedSequenceNumber
    #: A prepared checkpoint a previous owner left uncommitted, if any.
    pending_checkpoint: ExtendedSequenceNumber | None = None
    stream: str = ""
    #: A structlog logger bound to this shard (shard_id, worker_id, stream): its lines come out
    #: whole, in the worker's format (JSON or console), where ``print()`` from shard threads
    #: runs together. Keep it: ``self.log = initialization_input.log``.
    log: Any = field(default_factory=lambda: structlog.get_logger("processor"), compare=False, repr=False)


@dataclass(frozen=True)
class ProcessRecordsInput:
    records: Sequence[Record]
    checkpointer: Checkpointer
    shard_id: str
    millis_behind_latest: int | None = None
    #: True for the last delivery of a closed shard (``shard_ended`` follows).
    is_at_shard_end: bool = False
    child_shards: tuple[ChildShard, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class LeaseLostInput:
    shard_id: str


@dataclass(frozen=True)
class ShardEndedInput:
    shard_id: str
    checkpointer: Checkpointer
    child_shards: tuple[ChildShard, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class ShutdownRequestedInput:
    shard_id: str
    checkpointer: Checkpointer


#: What a processor method returns: nothing, or (an ``async def`` method) an awaitable of nothing.
MaybeAwaitable: TypeAlias = None | Awaitable[None]


class RecordProcessor:
    """Subclass this; one instance processes one shard, called from one thread, strictly in order.

    Every method may be ``async def`` (awaited on the worker's event loop), hence ``MaybeAwaitable``.

    Contract:
    - ``initialize`` once, then ``process_records`` for each batch in sequence-number order, then
      exactly one of ``lease_lost``, ``shard_ended`` or ``shutdown_requested``.
    - Methods may block; a slow processor applies backpressure to its shard only.
    - An exception from ``process_records`` redelivers the same batch (with backoff); after the
      configured retries the shard halts with its checkpoint kept. Records are never skipped.
      Raise ``RecordFailures`` naming the records that failed to have the ones before the first
      of them checkpointed and the batch delivered again from it.
    - ``shard_ended`` must checkpoint (``input.checkpointer.checkpoint()`` writes SHARD_END).
    - The three ending methods default to ``shutdown(reason, checkpointer)``, whose default
      checkpoints everything delivered on SHARD_END and REQUESTED (every batch delivered so far
      has been returned from ``process_records``) and does nothing on LEASE_LOST.
    """

    def initialize(self, initialization_input: InitializationInput) -> MaybeAwaitable:
        """Called once before the first batch."""

    def process_records(self, process_records_input: ProcessRecordsInput) -> MaybeAwaitable:
        """Process one batch; checkpoint through ``process_records_input.checkpointer`` when ready."""
        raise NotImplementedError

    def lease_lost(self, lease_lost_input: LeaseLostInput) -> MaybeAwaitable:
        """Another worker owns the shard now; no checkpoint is possible."""
        self.shutdown(ShutdownReason.LEASE_LOST, None)
        return None

    def shard_ended(self, shard_ended_input: ShardEndedInput) -> MaybeAwaitable:
        """Every record was delivered; must checkpoint SHARD_END."""
        self.shutdown(ShutdownReason.SHARD_END, shard_ended_input.checkpointer)
        return None

    def shutdown_requested(self, shutdown_requested_input: ShutdownRequestedInput) -> MaybeAwaitable:
        """The worker is stopping or handing the shard over; checkpoint what is done."""
        self.shutdown(ShutdownReason.REQUESTED, shutdown_requested_input.checkpointer)
        return None

    def shutdown(self, reason: ShutdownReason, checkpointer: Checkpointer | None) -> None:
        """Catch-all for the three ending methods (KCL v1 / amazon-kclpy v1 style)."""
        if checkpointer is not None and reason in (ShutdownReason.SHARD_END, ShutdownReason.REQUESTED):
            checkpointer.checkpoint()


class PerRecordProcessor(RecordProcessor):
    """Subclass this for per-record delivery: ``process_record`` once per record, records of one
    key (partition key; Kafka: message key) strictly in order, different keys at once on up to
    ``parallelism`` lanes per shard. streamworker checkpoints the records completed without a gap
    itself (every ``checkpoint_interval``, default 1 s): there is no checkpointer here. Raise to
    fail a record: it is retried, then the error policy (halt, dead-letter) applies to it alone.
    ``initialize`` and the ending methods are as for ``RecordProcessor``; ``process_records`` is
    never called."""

    def process_record(self, record: Record) -> MaybeAwaitable:
        """Process one record."""
        raise NotImplementedError

    def process_records(self, process_records_input: ProcessRecordsInput) -> MaybeAwaitable:
        raise TypeError(f"{type(self).__name__} is a PerRecordProcessor: its records come to process_record")
