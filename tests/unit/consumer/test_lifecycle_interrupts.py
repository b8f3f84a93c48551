"""A shutdown that arrives while a failed batch waits for its retry: the batch is neither
dead-lettered nor reported as failed for good; the processor gets shutdown_requested and the
checkpoint stays before the batch (the next owner gets it again) — unless the batch failed only
because its own checkpoint was refused for a moment: then shutdown_requested's covers it."""

from __future__ import annotations

from collections.abc import Sequence

from streamworker import ProcessRecordsInput, RecordProcessor
from streamworker.clock import FakeClock
from streamworker.consumer.lifecycle import ShardLifecycle
from streamworker.consumer.progress import ConsumerSettings, ConsumerState
from streamworker.errors import CheckpointThrottledError
from streamworker.leases.memory import MemoryLeases
from streamworker.processor import InitializationInput, ShutdownRequestedInput
from streamworker.records import ExtendedSequenceNumber as ESN
from streamworker.records import Record
from streamworker.sources.base import Batch
from streamworker.testing import _Feed, _NoSource, make_records


class FailsOnce(RecordProcessor):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def process_records(self, process_records_input: ProcessRecordsInput) -> None:
        self.calls.append("process_records")
        raise RuntimeError("a transient failure")

    def shutdown_requested(self, shutdown_requested_input: ShutdownRequestedInput) -> None:
        self.calls.append("shutdown_requested")
        shutdown_requested_input.checkpointer.checkpoint()


class Sink:
    def __init__(self) -> None:
        self.written: list[Sequence[Record]] = []

    def write(self, records: Sequence[Record], shard_id: str, error: BaseException) -> None:
        self.written.append(records)

    def describe(self) -> str:
        return "memory"


def test_shutdown_between_retries_ends_gracefully_without_dead_lettering() -> None:
    processor, sink, leases, feed, clock = FailsOnce(), Sink(), MemoryLeases("w"), _Feed(), FakeClock()
    life = ShardLifecycle(leases.acquire("shard-1"), processor, _NoSource(),
                          leases, ConsumerSettings(processor_retries=3, dead_letter=sink, worker_id="w"), feed, clock,
                          label="shard-1", stream="s")
    while life.state != ConsumerState.PROCESSING:
        life.step()
    feed.batches.append(Batch(make_records([b"a", b"b"])))
    wait = life.step()  # the first attempt fails: a retry is scheduled
    assert life.busy and wait is not None and wait > 0
    life.request_shutdown()
    assert life.step() is None  # interrupted before the retry: the shard ends
    assert life.end_reason == "shutdown requested" and life.halt_reason is None
    assert processor.calls == ["process_records", "shutdown_requested"]
    assert sink.written == []  # not dead-lettered: it never used up its retries
    assert leases.checkpoint_of("shard-1") == ESN("TRIM_HORIZON")  # the shutdown checkpoint stops before the batch


class CheckpointsEveryBatch(RecordProcessor):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def process_records(self, process_records_input: ProcessRecordsInput) -> None:
        self.calls.append("process_records")
        process_records_input.checkpointer.checkpoint()

    def shutdown_requested(self, shutdown_requested_input: ShutdownRequestedInput) -> None:
        self.calls.append("shutdown_requested")
        shutdown_requested_input.checkpointer.checkpoint()


def test_a_batch_whose_checkpoint_a_rebalance_refused_is_covered_by_the_shutdown_checkpoint() -> None:
    """A Kafka group refuses commits while it rebalances (REBALANCE_IN_PROGRESS) and the partition
    is revoked before the batch's retry: the records the processor checkpointed are not given to
    the next owner again (the suite saw 50 and 100 twice under load before)."""
    processor, leases, feed, clock = CheckpointsEveryBatch(), MemoryLeases("w"), _Feed(), FakeClock()
    refused: list[str] = []

    def refuse_once(key: str) -> None:
        if not refused:
            refused.append(key)
            raise CheckpointThrottledError(f"shard {key}: checkpoint failed: REBALANCE_IN_PROGRESS")

    leases.before_write = refuse_once
    life = ShardLifecycle(leases.acquire("shard-1"), processor, _NoSource(),
                          leases, ConsumerSettings(processor_retries=3, worker_id="w"), feed, clock,
                          label="shard-1", stream="s")
    while life.state != ConsumerState.PROCESSING:
        life.step()
    records = make_records([b"a", b"b"])
    feed.batches.append(Batch(records))
    wait = life.step()  # the checkpoint inside process_records is refused: a retry is scheduled
    assert refused == ["shard-1"] and life.busy and wait is not None and wait > 0
    life.request_shutdown()  # the revoke, before the retry
    assert life.step() is None and life.end_reason == "shutdown requested"
    assert processor.calls == ["process_records", "shutdown_requested"]
    assert leases.checkpoint_of("shard-1") == records[-1].extended_sequence_number


class InitFailsOnce(RecordProcessor):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def initialize(self, initialization_input: InitializationInput) -> None:
        self.calls.append("initialize")
        raise RuntimeError("a transient failure")

    def process_records(self, process_records_input: ProcessRecordsInput) -> None:
        self.calls.append("process_records")


def test_shutdown_between_initialize_retries_ends_without_a_halt() -> None:
    processor, leases, feed, clock = InitFailsOnce(), MemoryLeases("w"), _Feed(), FakeClock()
    life = ShardLifecycle(leases.acquire("shard-1"), processor, _NoSource(),
                          leases, ConsumerSettings(processor_retries=3, worker_id="w"), feed, clock,
                          label="shard-1", stream="s")
    while not life.busy:  # parents checked, then the first initialize attempt fails
        life.step()
    life.request_shutdown()
    while life.step() is not None:
        pass
    assert life.end_reason == "shutdown requested" and life.halt_reason is None and leases.row("shard-1").halted is None
    assert processor.calls == ["initialize"]  # never retried after the stop, never given records
