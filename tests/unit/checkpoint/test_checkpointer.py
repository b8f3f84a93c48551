from __future__ import annotations

from typing import Any

import pytest

from streamworker.checkpoint.checkpointer import CheckpointTracker
from streamworker.errors import CheckpointThrottledError, InvalidCheckpointError
from streamworker.leases.lease import Lease
from streamworker.records import ExtendedSequenceNumber as ESN
from streamworker.records import Record


class Store:
    def __init__(self) -> None:
        self.writes: list[Any] = []

    def checkpoint(self, key: Any, checkpoint: Any, pending: Any=None) -> None:
        self.writes.append(("checkpoint", key.lease_key, checkpoint, pending))

    def prepare_checkpoint(self, key: Any, pending: Any) -> None:
        self.writes.append(("prepare", key.lease_key, pending))


def rec(seq: int, sub: int = 0) -> Record:
    return Record(data=b"", partition_key="k", sequence_number=str(seq), sub_sequence_number=sub)


def test_checkpoint_without_argument_covers_everything_delivered() -> None:
    store = Store()
    tracker = CheckpointTracker(store, Lease("lease"), "shard", ESN("TRIM_HORIZON"))
    cp = tracker.checkpointer
    tracker.delivered(ESN("30"))
    cp.checkpoint()
    assert store.writes == [("checkpoint", "lease", ESN("30"), None)]
    assert cp.last_checkpoint == ESN("30")


def test_checkpoint_at_record_and_at_sequence_with_sub_sequence() -> None:
    store = Store()
    tracker = CheckpointTracker(store, Lease("lease"), "shard", ESN("5"))
    cp = tracker.checkpointer
    tracker.delivered(ESN("40", 3))
    cp.checkpoint(rec(10))
    cp.checkpoint("40", 2)
    cp.checkpoint(rec(40, 3))
    assert [w[2] for w in store.writes] == [ESN("10"), ESN("40", 2), ESN("40", 3)]


def test_out_of_range_checkpoints_are_refused_and_nothing_is_written() -> None:
    store = Store()
    tracker = CheckpointTracker(store, Lease("lease"), "shard-7", ESN("20"))
    cp = tracker.checkpointer
    tracker.delivered(ESN("50"))
    with pytest.raises(InvalidCheckpointError, match="shard-7.*before the current checkpoint"):
        cp.checkpoint("19")
    with pytest.raises(InvalidCheckpointError, match="past the last delivered"):
        cp.checkpoint("51")
    with pytest.raises(InvalidCheckpointError, match="past the last delivered"):
        cp.checkpoint("SHARD_END")
    with pytest.raises(InvalidCheckpointError, match="not a sequence number"):
        cp.checkpoint("abc")
    assert store.writes == []


def test_shard_end_checkpoint_only_after_the_shard_ended() -> None:
    store = Store()
    tracker = CheckpointTracker(store, Lease("lease"), "shard", ESN("1"))
    cp = tracker.checkpointer
    tracker.delivered(ESN("9"))
    tracker.shard_ended()
    cp.checkpoint()
    assert store.writes[-1][2] == ESN("SHARD_END")


def test_two_phase_checkpoint() -> None:
    store = Store()
    tracker = CheckpointTracker(store, Lease("lease"), "shard", ESN("1"))
    cp = tracker.checkpointer
    tracker.delivered(ESN("9"))
    prepared = cp.prepare_checkpoint("7")
    assert store.writes == [("prepare", "lease", ESN("7"))]
    assert prepared.pending_checkpoint == ESN("7")
    prepared.checkpoint()
    assert store.writes[-1] == ("checkpoint", "lease", ESN("7"), None)
    assert cp.last_checkpoint == ESN("7")


def v2(shard_index: int, n: int) -> str:
    """A Kinesis sequence number in its v2 layout (as Kinesis and kinesis-mock issue them)."""
    return str((2 << 184) | (n << 36) | (shard_index << 4))


def kinesis_rec(shard_index: int, n: int) -> Record:
    return Record(data=b"", partition_key="k", sequence_number=v2(shard_index, n),
                  shard_id=f"shardId-{shard_index:012d}")


def test_another_shards_sequence_number_is_refused_on_the_first_batch() -> None:
    """It sorts above TRIM_HORIZON and below this batch's records: the range check let it through
    and the next owner halted at GetShardIterator ('Unable to find record')."""
    from streamworker.checkpoint.checkpointer import kinesis_shard_index

    store = Store()
    tracker = CheckpointTracker(store, Lease("shardId-000000000003"), "shardId-000000000003", ESN("TRIM_HORIZON"))
    batch = [kinesis_rec(3, n) for n in range(100, 110)]
    tracker.delivered(batch[-1].extended_sequence_number, batch)
    foreign = v2(7, 50)
    assert kinesis_shard_index(foreign) == 7 and ESN(foreign) < batch[0].extended_sequence_number
    with pytest.raises(InvalidCheckpointError, match="belongs to shardId-000000000007, not to this shard"):
        tracker.checkpointer.checkpoint(foreign)
    with pytest.raises(InvalidCheckpointError, match="a record of shard shardId-000000000007"):
        tracker.checkpointer.checkpoint(kinesis_rec(7, 105))
    assert store.writes == []
    tracker.checkpointer.checkpoint(batch[4].sequence_number)  # one of its own: fine
    assert store.writes == [("checkpoint", "shardId-000000000003", ESN(batch[4].sequence_number), None)]


