"""Per-key parallelism: the dispatcher's ordering, concurrency, watermark and backpressure with
real lanes, and the lifecycle's per-record mode through ShardHarness (inline lanes)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any

import pytest

from streamworker import PerRecordProcessor, RecordProcessor
from streamworker.consumer.lanes import KeyedDispatcher
from streamworker.records import Record
from streamworker.testing import ShardHarness


def rec(n: int, key: str) -> Record:
    return Record(data=str(n).encode(), partition_key=key, sequence_number=str(n))


def drain(d: KeyedDispatcher, into: list[Any], n: int) -> bool:
    """Collect what joins the watermark into ``into``; True once it holds ``n``."""
    into.extend(d.completed())
    return len(into) >= n


def wait_until(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Gate:
    """Holds chosen records until released, and notes the order calls start and end per key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.started: list[int] = []
        self.finished: dict[str, list[int]] = defaultdict(list)
        self.running: set[str] = set()
        self.overlap = False  # two records of one key at once
        self.max_running = 0
        self.hold: dict[int, threading.Event] = {}
        self.together: set[int] = set()  # these records must all be running at once (a barrier)
        self.barrier: threading.Barrier | None = None

    def __call__(self, r: Record) -> None:
        n = int(r.data)
        with self.lock:
            if r.partition_key in self.running:
                self.overlap = True
            self.running.add(r.partition_key)
            self.started.append(n)
            self.max_running = max(self.max_running, len(self.running))
        if n in self.together and self.barrier is not None:
            self.barrier.wait(10)  # raises BrokenBarrierError unless all of them run at once
        if n in self.hold:
            assert self.hold[n].wait(10)
        with self.lock:
            self.running.discard(r.partition_key)
            self.finished[r.partition_key].append(n)


def test_one_key_in_order_different_keys_at_once_and_the_watermark_waits_for_the_slowest() -> None:
    gate = Gate()
    gate.together, gate.barrier = {0, 1, 2, 3}, threading.Barrier(4)  # each key's first record, at once
    gate.hold[4] = threading.Event()  # the second record of key a hangs
    d = KeyedDispatcher(gate, parallelism=4)
    records = [rec(n, "abcd"[n % 4]) for n in range(40)]
    d.submit(records)
    wait_until(lambda: sum(len(v) for v in gate.finished.values()) == 31)  # a's first, and b, c, d: all done
    assert not gate.overlap and gate.max_running == 4
    assert [e.record.sequence_number for e in d.completed()] == ["0", "1", "2", "3"]
    assert d.completed() == []  # record 4 unfinished: nothing after it is checkpointable
    gate.hold[4].set()
    done: list[Any] = []
    wait_until(lambda: drain(d, done, 36))
    assert [int(e.record.data) for e in done] == list(range(4, 40))  # in sequence order
    for key, seen in gate.finished.items():
        assert seen == sorted(seen), key  # each key strictly in order
    d.close()


def test_a_failing_record_is_retried_then_blocks_its_key_only_and_stops_the_watermark() -> None:
    calls: dict[int, int] = defaultdict(int)

    def call(r: Record) -> None:
        calls[int(r.data)] += 1
        if int(r.data) == 2:
            raise ValueError("poison")

    d = KeyedDispatcher(call, parallelism=2, retries=2, backoff_base=0.001)
    d.submit([rec(n, "ab"[n % 2]) for n in range(8)])  # a: 0 2 4 6, b: 1 3 5 7
    wait_until(lambda: d.failure() is not None and calls[7] == 1)
    failed = d.failure()
    assert failed is not None and failed.record.sequence_number == "2" and failed.attempts == 3
    assert calls[2] == 3 and calls[4] == 0 and calls[6] == 0  # its key waits behind it
    assert [e.record.sequence_number for e in d.completed()] == ["0", "1"]
    d.resolve(failed)  # dead-lettered: its key goes on
    wait_until(lambda: calls[6] == 1)
    rest: list[Any] = []
    wait_until(lambda: drain(d, rest, 6))
    assert [e.record.sequence_number for e in rest] == ["2", "3", "4", "5", "6", "7"] and d.outstanding == 0
    d.close()


def test_stop_lets_running_records_finish_and_starts_no_more() -> None:
    gate = Gate()
    gate.hold[0] = threading.Event()
    d = KeyedDispatcher(gate, parallelism=2)
    d.submit([rec(0, "a"), rec(1, "a"), rec(2, "b")])
    wait_until(lambda: 0 in gate.started and 2 in gate.started)
    d.stop()
    assert not d.wait_idle(0.05)  # record 0 still runs
    gate.hold[0].set()
    assert d.wait_idle(5)
    assert 1 not in gate.started  # nothing started after the stop
    assert [e.record.sequence_number for e in d.completed()] == ["0"]  # 1 never ran: 2 is not below the watermark
    d.close()


