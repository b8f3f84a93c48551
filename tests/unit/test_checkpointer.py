from __future__ import annotations

from typing import Any

import pytest

from streamworker.checkpointer import CheckpointTracker
from streamworker.errors import InvalidCheckpointError
from streamworker.records import ExtendedSequenceNumber as ESN
from streamworker.records import Record


class Store:
    def __init__(self) -> None:
        self.writes: list[Any] = []

    def checkpoint(self, key: Any, checkpoint: Any, pending: Any=None) -> None:
        self.writes.append(("checkpoint", key, checkpoint, pending))

    def prepare_checkpoint(self, key: Any, pending: Any) -> None:
        self.writes.append(("prepare", key, pending))


def rec(seq: int, sub: int = 0) -> Record:
    return Record(data=b"", partition_key="k", sequence_number=str(seq), sub_sequence_number=sub)


def test_checkpoint_without_argument_covers_everything_delivered() -> None:
    store = Store()
    tracker = CheckpointTracker(store, "lease", "shard", ESN("TRIM_HORIZON"))
    cp = tracker.checkpointer
    tracker.delivered(ESN("30"))
    cp.checkpoint()
    assert store.writes == [("checkpoint", "lease", ESN("30"), None)]
    assert cp.last_checkpoint == ESN("30")


def test_checkpoint_at_record_and_at_sequence_with_sub_sequence() -> None:
    store = Store()
    tracker = CheckpointTracker(store, "lease", "shard", ESN("5"))
    cp = tracker.checkpointer
    tracker.delivered(ESN("40", 3))
    cp.checkpoint(rec(10))
    cp.checkpoint("40", 2)
    cp.checkpoint(rec(40, 3))
    assert [w[2] for w in store.writes] == [ESN("10"), ESN("40", 2), ESN("40", 3)]


def test_out_of_range_checkpoints_are_refused_and_nothing_is_written() -> None:
    store = Store()
    tracker = CheckpointTracker(store, "lease", "shard-7", ESN("20"))
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
    tracker = CheckpointTracker(store, "lease", "shard", ESN("1"))
    cp = tracker.checkpointer
    tracker.delivered(ESN("9"))
    tracker.shard_ended()
    cp.checkpoint()
    assert store.writes[-1][2] == ESN("SHARD_END")


def test_two_phase_checkpoint() -> None:
    store = Store()
    tracker = CheckpointTracker(store, "lease", "shard", ESN("1"))
    cp = tracker.checkpointer
    tracker.delivered(ESN("9"))
    prepared = cp.prepare_checkpoint("7")
    assert store.writes == [("prepare", "lease", ESN("7"))]
    assert prepared.pending_checkpoint == ESN("7")
    prepared.checkpoint()
    assert store.writes[-1] == ("checkpoint", "lease", ESN("7"), None)
    assert cp.last_checkpoint == ESN("7")