def test_a_number_in_range_that_was_never_delivered_is_refused() -> None:
    """Stand-ins (and other streams' same-index shards) give numbers the layout cannot place:
    only what this processor was given on this shard may be checkpointed."""
    store = Store()
    tracker = CheckpointTracker(store, Lease("lease"), "shardId-000000000000", ESN("TRIM_HORIZON"))
    batch = [rec(n) for n in (10, 20, 30)]
    tracker.delivered(batch[-1].extended_sequence_number, batch)
    for bad in ("5", "15"):
        with pytest.raises(InvalidCheckpointError, match="not a record this processor was given"):
            tracker.checkpointer.checkpoint(bad)
    tracker.checkpointer.checkpoint("20")
    tracker.checkpointer.checkpoint("20")  # the same checkpoint again
    later = [rec(n) for n in (40, 50)]
    tracker.delivered(later[-1].extended_sequence_number, later)
    with pytest.raises(InvalidCheckpointError):
        tracker.checkpointer.checkpoint("45")
    tracker.checkpointer.checkpoint()
    assert [w[2] for w in store.writes] == [ESN("20"), ESN("20"), ESN("50")]


def test_remembered_numbers_are_bounded_and_the_oldest_fall_back_to_the_range(monkeypatch: pytest.MonkeyPatch) -> None:
    import streamworker.checkpoint.checkpointer as mod

    monkeypatch.setattr(mod, "MAX_REMEMBERED", 4)
    store = Store()
    tracker = CheckpointTracker(store, Lease("lease"), "shard", ESN("TRIM_HORIZON"))
    for first in (10, 20, 30):
        batch = [rec(first), rec(first + 2)]
        tracker.delivered(batch[-1].extended_sequence_number, batch)
    assert tracker._remembered <= 4
    tracker.checkpointer.checkpoint("11")  # in the forgotten first batch's range: let through
    with pytest.raises(InvalidCheckpointError):
        tracker.checkpointer.checkpoint("31")  # a remembered batch: exact
    tracker.checkpointer.checkpoint()
    assert tracker._remembered == 0 and not tracker._batches


def test_kafka_offsets_need_no_memory() -> None:
    store = Store()
    tracker = CheckpointTracker(store, Lease("t:0"), "t:0", ESN("TRIM_HORIZON"))
    batch = [Record(b"", "", str(o), topic="t", partition=0, shard_id="t:0") for o in (3, 4, 7)]
    tracker.delivered(batch[-1].extended_sequence_number, batch)
    assert not tracker._batches
    tracker.checkpointer.checkpoint("4")
    assert store.writes == [("checkpoint", "t:0", ESN("4"), None)]


class RefusingOnce(Store):
    """A store whose first write is refused for a moment (a rebalance, throttling)."""

    def checkpoint(self, key: Any, checkpoint: Any, pending: Any = None) -> None:
        if not self.writes:
            self.writes.append(("refused", key.lease_key, checkpoint, pending))
            raise CheckpointThrottledError("checkpoint failed: ILLEGAL_GENERATION")
        super().checkpoint(key, checkpoint, pending)


def test_a_checkpoint_refused_for_a_moment_stays_checkpointable_after_its_batch_fails() -> None:
    """process_records checkpointed 30 and raised only because the write was refused; the batch is
    undelivered (a handoff came before its retry), and shutdown_requested's checkpoint() covers 30:
    the next owner does not process records the processor said it had done."""
    store = RefusingOnce()
    tracker = CheckpointTracker(store, Lease("lease"), "shard", ESN("10"))
    cp = tracker.checkpointer
    previous = tracker.delivered(ESN("30"))
    with pytest.raises(CheckpointThrottledError):
        cp.checkpoint()
    tracker.undeliver(previous)
    assert tracker.largest_permitted == ESN("30") and cp.last_checkpoint == ESN("10")
    cp.checkpoint()  # shutdown_requested's
    assert store.writes[-1] == ("checkpoint", "lease", ESN("30"), None)
    # once written, a failed batch after it undelivers back to the checkpoint, no further
    previous = tracker.delivered(ESN("50"))
    tracker.undeliver(previous)
    assert tracker.largest_permitted == ESN("30")


def test_a_batch_that_failed_without_a_checkpoint_is_not_checkpointable() -> None:
    store = Store()
    tracker = CheckpointTracker(store, Lease("lease"), "shard", ESN("10"))
    previous = tracker.delivered(ESN("30"))
    tracker.undeliver(previous)
    assert tracker.largest_permitted == ESN("10")
    tracker.checkpointer.checkpoint()
    assert store.writes == [("checkpoint", "lease", ESN("10"), None)]
