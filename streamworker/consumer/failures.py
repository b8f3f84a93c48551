"""Per-record failure reports (as Lambda's ``ReportBatchItemFailures``): ``process_records``
raises ``RecordFailures`` (errors.py) naming the records of its batch that failed; the shard
checkpoints up to the first of them and delivers the batch again from there."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import replace

from streamworker.checkpoint.checkpointer import CheckpointTracker
from streamworker.consumer.calls import ProcessorCall
from streamworker.errors import RecordFailures
from streamworker.records import ExtendedSequenceNumber, Record
from streamworker.sources.base import Batch


def raise_reported(result: object, processor: object) -> None:
    """A ``RecordFailures`` returned instead of raised is still honoured, as if raised, with a
    ``FutureWarning`` (shown once per processor class): raising is the one way."""
    if isinstance(result, RecordFailures):
        warnings.warn(f"{type(processor).__name__}.process_records returned RecordFailures; raise it instead "
                      "(returning it is deprecated)", FutureWarning, stacklevel=1)
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
