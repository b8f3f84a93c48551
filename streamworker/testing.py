"""Unit-test a RecordProcessor without any server.

    from streamworker.testing import ShardHarness

    h = ShardHarness(MyProcessor())
    h.initialize()
    h.deliver([b"one", b"two"], partition_key="k")
    assert h.checkpoint == "2"                      # what the processor checkpointed
    children = h.end_shard(["shard-2", "shard-3"])  # resharding: shard_ended, then the children
    h2 = ShardHarness(MyProcessor(), shard_id="shard-2")
    h.lose_lease()                                  # later checkpoints raise LeaseLostError

Calls are synchronous and in order, with the real Checkpointer (its validation and fencing),
so what passes here behaves the same under a Worker.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .checkpointer import Checkpointer
from .errors import LeaseLostError, ShardEndNotCheckpointedError
from .processor import (
    ChildShard,
    InitializationInput,
    LeaseLostInput,
    ProcessRecordsInput,
    RecordProcessor,
    ShardEndedInput,
    ShutdownRequestedInput,
)
from .records import ExtendedSequenceNumber, Record

__all__ = ["ShardHarness", "make_records"]


@dataclass
class _MemoryLease:
    """The checkpoint store of one shard: fenced like the lease table."""

    held: bool = True
    checkpoint: ExtendedSequenceNumber = field(default_factory=lambda: ExtendedSequenceNumber("TRIM_HORIZON"))
    pending: ExtendedSequenceNumber | None = None
    history: list[ExtendedSequenceNumber] = field(default_factory=list)

    def checkpoint_(self, lease_key: str, checkpoint: ExtendedSequenceNumber,
                    pending: ExtendedSequenceNumber | None = None) -> None:
        if not self.held:
            raise LeaseLostError(f"shard {lease_key}: checkpoint refused: the lease was lost")
        self.checkpoint, self.pending = checkpoint, pending
        self.history.append(checkpoint)

    def prepare_checkpoint(self, lease_key: str, pending: ExtendedSequenceNumber) -> None:
        if not self.held:
            raise LeaseLostError(f"shard {lease_key}: prepare_checkpoint refused: the lease was lost")
        self.pending = pending


class _Store:
    def __init__(self, lease: _MemoryLease) -> None:
        self._lease = lease

    def checkpoint(self, lease_key: str, checkpoint: ExtendedSequenceNumber,
                   pending: ExtendedSequenceNumber | None = None) -> None:
        self._lease.checkpoint_(lease_key, checkpoint, pending)

    def prepare_checkpoint(self, lease_key: str, pending: ExtendedSequenceNumber) -> None:
        self._lease.prepare_checkpoint(lease_key, pending)


def make_records(payloads: Iterable[bytes | str], *, shard_id: str = "shard-1", start: int = 1,
                 partition_key: str = "key") -> list[Record]:
    """Records numbered from ``start`` (sequence numbers "1", "2", …)."""
    out = []
    for i, p in enumerate(payloads):
        data = p.encode() if isinstance(p, str) else p
        out.append(Record(data=data, partition_key=partition_key, sequence_number=str(start + i), shard_id=shard_id,
                          approximate_arrival_timestamp=datetime.now(timezone.utc)))
    return out


class ShardHarness:
    """Drives one processor through one shard's lifecycle, in memory."""

    def __init__(self, processor: RecordProcessor, shard_id: str = "shard-1") -> None:
        self.processor = processor
        self.shard_id = shard_id
        self._lease = _MemoryLease()
        self.checkpointer: Checkpointer | None = None
        self.calls: list[str] = []
        self._next_seq = 1
        self._ended = False

    # -- what the processor did --------------------------------------------------------------

    @property
    def checkpoint(self) -> str:
        """The last checkpoint written (a sequence number, or a sentinel such as SHARD_END)."""
        return str(self._lease.checkpoint)

    @property
    def checkpoints(self) -> list[str]:
        return [str(c) for c in self._lease.history]

    @property
    def pending_checkpoint(self) -> str | None:
        return str(self._lease.pending) if self._lease.pending else None

    # -- the lifecycle ---------------------------------------------------------------------------

    def initialize(self, checkpoint: str = "TRIM_HORIZON", sub_sequence_number: int = 0) -> None:
        esn = ExtendedSequenceNumber(checkpoint, sub_sequence_number)
        self._lease.checkpoint = esn
        if not esn.is_sentinel:
            self._next_seq = int(checkpoint) + 1
        self.checkpointer = Checkpointer(_Store(self._lease), self.shard_id, self.shard_id, esn)
        self.calls.append("initialize")
        self.processor.initialize(InitializationInput(self.shard_id, esn))

    def deliver(self, records: Sequence[Record] | Sequence[bytes | str], *, partition_key: str = "key",
                millis_behind_latest: int | None = 0) -> list[Record]:
        """Call process_records with these records (payloads are numbered on from the last one).
        An exception from the processor propagates, as it would into the worker's retry policy."""
        cp = self._require_checkpointer()
        if records and not isinstance(records[0], Record):
            recs = make_records(records, shard_id=self.shard_id, start=self._next_seq,  # type: ignore[arg-type]
                                partition_key=partition_key)
        else:
            recs = list(records)  # type: ignore[arg-type]
        if recs:
            self._next_seq = int(recs[-1].sequence_number) + 1
            cp._advance(recs[-1].extended_sequence_number)
        self.calls.append("process_records")
        self.processor.process_records(ProcessRecordsInput(recs, cp, self.shard_id, millis_behind_latest))
        return recs

    def end_shard(self, children: Sequence[str] = ()) -> list[ChildShard]:
        """Resharding: the shard closed. Calls shard_ended and checks it checkpointed SHARD_END
        (raising ShardEndNotCheckpointedError like the worker's error, naming the shard)."""
        cp = self._require_checkpointer()
        cp._mark_shard_end()
        kids = tuple(ChildShard(c, (self.shard_id,)) for c in children)
        self.calls.append("shard_ended")
        self.processor.shard_ended(ShardEndedInput(self.shard_id, cp, kids))
        self._ended = True
        if not self._lease.checkpoint.is_shard_end:
            raise ShardEndNotCheckpointedError(
                f"shard {self.shard_id}: shard_ended returned without checkpointing SHARD_END")
        return list(kids)

    def lose_lease(self) -> None:
        """Another worker took the shard: lease_lost is called and checkpoints are refused."""
        self._lease.held = False
        self.calls.append("lease_lost")
        self.processor.lease_lost(LeaseLostInput(self.shard_id))

    def request_shutdown(self) -> None:
        """A graceful stop (SIGTERM or a rebalancing handoff)."""
        cp = self._require_checkpointer()
        self.calls.append("shutdown_requested")
        self.processor.shutdown_requested(ShutdownRequestedInput(self.shard_id, cp))

    def _require_checkpointer(self) -> Checkpointer:
        if self.checkpointer is None:
            raise RuntimeError("call initialize() first")
        if self._ended:
            raise RuntimeError(f"shard {self.shard_id} has ended")
        return self.checkpointer
