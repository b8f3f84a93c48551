"""Checkpoints of one shard, in two objects: the ``CheckpointTracker`` the framework drives (what
was delivered, so which checkpoints are valid) and the ``Checkpointer`` a processor is handed
(write a valid checkpoint, fenced by the lease). Both share the tracker's lock."""

from __future__ import annotations

import threading

from .coordinators.base import CheckpointStore
from .errors import InvalidCheckpointError
from .records import SHARD_END, ExtendedSequenceNumber, Record


class CheckpointTracker:
    """The framework's side: the range a checkpoint may take, and what was written. Thread-safe:
    the shard's runner advances it while the processor (possibly on another thread, an async
    processor's loop) checkpoints through ``checkpointer``."""

    def __init__(self, store: CheckpointStore, lease_key: str, shard_id: str, current: ExtendedSequenceNumber) -> None:
        self._store = store
        self.lease_key = lease_key
        self.shard_id = shard_id
        self._lock = threading.Lock()
        self._current = current
        self._largest_permitted = current
        self._pending: ExtendedSequenceNumber | None = None
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

    def delivered(self, upto: ExtendedSequenceNumber) -> ExtendedSequenceNumber:
        """Records up to ``upto`` are being handed to the processor; returns the previous bound
        (for ``undeliver``)."""
        with self._lock:
            previous = self._largest_permitted
            if upto > self._largest_permitted:
                self._largest_permitted = upto
            return previous

    def undeliver(self, previous: ExtendedSequenceNumber) -> None:
        """A batch failed and was not processed: its records are not checkpointable any more
        (unless already checkpointed)."""
        with self._lock:
            self._largest_permitted = max(previous, self._current)

    def shard_ended(self) -> None:
        with self._lock:
            self._largest_permitted = ExtendedSequenceNumber(SHARD_END)

    # -- for the Checkpointer ------------------------------------------------------------------

    def _resolve(self, target: Record | str | ExtendedSequenceNumber | None,
                 sub_sequence_number: int | None) -> ExtendedSequenceNumber:
        if target is None:
            return self._largest_permitted
        if isinstance(target, ExtendedSequenceNumber):
            return target
        if isinstance(target, Record):
            return target.extended_sequence_number
        if isinstance(target, str):
            if target != SHARD_END and not target.isdigit():
                raise InvalidCheckpointError(f"not a sequence number: {target!r}")
            return ExtendedSequenceNumber(target, sub_sequence_number or 0)
        raise InvalidCheckpointError(f"cannot checkpoint at {target!r}")

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

    def write(self, target: Record | str | ExtendedSequenceNumber | None, sub_sequence_number: int | None) -> None:
        """Validate and write a checkpoint (the store raises LeaseLostError when fenced out)."""
        with self._lock:
            esn = self._resolve(target, sub_sequence_number)
            self._validate(esn)
            self._store.checkpoint(self.lease_key, esn, None)
            self._current = esn
            self._pending = None

    def prepare(self, target: Record | str | ExtendedSequenceNumber | None,
                sub_sequence_number: int | None) -> ExtendedSequenceNumber:
        with self._lock:
            esn = self._resolve(target, sub_sequence_number)
            self._validate(esn)
            self._store.prepare_checkpoint(self.lease_key, esn)
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