def test_records_of_other_keys_queued_behind_busy_lanes_do_not_start_after_stop() -> None:
    """More idle keys than lanes: their first records wait in the executor's queue. A stop (the
    shard is ending, the lease is gone) must keep them from running, not only later records of a
    key (the chaos run caught a worker processing a shard after its next owner had started)."""
    gate = Gate()
    gate.hold[0] = threading.Event()
    d = KeyedDispatcher(gate, parallelism=1)
    d.submit([rec(n, f"k{n}") for n in range(6)])  # six keys, one lane: 1..5 queue behind 0
    wait_until(lambda: gate.started == [0])
    d.stop()
    gate.hold[0].set()
    assert d.wait_idle(5)
    assert gate.started == [0]
    assert [e.record.sequence_number for e in d.completed()] == ["0"]
    assert d.failure() is None  # records that never started are not failures
    d.close()


def lapsing_lease(keys: int) -> tuple[Gate, KeyedDispatcher]:
    """One lane; ``keys`` records of different keys, the first running, the rest queued behind
    it, when the lease lapses (not renewed within 80 % of the failover time; nobody called stop
    yet); then the first record completes."""
    gate = Gate()
    gate.hold[0] = threading.Event()
    lease_valid = threading.Event()
    lease_valid.set()
    d = KeyedDispatcher(gate, parallelism=1, may_start=lease_valid.is_set)
    d.submit([rec(n, f"k{n}") for n in range(keys)])
    wait_until(lambda: gate.started == [0])
    lease_valid.clear()
    gate.hold[0].set()
    return gate, d


def test_a_queued_record_does_not_start_once_the_lease_may_be_gone() -> None:
    gate, d = lapsing_lease(4)
    wait_until(lambda: d.running == 0)
    assert gate.started == [0]
    assert d.failure() is None
    d.close()


# -- the lifecycle, through the harness ---------------------------------------------------------

class PerRecord(PerRecordProcessor):
    def __init__(self, fail: set[int] | None = None) -> None:
        self.seen: list[int] = []
        self.fail = fail or set()

    def process_record(self, record: Record) -> None:
        if int(record.data) in self.fail:
            raise RuntimeError(f"bad record {record.data!r}")
        self.seen.append(int(record.data))


def test_the_harness_runs_a_per_record_processor_and_checkpoints_the_watermark_itself() -> None:
    p = PerRecord()
    h = ShardHarness(p)
    h.initialize()
    h.deliver([str(n) for n in range(1, 6)])
    assert p.seen == [1, 2, 3, 4, 5] and "process_records" not in h.calls
    h.clock.advance(1.0)
    h.idle()  # the default interval (1 s) passed: the watermark is checkpointed
    assert h.checkpoint == "5"
    h.end_shard()
    assert h.checkpoint == "SHARD_END"


def test_a_record_that_keeps_failing_halts_with_the_records_before_it_checkpointed() -> None:
    h = ShardHarness(PerRecord(fail={3}), processor_retries=1)
    h.initialize()
    with pytest.raises(RuntimeError, match="bad record"):
        h.deliver([str(n) for n in range(1, 6)], partition_key="k")  # one key: 4 and 5 wait behind 3
    assert h.state == "HALTED" and h.checkpoint == "2"
    assert h.halt_reason is not None and "process_record failed 2 times on 3" in h.halt_reason
    assert h._life is not None and h._life.progress.failures == 2  # each failed attempt counted


def test_async_process_record_is_awaited() -> None:
    class Async(PerRecordProcessor):
        def __init__(self) -> None:
            self.seen: list[int] = []

        async def process_record(self, record: Record) -> None:
            self.seen.append(int(record.data))

    p = Async()
    h = ShardHarness(p)
    h.initialize()
    h.deliver(["1", "2"])
    assert p.seen == [1, 2]
    h.request_shutdown()
    assert h.checkpoint == "2"  # a graceful stop checkpoints what completed


def test_parallelism_needs_process_record() -> None:
    from streamworker import Worker, WorkerConfig
    from streamworker.errors import ConfigError

    class Batchy(RecordProcessor):
        def process_records(self, p: Any) -> None:
            pass

    cfg = WorkerConfig.load({"stream": "s", "application_name": "abc", "parallelism": 4})
    with pytest.raises(ConfigError, match="parallelism 4 needs a PerRecordProcessor"):
        Worker(cfg, Batchy, kinesis_client=object(), dynamodb_client=object())  # type: ignore[arg-type]


def test_a_record_processor_with_process_record_still_runs_per_record_with_a_future_warning() -> None:
    """How the mode was chosen before ``PerRecordProcessor``: kept running, and told once."""

    class Legacy(RecordProcessor):
        def __init__(self) -> None:
            self.seen: list[int] = []

        def process_record(self, record: Record) -> None:
            self.seen.append(int(record.data))

    p = Legacy()
    with pytest.warns(FutureWarning, match="Legacy is a RecordProcessor with process_record: it runs per record; "
                                           "subclass PerRecordProcessor instead"):
        h = ShardHarness(p)
        h.initialize()
    h.deliver(["1", "2", "3"])
    assert p.seen == [1, 2, 3] and "process_records" not in h.calls


def test_a_graceful_drain_ends_when_the_lanes_stop_themselves_for_a_lapsed_lease() -> None:
    gate, d = lapsing_lease(3)
    assert d.wait_drained(5)  # not shutdown_timeout spent waiting for records that will never start
    assert gate.started == [0]
    d.close()
