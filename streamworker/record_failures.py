"""Per-record failure reports (as Lambda's ``ReportBatchItemFailures``): ``process_records``
names the records of its batch that failed; the shard checkpoints up to the first of them and
delivers the batch again from there."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from .checkpointer import CheckpointTracker
from .processor_calls import ProcessorCall
from .records import ExtendedSequenceNumber, Record
from .sources.base import Batch


class RecordFailures(Exception):
    """Raise (or return) this from ``process_records`` naming the records that failed (``Record``
    objects, or sequence numbers). The records before the first of them count as processed and are
    checkpointed; the batch is delivered again from that record on, with the retry backoff, and
    after ``processor_retries`` the error policy (halt, dead-letter) takes what is left."""

    def __init__(self, records: Sequence[Record | str], cause: BaseException | None = None) -> None:
        self.records = list(records)
        self.cause = cause
        super().__init__(f"{len(self.records)} record(s) failed" + (f": {cause!r}" if cause is not None else ""))


def raise_reported(result: object) -> None:
    """A returned ``RecordFailures`` is raised like a thrown one."""
    if isinstance(result, RecordFailures):
        raise result


def first_failure(batch: Batch, failures: RecordFailures) -> int | None:
    """The index in ``batch`` of its first record named in ``failures`` (None: none of them is there)."""
    exact: set[ExtendedSequenceNumber] = set()
    by_number: set[str] = set()
    for r in failures.records:
        if isinstance(r, Record):
            exact.add(r.extended_sequence_number)
        else:
            by_number.add(str(r))
    for i, rec in enumerate(batch.records):
        if rec.extended_sequence_number in exact or rec.sequence_number in by_number:
            return i
    return None


def redeliver_from_first_failure(call: ProcessorCall, failures: RecordFailures, tracker: CheckpointTracker,
                                 run: Callable[[Batch], Callable[[], object]]) -> list[Record]:
    """Checkpoint the records before the first failure and point ``call`` at the rest of its
    batch; returns the records now done. A report naming no record of the batch redelivers it all.
    Raises LeaseLostError when the checkpoint is refused."""
    batch = call.batch
    at = None if batch is None else first_failure(batch, failures)
    if batch is None or at is None:
        return []
    done = batch.records[:at]
    if done and tracker.last_checkpoint < done[-1].extended_sequence_number:
        tracker.write(done[-1], None)
    rest = replace(batch, records=batch.records[at:], size=None)
    call.batch, call.run = rest, run(rest)
    return done
