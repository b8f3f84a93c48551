"""Records, sequence numbers and stream positions."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from functools import total_ordering

TRIM_HORIZON = "TRIM_HORIZON"
LATEST = "LATEST"
AT_TIMESTAMP = "AT_TIMESTAMP"
SHARD_END = "SHARD_END"
SENTINELS = (TRIM_HORIZON, LATEST, AT_TIMESTAMP, SHARD_END)


class InitialPosition(str, enum.Enum):
    """Where a shard with no checkpoint starts."""

    TRIM_HORIZON = TRIM_HORIZON
    LATEST = LATEST
    AT_TIMESTAMP = AT_TIMESTAMP


# Order of sentinels relative to real sequence numbers, as in KCL's ExtendedSequenceNumber.
_SENTINEL_RANK = {LATEST: -3, TRIM_HORIZON: -2, AT_TIMESTAMP: -1, SHARD_END: 1}


@total_ordering
@dataclass(frozen=True)
class ExtendedSequenceNumber:
    """A sequence number (or sentinel) plus the sub-sequence number of a KPL user record."""

    sequence_number: str
    sub_sequence_number: int = 0

    @property
    def is_sentinel(self) -> bool:
        return self.sequence_number in SENTINELS

    @property
    def is_shard_end(self) -> bool:
        return self.sequence_number == SHARD_END

    def _key(self) -> tuple[int, int, int]:
        rank = _SENTINEL_RANK.get(self.sequence_number)
        if rank is not None:
            return (rank, 0, 0)
        return (0, int(self.sequence_number), self.sub_sequence_number)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ExtendedSequenceNumber):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        if self.is_sentinel or self.sub_sequence_number == 0:
            return self.sequence_number
        return f"{self.sequence_number}/{self.sub_sequence_number}"


@dataclass(frozen=True)
class ChildShard:
    """A shard a closed shard split or merged into, with its parents."""

    shard_id: str
    parent_shard_ids: tuple[str, ...]


@dataclass(frozen=True)
class Record:
    """One user record, as delivered to ``RecordProcessor.process_records``.

    ``data`` is always bytes. A Kafka record whose value is null (a tombstone: a delete on a
    compacted topic or a CDC feed) has ``data == b''``, ``value is None`` and ``tombstone`` set,
    so it can be told from a record whose value is empty; ``key`` is None for a null key."""

    data: bytes
    partition_key: str
    sequence_number: str
    sub_sequence_number: int = 0
    approximate_arrival_timestamp: datetime | None = None
    shard_id: str = ""
    explicit_hash_key: str | None = None
    #: True when the record was split out of a KPL aggregate.
    aggregated: bool = False
    #: Kafka only: message key, headers, topic and partition (None / empty for Kinesis); the
    #: offset is ``int(sequence_number)``.
    key: bytes | None = None
    headers: tuple[tuple[str, bytes | None], ...] = field(default_factory=tuple)
    topic: str | None = None
    partition: int | None = None
    #: Kafka only: the record's value was null (a tombstone), not empty.
    tombstone: bool = False

    @property
    def value(self) -> bytes | None:
        """The value as the source holds it: ``None`` for a Kafka tombstone, else ``data``."""
        return None if self.tombstone else self.data

    @property
    def offset(self) -> int:
        """The Kafka offset (Kafka records only)."""
        return int(self.sequence_number)

    @property
    def extended_sequence_number(self) -> ExtendedSequenceNumber:
        return ExtendedSequenceNumber(self.sequence_number, self.sub_sequence_number)


@dataclass(frozen=True)
class StartPosition:
    """Where a reader opens a shard: a sentinel, or AT/AFTER an extended sequence number."""

    kind: str  # TRIM_HORIZON | LATEST | AT_TIMESTAMP | AT_SEQUENCE_NUMBER | AFTER_SEQUENCE_NUMBER
    sequence: ExtendedSequenceNumber | None = None
    timestamp: datetime | None = None

    @staticmethod
    def from_checkpoint(
        checkpoint: ExtendedSequenceNumber, initial_timestamp: datetime | None = None
    ) -> StartPosition:
        """The position a consumer resumes from, given a lease's checkpoint.

        A real sequence number resumes AT that record and the reader drops every user record
        at or before the checkpoint: the only way to resume inside a KPL aggregate.
        """
        seq = checkpoint.sequence_number
        if seq == TRIM_HORIZON:
            return StartPosition(TRIM_HORIZON)
        if seq == LATEST:
            return StartPosition(LATEST)
        if seq == AT_TIMESTAMP:
            if initial_timestamp is None:
                raise ValueError("checkpoint is AT_TIMESTAMP but no initial timestamp is configured")
            return StartPosition(AT_TIMESTAMP, timestamp=initial_timestamp)
        if seq == SHARD_END:
            raise ValueError("a shard checkpointed at SHARD_END has nothing left to read")
        if not seq.isdigit():  # Kinesis sequence numbers and Kafka offsets are decimal numbers
            raise ValueError(f"{seq!r} is neither a sequence number nor one of TRIM_HORIZON, LATEST, AT_TIMESTAMP")
        return StartPosition("AT_SEQUENCE_NUMBER", sequence=checkpoint)
