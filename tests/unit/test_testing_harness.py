import pytest

from streamworker import LeaseLostError, RecordProcessor, ShardEndNotCheckpointedError
from streamworker.loader import load_processor
from streamworker.testing import ShardHarness

MetricsProcessor = load_processor("examples/metrics_processor.py:MetricsProcessor")


class Summing(RecordProcessor):
    def initialize(self, i):
        self.total, self.refused = 0, 0

    def process_records(self, p):
        self.total += sum(int(r.data) for r in p.records)
        try:
            p.checkpointer.checkpoint()
        except LeaseLostError:
            self.refused += 1


class Forgetful(Summing):
    def shard_ended(self, i):
        pass  # forgets the SHARD_END checkpoint


def test_records_in_checkpoints_and_lifecycle_out():
    p = Summing()
    h = ShardHarness(p)
    h.initialize()
    h.deliver([b"1", b"2"])
    h.deliver([b"3"])
    assert p.total == 6 and h.checkpoint == "3" and h.checkpoints == ["2", "3"]
    h.request_shutdown()
    assert h.calls == ["initialize", "process_records", "process_records", "shutdown_requested"]


def test_lease_loss_refuses_checkpoints():
    p = Summing()
    h = ShardHarness(p)
    h.initialize(checkpoint="10")
    h.lose_lease()
    h.deliver([b"5"])
    assert p.refused == 1 and h.checkpoint == "10"


def test_resharding_and_the_forgotten_shard_end_checkpoint():
    h = ShardHarness(Summing())
    h.initialize()
    h.deliver([b"1"])
    children = h.end_shard(["shard-2", "shard-3"])
    assert h.checkpoint == "SHARD_END" and [c.shard_id for c in children] == ["shard-2", "shard-3"]
    bad = ShardHarness(Forgetful())
    bad.initialize()
    with pytest.raises(ShardEndNotCheckpointedError, match="shard shard-1"):
        bad.end_shard(["shard-2"])


def test_the_example_metrics_processor():
    p = MetricsProcessor()
    p.CHECKPOINT_EVERY = 0
    h = ShardHarness(p)
    h.initialize()
    h.deliver([b'{"host": "a", "metric": "cpu", "value": 2}', b'{"host": "b", "metric": "cpu", "value": 4}',
               b"not json"])
    assert p.count["cpu"] == 2 and p.total["cpu"] == 6.0 and h.checkpoint == "3"
