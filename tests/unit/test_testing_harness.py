from __future__ import annotations

from typing import Any

import pytest

from streamworker import LeaseLostError, RecordProcessor, ShardEndNotCheckpointedError
from streamworker.coordinator.processors import load_processor
from streamworker.testing import ShardHarness

MetricsProcessor: Any = load_processor("examples/metrics_processor.py:MetricsProcessor")


class Summing(RecordProcessor):
    def initialize(self, i: Any) -> None:
        self.total, self.refused = 0, 0

    def process_records(self, p: Any) -> None:
        self.total += sum(int(r.data) for r in p.records)
        try:
            p.checkpointer.checkpoint()
        except LeaseLostError:
            self.refused += 1


class Forgetful(Summing):
    def shard_ended(self, i: Any) -> None:
        pass  # forgets the SHARD_END checkpoint


def test_records_in_checkpoints_and_lifecycle_out() -> None:
    p = Summing()
    h = ShardHarness(p)
    h.initialize()
    h.deliver([b"1", b"2"])
    h.deliver([b"3"])
    assert p.total == 6 and h.checkpoint == "3" and h.checkpoints == ["2", "3"]
    h.request_shutdown()
    assert h.calls == ["initialize", "process_records", "process_records", "shutdown_requested"]


def test_lease_loss_refuses_checkpoints() -> None:
    p = Summing()
    h = ShardHarness(p)
    h.initialize(checkpoint="10")
    h.lose_lease()
    h.deliver([b"5"])
    assert p.refused == 1 and h.checkpoint == "10"


def test_resharding_and_the_forgotten_shard_end_checkpoint() -> None:
    h = ShardHarness(Summing())
    h.initialize()
    h.deliver([b"1"])
    children = h.end_shard(["shard-2", "shard-3"])
    assert h.checkpoint == "SHARD_END" and [c.shard_id for c in children] == ["shard-2", "shard-3"]
    bad = ShardHarness(Forgetful())
    bad.initialize()
    with pytest.raises(ShardEndNotCheckpointedError, match="shard shard-1"):
        bad.end_shard(["shard-2"])


def test_the_example_metrics_processor() -> None:
    p = MetricsProcessor()
    p.CHECKPOINT_EVERY = 0
    h = ShardHarness(p)
    h.initialize()
    h.deliver([b'{"host": "a", "metric": "cpu", "value": 2}', b'{"host": "b", "metric": "cpu", "value": 4}',
               b"not json"])
    assert p.count["cpu"] == 2 and p.total["cpu"] == 6.0 and h.checkpoint == "3"


def test_a_processor_logs_through_a_logger_bound_to_its_shard() -> None:
    from structlog.testing import capture_logs

    p = MetricsProcessor()
    p.CHECKPOINT_EVERY = 0
    h = ShardHarness(p, shard_id="shardId-000000000007")
    with capture_logs() as logs:
        h.initialize()
        h.deliver([b'{"host": "a", "metric": "cpu", "value": 2}', b"not json"])
    malformed = [e for e in logs if e["event"] == "skipping a malformed metric"]
    assert len(malformed) == 1 and malformed[0]["shard_id"] == "shardId-000000000007", logs
    assert any(e["event"] == "metric averages" and e["shard_id"] == "shardId-000000000007" for e in logs)


class AsyncSumming(RecordProcessor):
    async def initialize(self, i: Any) -> None:
        self.total = 0

    async def process_records(self, p: Any) -> None:
        self.total += sum(int(r.data) for r in p.records)
        await p.checkpointer.checkpoint_async()


def test_an_async_processor_runs_as_under_a_worker() -> None:
    p = AsyncSumming()
    h = ShardHarness(p)
    h.initialize()
    h.deliver([b"4", b"5"])
    assert p.total == 9 and h.checkpoint == "2"  # was: a RuntimeWarning, and TRIM_HORIZON kept


class Flaky(Summing):
    def __init__(self, failures: Any) -> None:
        self.failures = failures

    def process_records(self, p: Any) -> None:
        if self.failures:
            self.failures -= 1
            raise ValueError("downstream unavailable")
        super().process_records(p)


def test_a_failing_batch_is_retried_then_the_shard_halts_with_its_checkpoint_kept() -> None:
    ok = ShardHarness(Flaky(failures=2), processor_retries=3)
    ok.initialize()
    ok.deliver([b"1", b"2"])
    assert ok.checkpoint == "2" and ok.calls.count("process_records") == 3  # two failures, then success
    bad = ShardHarness(Flaky(failures=100), processor_retries=2)
    bad.initialize()
    with pytest.raises(ValueError, match="downstream unavailable"):
        bad.deliver([b"1"])
    assert bad.state == "HALTED" and "process_records failed 3 times" in (bad.halt_reason or "")
    assert bad.checkpoint == "TRIM_HORIZON" and bad.calls.count("process_records") == 3
    with pytest.raises(RuntimeError, match="halted"):
        bad.deliver([b"2"])  # no further records, as under a Worker


def test_a_lost_lease_ends_the_shard_with_lease_lost() -> None:
    h = ShardHarness(Summing())
    h.initialize()
    h.lose_lease()
    h.deliver([b"1"])
    assert h.calls[-1] == "lease_lost" and h.state == "DONE" and h.end_reason == "lease lost"
    with pytest.raises(RuntimeError, match="has ended"):
        h.deliver([b"2"])
