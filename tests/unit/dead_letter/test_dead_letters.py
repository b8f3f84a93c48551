"""Records past max_record_age go to the dead-letter sink unprocessed; the dead-letter guard halts
a shard instead of letting a bad deploy empty a stream into the sink."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

import pytest

from streamworker import ProcessRecordsInput, Record, RecordProcessor
from streamworker.clock import FakeClock
from streamworker.config import WorkerConfig
from streamworker.consumer.lifecycle import ShardLifecycle
from streamworker.consumer.progress import ConsumerSettings, ConsumerState
from streamworker.dead_letter.shard import DeadLetterGuard, GuardLimits, GuardTripped
from streamworker.errors import ConfigError
from streamworker.leases.memory import MemoryLeases
from streamworker.records import ExtendedSequenceNumber as ESN
from streamworker.sources.base import Batch
from streamworker.testing import _Feed, _NoSource


class Sink:
    def __init__(self) -> None:
        self.written: list[tuple[list[str], str]] = []

    def write(self, records: Sequence[Record], shard_id: str, error: BaseException) -> None:
        self.written.append(([r.sequence_number for r in records], repr(error)))

    def describe(self) -> str:
        return "memory"


class Processor(RecordProcessor):
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.seen: list[str] = []

    def process_records(self, process_records_input: ProcessRecordsInput) -> None:
        if self.fail:
            raise RuntimeError("bad deploy")
        self.seen.extend(r.sequence_number for r in process_records_input.records)
        process_records_input.checkpointer.checkpoint()


def rec(seq: int, wall: float) -> Record:
    return Record(data=b"x", partition_key="k", sequence_number=str(seq),
                  approximate_arrival_timestamp=datetime.fromtimestamp(wall, timezone.utc))


def shard(processor: RecordProcessor, **settings: object) -> tuple[ShardLifecycle, _Feed, MemoryLeases, Sink, FakeClock]:
    sink, leases, feed, clock = Sink(), MemoryLeases("w"), _Feed(), FakeClock()
    life = ShardLifecycle(leases.acquire("shard-1"), processor, _NoSource(),
                          leases, ConsumerSettings(**{"worker_id": "w", "processor_retries": 0, "dead_letter": sink,
                                                      **settings}),  # type: ignore[arg-type]
                          feed, clock, label="shard-1", stream="s")
    while life.state != ConsumerState.PROCESSING:
        life.step()
    return life, feed, leases, sink, clock


def run(life: ShardLifecycle, feed: _Feed) -> None:
    for _ in range(100):
        if not feed.batches and not life.busy or life.state == ConsumerState.HALTED:
            return
        life.step()


def test_records_past_max_record_age_are_dead_lettered_and_the_rest_processed() -> None:
    p = Processor()
    life, feed, leases, sink, clock = shard(p, max_record_age=60.0, dead_letter_failures=False)
    now = clock.time()
    feed.batches.append(Batch([rec(1, now - 300), rec(2, now - 61), rec(3, now - 10), rec(4, now)]))
    run(life, feed)
    assert [w[0] for w in sink.written] == [["1", "2"]] and "older than 60.0 s" in sink.written[0][1]
    assert p.seen == ["3", "4"]
    assert leases.history("shard-1") == [ESN("2"), ESN("4")]  # past the dead-lettered records, then the processor's
    feed.batches.append(Batch([rec(5, now - 3600)]))  # a whole batch too old: the processor is not called
    run(life, feed)
    assert p.seen == ["3", "4"] and sink.written[-1][0] == ["5"] and leases.checkpoint_of("shard-1") == ESN("5")


def test_the_guard_halts_before_too_many_records_in_a_row_go_to_the_sink() -> None:
    p = Processor(fail=True)
    life, feed, leases, sink, clock = shard(p, dead_letter_guard=GuardLimits(max_consecutive=3))
    now = clock.time()
    feed.batches.append(Batch([rec(1, now), rec(2, now)]))
    run(life, feed)
    assert [w[0] for w in sink.written] == [["1", "2"]]  # 2 <= 3: dead-lettered
    feed.batches.append(Batch([rec(3, now), rec(4, now)]))
    run(life, feed)
    assert life.state == ConsumerState.HALTED
    assert life.halt_reason is not None and "dead-letter guard: 4 records in a row" in life.halt_reason
    assert [w[0] for w in sink.written] == [["1", "2"]] and leases.checkpoint_of("shard-1") == ESN("2")  # 3 and 4 kept
    assert leases.row("shard-1").halted == life.halt_reason


def test_a_processed_batch_resets_the_run_and_the_ratio_counts_a_window() -> None:
    g = DeadLetterGuard(GuardLimits(max_consecutive=3))
    g.dead_lettered(3)
    g.processed(1)
    g.check(3)  # the run was broken by a processed record
    r = DeadLetterGuard(GuardLimits(max_ratio=0.1, window=1000))
    r.processed(950)
    r.dead_lettered(50)
    with pytest.raises(GuardTripped, match="more than dead_letter_max_ratio = 0.1"):
        r.check(100)  # 150 of 1100
    r.processed(5000)  # the window moves on: the old dead letters drop out
    r.check(100)


def test_max_record_age_needs_a_dead_letter_target() -> None:
    with pytest.raises(ConfigError, match="max_record_age needs dead_letter"):
        WorkerConfig.load({"application_name": "app", "stream": "s", "max_record_age": 60})
    cfg = WorkerConfig.load({"application_name": "app", "stream": "s", "max_record_age": 60,
                             "dead_letter": "file:/tmp/dlq.jsonl", "dead_letter_max_consecutive": 100})
    assert cfg.on_error == "halt" and cfg.max_record_age == 60.0


class PoisonedBy(RecordProcessor):
    """Fails any batch holding a poison record; checkpoints what it processed."""

    def __init__(self, poison: set[str]) -> None:
        self.poison = poison
        self.deliveries: list[list[str]] = []
        self.processed: list[str] = []

    def process_records(self, process_records_input: ProcessRecordsInput) -> None:
        seqs = [r.sequence_number for r in process_records_input.records]
        self.deliveries.append(seqs)
        if self.poison & set(seqs):
            raise RuntimeError("poison")
        self.processed.extend(seqs)
        process_records_input.checkpointer.checkpoint()


def test_bisect_dead_letters_only_the_records_that_fail_alone() -> None:
    p = PoisonedBy({"3", "6"})
    life, feed, leases, sink, clock = shard(p, bisect=True, processor_retries=1)
    feed.batches.append(Batch([rec(i, clock.time()) for i in range(1, 9)]))
    run(life, feed)
    assert [w[0] for w in sink.written] == [["3"], ["6"]]  # each poison record alone, after its retry
    assert sorted(p.processed, key=int) == ["1", "2", "4", "5", "7", "8"]  # the rest once each, in order
    assert p.processed == sorted(p.processed, key=int)
    assert p.deliveries[:3] == [[str(i) for i in range(1, 9)], ["1", "2", "3", "4"], ["1", "2"]]
    assert leases.checkpoint_of("shard-1") == ESN("8") and leases.history("shard-1") == sorted(leases.history("shard-1"))
    assert life.state == ConsumerState.PROCESSING and life.progress.failures >= 4


def test_a_checkpoint_inside_a_half_covers_only_that_half() -> None:
    p = PoisonedBy({"4"})
    life, feed, leases, sink, clock = shard(p, bisect=True, processor_retries=0)
    feed.batches.append(Batch([rec(i, clock.time()) for i in range(1, 5)]))
    run(life, feed)
    assert ESN("2") in leases.history("shard-1") and ESN("4") not in leases.history("shard-1")[:1]  # [1, 2] alone first
    assert [w[0] for w in sink.written] == [["4"]] and leases.checkpoint_of("shard-1") == ESN("4")


def test_a_shutdown_between_parts_leaves_the_rest_for_the_next_owner() -> None:
    p = PoisonedBy({"4"})
    life, feed, leases, sink, clock = shard(p, bisect=True, processor_retries=0)
    feed.batches.append(Batch([rec(i, clock.time()) for i in range(1, 5)]))
    life.step()  # the whole batch fails: split
    life.step()  # [1, 2] succeeds; [3, 4] waits
    life.request_shutdown()
    while life.step() is not None:
        pass
    assert p.processed == ["1", "2"] and sink.written == []
    assert life.end_reason == "shutdown requested" and leases.checkpoint_of("shard-1") == ESN("2")
