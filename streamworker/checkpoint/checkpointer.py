"""Checkpoints of one shard, in two objects: the ``CheckpointTracker`` the framework drives (what
was delivered, so which checkpoints are valid) and the ``Checkpointer`` a processor is handed
(write a valid checkpoint, fenced by the lease). Both share the tracker's lock."""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from streamworker.checkpoint.store import CheckpointStore
from streamworker.errors import CheckpointThrottledError, InvalidCheckpointError
from streamworker.records import SHARD_END, ExtendedSequenceNumber, Record

if TYPE_CHECKING:
    from streamworker.leases.lease import Lease

#: Sequence numbers remembered for validation, at most (about 100 bytes each): a processor that
#: lets more records pass between checkpoints has its oldest ones checked by shard and range only.
MAX_REMEMBERED = 100_000
_SHARD_INDEX = re.compile(r"shardId-(\d+)$")


def kinesis_shard_index(sequence_number: str) -> int | None:
    """The shard index a Kinesis sequence number carries (its v2 layout: 186 bits, version 2 in
    the top four, the shard index in bits 4-35, as KCL's SequenceNumberValidator reads it), or
    None when it is not in that layout (another version, a stand-in's, a Kafka offset)."""
    try:
        n = int(sequence_number)
    except ValueError:
        return None
    if n.bit_length() != 186 or (n >> 184) & 0xF != 2:
        return None
    return (n >> 4) & 0xFFFFFFFF


class _Delivered:
    """The sequence numbers of one batch handed to the processor (None once forgotten)."""

    __slots__ = ("first", "last", "seqs")

    def __init__(self, first: ExtendedSequenceNumber, last: ExtendedSequenceNumber, seqs: frozenset[str] | None) -> None:
        self.first, self.last, self.seqs = first, last, seqs


class CheckpointTracker:
    """The framework's side: the range a checkpoint may take, and what was written. Thread-safe:
    the shard's runner advances it while the processor (possibly on another thread, an async
    processor's loop) checkpoints through ``checkpointer``."""

    def __init__(self, store: CheckpointStore, lease: Lease, shard_id: str, current: ExtendedSequenceNumber) -> None:
        self._store = store
        #: The holding the coordinator handed out: every write goes with it (it fences them).
        self.lease = lease
        self.lease_key = lease.lease_key
        self.shard_id = shard_id
        self._lock = threading.Lock()
        self._current = current
        self._largest_permitted = current
        self._pending: ExtendedSequenceNumber | None = None
        #: The furthest checkpoint the processor asked for whose write was refused for a moment
        #: (a rebalance, throttling): processed all the same, so a later checkpoint may cover it.
        self._unwritten: ExtendedSequenceNumber | None = None
        match = _SHARD_INDEX.search(shard_id)
        self._shard_index = int(match.group(1)) if match else None
        #: Batches delivered and not yet checkpointed past, oldest first (Kinesis records: a
        #: Kafka partition's offsets are its own, so its range says enough).
        self._batches: deque[_Delivered] = deque()
        self._remembered = 0
        #: The processor's object.
        self.checkpointer = Checkpointer(self)

    @property
    def last_checkpoint(self) -> ExtendedSequenceNumber:
        with self._lock:
            return self._current

    @property
    def largest_permitted(self) -> ExtendedSequenceNumber:
        """The last delivered record (SHARD_END once the shard ended): no checkpoint beyond it."""
        with self._lock:
            return self._largest_permitted

    @property
    def pending(self) -> ExtendedSequenceNumber | None:
        with self._lock:
            return self._pending

    def delivered(self, upto: ExtendedSequenceNumber, records: Sequence[Record] = ()) -> ExtendedSequenceNumber:
        """Records up to ``upto`` (``records``, when given) are being handed to the processor;
        returns the previous bound (for ``undeliver``)."""
        seqs = None
        if records and records[0].topic is None:  # Kinesis: remember which numbers this shard gave
            seqs = frozenset([r.sequence_number for r in records])
        with self._lock:
            previous = self._largest_permitted
            if upto > self._largest_permitted:
                self._largest_permitted = upto
            if seqs is not None:
                self._batches.append(_Delivered(records[0].extended_sequence_number, upto, seqs))
                self._remembered += len(seqs)
                for old in self._batches:  # oldest first: keep the memory bounded
                    if self._remembered <= MAX_REMEMBERED:
                        break
                    if old.seqs is not None:
                        self._remembered -= len(old.seqs)
                        old.seqs = None
            return previous

    def undeliver(self, previous: ExtendedSequenceNumber) -> None:
        """A batch failed and was not processed: its records are not checkpointable any more
        (unless already checkpointed, or checkpointed by the processor with a write that failed
        for a moment: a batch whose only failure was that write is not redelivered at a handoff)."""
        with self._lock:
            self._largest_permitted = max(previous, self._current, self._unwritten or self._current)

    def shard_ended(self) -> None:
        with self._lock:
            self._largest_permitted = ExtendedSequenceNumber(SHARD_END)

    # -- for the Checkpointer ------------------------------------------------------------------

    def _resolve(self, target: Record | str | ExtendedSequenceNumber | None,
                 sub_sequence_number: int | None) -> ExtendedSequenceNumber:
        if target is None:
            return self._largest_permitted
        if isinstance(target, ExtendedSequenceNumber):
            self._check_shard(target.sequence_number)
            return target
        if isinstance(target, Record):
            if target.shard_id and target.shard_id != self.shard_id:
                raise InvalidCheckpointError(f"shard {self.shard_id}: cannot checkpoint at a record of shard "
                                             f"{target.shard_id} (sequence number {target.sequence_number})")
            return target.extended_sequence_number
        if isinstance(target, str):
            if target != SHARD_END and not target.isdigit():
                raise InvalidCheckpointError(f"not a sequence number: {target!r}")
            self._check_shard(target)
            return ExtendedSequenceNumber(target, sub_sequence_number or 0)
        raise InvalidCheckpointError(f"cannot checkpoint at {target!r}")

    def _check_shard(self, sequence_number: str) -> None:
        """A Kinesis sequence number names its shard: one of another shard is refused."""
        index = kinesis_shard_index(sequence_number)
        if index is not None and self._shard_index is not None and index != self._shard_index:
            raise InvalidCheckpointError(
                f"shard {self.shard_id}: sequence number {sequence_number} belongs to shardId-{index:012d}, not to "
                f"this shard: checkpoint a record this processor was given")

    def _was_delivered(self, esn: ExtendedSequenceNumber) -> bool:
        """Whether ``esn`` is a record delivered on this shard (or cannot be told any more)."""
        if esn.is_sentinel or esn == self._current or not self._batches:
            return True
        for batch in self._batches:
            if batch.first <= esn <= batch.last:
                return batch.seqs is None or esn.sequence_number in batch.seqs
        return False

    def _validate(self, esn: ExtendedSequenceNumber) -> None:
        if esn < self._current:
            raise InvalidCheckpointError(
                f"shard {self.shard_id}: checkpoint {esn} is before the current checkpoint {self._current}"
            )
        if esn > self._largest_permitted:
            raise InvalidCheckpointError(
                f"shard {self.shard_id}: checkpoint {esn} is past the last delivered record "
                f"{self._largest_permitted}"
            )
        if not self._was_delivered(esn):
            raise InvalidCheckpointError(
                f"shard {self.shard_id}: sequence number {esn} is not a record this processor was given on this "
                f"shard: checkpoint a record it was given (or call checkpoint() for everything delivered)")

    def _forget_through(self, esn: ExtendedSequenceNumber) -> None:
        while self._batches and self._batches[0].last <= esn:
            gone = self._batches.popleft()
            if gone.seqs is not None:
                self._remembered -= len(gone.seqs)

    def write(self, target: Record | str | ExtendedSequenceNumber | None, sub_sequence_number: int | None) -> None:
        """Validate and write a checkpoint (the store raises LeaseLostError when fenced out)."""
        with self._lock:
            esn = self._resolve(target, sub_sequence_number)
            self._validate(esn)
            try:
                self._store.checkpoint(self.lease, esn, None)
            except CheckpointThrottledError:
                if self._unwritten is None or esn > self._unwritten:
                    self._unwritten = esn
                raise
            self._current = esn
            self._pending = None
            if self._unwritten is not None and esn >= self._unwritten:
                self._unwritten = None
            self._forget_through(esn)

    def prepare(self, target: Record | str | ExtendedSequenceNumber | None,
                sub_sequence_number: int | None) -> ExtendedSequenceNumber:
        with self._lock:
            esn = self._resolve(target, sub_sequence_number)
            self._validate(esn)
            self._store.prepare_checkpoint(self.lease, esn)
            self._pending = esn
            return esn


