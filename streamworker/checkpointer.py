"""The checkpointer handed to a processor: validates and writes fenced checkpoints."""

from __future__ import annotations

import threading
from typing import Protocol

from .errors import InvalidCheckpointError
from .records import SHARD_END, ExtendedSequenceNumber, Record


class CheckpointStore(Protocol):
    """Where checkpoints go. Writes must be fenced: raise LeaseLostError if the lease is gone."""

    def checkpoint(
        self,
        lease_key: str,
        checkpoint: ExtendedSequenceNumber,
        pending: ExtendedSequenceNumber | None = None,
    ) -> None: ...

    def prepare_checkpoint(self, lease_key: str, pending: ExtendedSequenceNumber) -> None: ...


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

    def __init__(
        self,
        store: CheckpointStore,
        lease_key: str,
        shard_id: str,
        current: ExtendedSequenceNumber,
    ) -> None:
        self._store = store
        self._lease_key = lease_key
        self.shard_id = shard_id
        self._lock = threading.Lock()
        self._current = current
        self._largest_permitted: ExtendedSequenceNumber = current
        self._pending: ExtendedSequenceNumber | None = None

    @property
    def last_checkpoint(self) -> ExtendedSequenceNumber:
        return self._current

    @property
    def largest_permitted(self) -> ExtendedSequenceNumber:
        return self._largest_permitted

    def _advance(self, delivered: ExtendedSequenceNumber) -> None:
        """Called by the worker after delivering records up to ``delivered``."""
        with self._lock:
            if delivered > self._largest_permitted:
                self._largest_permitted = delivered

    def _mark_shard_end(self) -> None:
        with self._lock:
            self._largest_permitted = ExtendedSequenceNumber(SHARD_END)

    def _resolve(
        self, target: Record | str | ExtendedSequenceNumber | None, sub_sequence_number: int | None
    ) -> ExtendedSequenceNumber:
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

    def checkpoint(
        self,
        record_or_sequence_number: Record | str | ExtendedSequenceNumber | None = None,
        sub_sequence_number: int | None = None,
    ) -> None:
        """Write a checkpoint (fenced by the lease)."""
        with self._lock:
            esn = self._resolve(record_or_sequence_number, sub_sequence_number)
            self._validate(esn)
            self._store.checkpoint(self._lease_key, esn, None)
            self._current = esn
            self._pending = None

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
        with self._lock:
            esn = self._resolve(record_or_sequence_number, sub_sequence_number)
            self._validate(esn)
            self._store.prepare_checkpoint(self._lease_key, esn)
            self._pending = esn
            return PreparedCheckpoint(self, esn)
