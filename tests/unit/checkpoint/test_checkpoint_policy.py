"""The automatic checkpoint policy (checkpoint_every / checkpoint_interval), through the real
shard lifecycle in the harness."""

from __future__ import annotations

import pytest

from streamworker import ProcessRecordsInput, RecordProcessor
from streamworker.errors import CheckpointThrottledError
from streamworker.processor import ShardEndedInput, ShutdownRequestedInput
from streamworker.testing import ShardHarness


class NeverCheckpoints(RecordProcessor):
    def __init__(self) -> None:
        self.seen: list[bytes] = []

    def process_records(self, process_records_input: ProcessRecordsInput) -> None:
        self.seen.extend(r.data for r in process_records_input.records)

    def shard_ended(self, shard_ended_input: ShardEndedInput) -> None:
        pass  # no SHARD_END checkpoint: the policy writes it

    def shutdown_requested(self, shutdown_requested_input: ShutdownRequestedInput) -> None:
        pass  # the base class would checkpoint here


class PoisonedBy(NeverCheckpoints):
    def process_records(self, process_records_input: ProcessRecordsInput) -> None:
        if any(r.data == b"poison" for r in process_records_input.records):
            raise RuntimeError("poison")
        super().process_records(process_records_input)


def test_every_n_records_checkpoints_after_the_batch_that_crosses_n() -> None:
    h = ShardHarness(NeverCheckpoints(), checkpoint_every=5)
    h.initialize()
    h.deliver([b"1", b"2", b"3"])
    assert h.checkpoints == []  # 3 < 5: nothing written yet
    h.deliver([b"4", b"5", b"6"])
    assert h.checkpoints == ["6"]  # the whole processed batch, not just record 5
    h.deliver([b"7"] * 4)
    assert h.checkpoints == ["6"]
    h.deliver([b"x"])
    assert h.checkpoints == ["6", "11"]


def test_interval_checkpoints_when_the_oldest_unsaved_record_is_that_old_even_while_idle() -> None:
    h = ShardHarness(NeverCheckpoints(), checkpoint_interval=10.0)
    h.initialize()
    h.deliver([b"a", b"b"])
    assert h.checkpoints == []
    h.clock.advance(5)
    h.deliver([b"c"])
    assert h.checkpoints == []  # the oldest unsaved record was processed 5 s ago
    h.clock.advance(5)
    h.idle()  # no new records: the interval still ends
    assert h.checkpoints == ["3"]
    h.clock.advance(60)
    h.idle()
    assert h.checkpoints == ["3"]  # nothing new processed: no write


def test_graceful_shutdown_checkpoints_what_was_processed() -> None:
    h = ShardHarness(NeverCheckpoints(), checkpoint_every=100)
    h.initialize()
    h.deliver([b"a", b"b"])
    h.request_shutdown()
    assert h.checkpoints == ["2"]
    assert h.end_reason == "shutdown requested"


def test_shard_end_is_checkpointed_for_a_processor_that_does_not() -> None:
    h = ShardHarness(NeverCheckpoints(), checkpoint_interval=30.0)
    h.initialize()
    h.deliver([b"a"])
    h.end_shard(["shard-2"])  # raises ShardEndNotCheckpointedError without the policy
    assert h.checkpoint == "SHARD_END"


def test_without_a_policy_nothing_is_written_for_the_processor() -> None:
    h = ShardHarness(NeverCheckpoints())
    h.initialize()
    h.deliver([b"a"] * 10)
    h.clock.advance(3600)
    h.idle()
    h.request_shutdown()
    assert h.checkpoints == []


def test_a_lost_lease_is_never_checkpointed_and_ends_the_shard() -> None:
    h = ShardHarness(NeverCheckpoints(), checkpoint_every=3)
    h.initialize()
    h.deliver([b"a", b"b"])
    h.lose_lease()
    h.deliver([b"c"])  # due now, but fenced: the write is refused, the shard ends lease-lost
    assert h.checkpoints == []
    assert h.end_reason == "lease lost"
    assert "lease_lost" in h.calls


def test_a_failed_batch_is_not_covered_and_a_halted_shard_is_not_checkpointed_at_shutdown() -> None:
    h = ShardHarness(PoisonedBy(), checkpoint_every=3, processor_retries=0)
    h.initialize()
    h.deliver([b"a", b"b"])
    with pytest.raises(RuntimeError, match="poison"):
        h.deliver([b"poison"])  # would make 3 records: the failed batch does not count
    assert h.state == "HALTED"
    assert h.checkpoints == []


def test_a_throttled_write_is_retried_later_not_lost() -> None:
    h = ShardHarness(NeverCheckpoints(), checkpoint_every=2)
    h.initialize()
    failures = [CheckpointThrottledError("throttled")]

    def flaky(lease_key: str) -> None:
        if failures:
            raise failures.pop()

    h._leases.before_write = flaky
    h.deliver([b"a", b"b"])
    assert h.checkpoints == []  # throttled: still unsaved
    h.clock.advance(2)
    h.idle()
    assert h.checkpoints == ["2"]