class PreparedCheckpoint:
    """A checkpoint recorded as pending; ``checkpoint()`` commits it."""

    def __init__(self, owner: Checkpointer, pending: ExtendedSequenceNumber) -> None:
        self._owner = owner
        self.pending_checkpoint = pending

    def checkpoint(self) -> None:
        self._owner.checkpoint(
            self.pending_checkpoint.sequence_number, self.pending_checkpoint.sub_sequence_number
        )


class Checkpointer:
    """Records how far a shard is processed.

    ``checkpoint()`` covers every record delivered so far (SHARD_END once the shard ended);
    ``checkpoint(record)`` or ``checkpoint(sequence_number, sub_sequence_number)`` a given point,
    which must lie between the current checkpoint and the last delivered record. Raises
    LeaseLostError when the lease is gone, InvalidCheckpointError for an out-of-range point.
    """

    def __init__(self, tracker: CheckpointTracker) -> None:
        self._tracker = tracker
        self.shard_id = tracker.shard_id

    @property
    def last_checkpoint(self) -> ExtendedSequenceNumber:
        return self._tracker.last_checkpoint

    @property
    def largest_permitted(self) -> ExtendedSequenceNumber:
        return self._tracker.largest_permitted

    def checkpoint(
        self,
        record_or_sequence_number: Record | str | ExtendedSequenceNumber | None = None,
        sub_sequence_number: int | None = None,
    ) -> None:
        """Write a checkpoint (fenced by the lease)."""
        self._tracker.write(record_or_sequence_number, sub_sequence_number)

    async def checkpoint_async(
        self,
        record_or_sequence_number: Record | str | ExtendedSequenceNumber | None = None,
        sub_sequence_number: int | None = None,
    ) -> None:
        """``checkpoint`` for async processors: the write runs in a thread, not on the loop."""
        import asyncio

        await asyncio.to_thread(self.checkpoint, record_or_sequence_number, sub_sequence_number)

    def prepare_checkpoint(
        self,
        record_or_sequence_number: Record | str | ExtendedSequenceNumber | None = None,
        sub_sequence_number: int | None = None,
    ) -> PreparedCheckpoint:
        """Record a pending checkpoint (two-phase); commit it later with ``.checkpoint()``."""
        return PreparedCheckpoint(self, self._tracker.prepare(record_or_sequence_number, sub_sequence_number))
