from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from streamworker.consumer.shard_consumer import ConsumerSettings, ConsumerState, ShardConsumer
from streamworker.leases.lease import Lease
from streamworker.leases.memory import MemoryLeases
from streamworker.processor import ChildShard, RecordProcessor
from streamworker.records import ExtendedSequenceNumber as ESN
from streamworker.records import Record, StartPosition
from streamworker.sources.base import Batch, ShardInfo, StopReading


def wait_for(cond: (Callable[[], bool]) | (Callable[[], Any]), timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    raise AssertionError("condition not met before the deadline")


class FakeReader:
    def __init__(self, batches: Any) -> None:
        self.q: queue.Queue[Any] = queue.Queue()
        for b in batches:
            self.q.put(b)
        self.closed = threading.Event()

    def read(self) -> Any:
        while not self.closed.is_set():
            try:
                return self.q.get(timeout=0.02)
            except queue.Empty:
                pass
        raise StopReading()

    def close(self) -> None:
        self.closed.set()


class FakeSource:
    stream = "s"

    def __init__(self, batches: Any) -> None:
        self.reader = FakeReader(batches)
        self.opened_at: StartPosition | None = None

    def describe(self) -> str:
        return "ACTIVE"

    def list_shards(self) -> list[ShardInfo]:
        return []

    def open_reader(self, shard_id: str, position: StartPosition) -> FakeReader:
        self.opened_at = position
        return self.reader


def recs(*seqs: Any) -> Any:
    return [Record(data=str(s).encode(), partition_key="k", sequence_number=str(s), shard_id="shard-1")
            for s in seqs]


class Recorder(RecordProcessor):
    def __init__(self, fail_times: Any=0, checkpoint_at_end: Any=True) -> None:
        self.calls: list[Any] = []
        self.delivered: list[Any] = []
        self.fail_times = fail_times
        self.checkpoint_at_end = checkpoint_at_end
        self.shard_ended_calls = 0

    def initialize(self, i: Any) -> None:
        self.calls.append(("initialize", str(i.extended_sequence_number)))

    def process_records(self, p: Any) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("boom")
        self.delivered.extend(r.sequence_number for r in p.records)
        p.checkpointer.checkpoint()

    def lease_lost(self, i: Any) -> None:
        self.calls.append(("lease_lost",))

    def shard_ended(self, i: Any) -> None:
        self.shard_ended_calls += 1
        self.calls.append(("shard_ended",))
        if self.checkpoint_at_end or self.shard_ended_calls > 1:
            i.checkpointer.checkpoint()

    def shutdown_requested(self, i: Any) -> None:
        self.calls.append(("shutdown_requested",))
        i.checkpointer.checkpoint()


SETTINGS = ConsumerSettings(retry_backoff=0.01, processor_retries=2, parent_poll_interval=0.02, worker_id="w")


def make(batches: list[Batch], processor: Recorder, leases: MemoryLeases | None = None,
         lease: Lease | None = None) -> tuple[ShardConsumer, MemoryLeases, FakeSource]:
    """A consumer of ``lease`` (default: shard-1 from TRIM_HORIZON), acquired in ``leases``."""
    leases = leases or MemoryLeases("w")
    source = FakeSource(batches)
    lease = lease or Lease("shard-1", checkpoint=ESN("TRIM_HORIZON"))
    held = leases.acquire(lease.lease_key, lease.checkpoint, parent_shard_ids=lease.parent_shard_ids)
    c = ShardConsumer(held, processor, source, leases, SETTINGS, lineage=leases)
    return c, leases, source


def test_records_are_delivered_in_order_and_shutdown_checkpoints_and_releases() -> None:
    p = Recorder()
    c, leases, _ = make([Batch(recs(1, 2)), Batch([]), Batch(recs(3))], p)
    c.start()
    wait_for(lambda: p.delivered == ["1", "2", "3"])
    c.request_shutdown()
    assert c.join(5)
    assert p.calls == [("initialize", "TRIM_HORIZON"), ("shutdown_requested",)]
    assert leases.history("shard-1") == [ESN("2"), ESN("3"), ESN("3")]
    assert leases.released == ["shard-1"] and leases.forgotten == []


def test_a_raising_processor_gets_the_same_records_again_never_skipped() -> None:
    p = Recorder(fail_times=2)
    c, leases, _ = make([Batch(recs(1, 2)), Batch(recs(3))], p)
    c.start()
    wait_for(lambda: p.delivered == ["1", "2", "3"])
    c.request_shutdown()
    assert c.join(5)
    assert c.progress.failures == 2


def test_a_processor_that_keeps_raising_halts_the_shard_with_its_checkpoint_kept() -> None:
    p = Recorder(fail_times=100)
    c, leases, _ = make([Batch(recs(1, 2)), Batch(recs(3))], p)
    c.start()
    wait_for(lambda: c.state == ConsumerState.HALTED)
    assert p.delivered == [] and leases.history(c.lease.lease_key) == []
    c.request_shutdown()
    assert c.join(5)
    # shutdown_requested is not called: its default checkpoint would skip the failed records
    assert ("shutdown_requested",) not in p.calls
    assert leases.history(c.lease.lease_key) == [] and leases.released == ["shard-1"]


def test_lease_loss_stops_delivery_and_calls_lease_lost() -> None:
    p = Recorder()
    leases = MemoryLeases("w")
    c, _, source = make([Batch(recs(1))], p, leases)
    c.start()
    wait_for(lambda: p.delivered == ["1"])
    leases.lose("shard-1")  # the renewal found it taken: the consumer stops before the next batch
    source.reader.q.put(Batch(recs(2)))
    assert c.join(5)
    assert p.delivered == ["1"] and p.calls[-1] == ("lease_lost",)
    assert leases.forgotten == ["shard-1"] and leases.released == []  # lost: forgotten, not released


def test_shard_end_without_checkpoint_is_reported_by_name_and_retried() -> None:
    p = Recorder(checkpoint_at_end=False)
    children = (ChildShard("shard-2", ("shard-1",)), ChildShard("shard-3", ("shard-1",)))
    c, leases, _ = make([Batch(recs(1), shard_end=True, child_shards=children)], p)
    with capture_logs() as logs:
        c.start()
        assert c.join(10)
    errors = [e["event"] for e in logs if e["log_level"] == "error"]
    assert any("shard shard-1: shard_ended returned without checkpointing SHARD_END" in e for e in errors)
    assert p.shard_ended_calls == 2
    assert leases.history("shard-1")[-1] == ESN("SHARD_END")
    assert leases.lineage == [("created", (("shard-2", ("shard-1",)), ("shard-3", ("shard-1",)))),
                              ("recorded", ("shard-2", "shard-3"))]
    assert leases.released == ["shard-1"]


def test_a_child_waits_for_its_parents_before_initialize() -> None:
    p = Recorder()
    leases = MemoryLeases("w")
    leases.parents_done = False
    lease = Lease("child", parent_shard_ids=frozenset({"parent"}))
    c, _, _ = make([Batch(recs(1))], p, leases, lease)
    c.start()
    wait_for(lambda: leases.parent_polls >= 3)
    assert c.state == ConsumerState.WAITING_ON_PARENTS and p.calls == []
    leases.parents_done = True
    wait_for(lambda: p.delivered == ["1"])
    c.request_shutdown()
    assert c.join(5)


def test_a_consumer_stopped_before_initialize_never_calls_the_processor() -> None:
    p = Recorder()
    leases = MemoryLeases("w")
    leases.parents_done = False
    c, _, _ = make([], p, leases, Lease("child", parent_shard_ids=frozenset({"parent"})))
    c.start()
    wait_for(lambda: leases.parent_polls >= 1)
    c.request_shutdown()
    assert c.join(5)
    assert p.calls == [] and leases.history(c.lease.lease_key) == [] and leases.released == ["child"]


def test_resume_position_comes_from_the_checkpoint() -> None:
    p = Recorder()
    c, _, source = make([], p, lease=Lease("shard-1", checkpoint=ESN("77", 2)))
    c.start()
    wait_for(lambda: source.opened_at is not None)
    assert source.opened_at is not None
    assert source.opened_at.kind == "AT_SEQUENCE_NUMBER" and source.opened_at.sequence == ESN("77", 2)
    c.request_shutdown()
    assert c.join(5)


@pytest.mark.parametrize("reason", ["lease_lost", "shard_ended", "shutdown_requested"])
def test_default_endings_route_to_shutdown(reason: Any) -> None:
    seen = []

    class Simple(RecordProcessor):
        def process_records(self, p: Any) -> None:
            pass

        def shutdown(self, r: Any, checkpointer: Any) -> None:
            seen.append((r.value, checkpointer is not None))

    from streamworker.processor import LeaseLostInput, ShardEndedInput, ShutdownRequestedInput
    fake: Any = object()  # a checkpointer the default endings pass on, never call
    inputs = {"lease_lost": LeaseLostInput("s"), "shard_ended": ShardEndedInput("s", fake),
              "shutdown_requested": ShutdownRequestedInput("s", fake)}
    getattr(Simple(), reason)(inputs[reason])
    expected = {"lease_lost": ("LEASE_LOST", False), "shard_ended": ("SHARD_END", True),
                "shutdown_requested": ("REQUESTED", True)}
    assert seen == [expected[reason]]


def test_a_consumer_told_its_lease_is_lost_neither_delivers_nor_checkpoints_though_the_key_is_held_again() -> None:
    """The Kafka group may assign a lost partition straight back to this worker: the key is held
    again, by a new consumer. The old one, told of the loss, delivers nothing more and a checkpoint
    it attempts (a processor still inside its batch) is refused instead of passing as the new
    consumer's."""
    entered, release = threading.Event(), threading.Event()
    refused: list[Exception] = []

    class Slow(Recorder):
        def process_records(self, p: Any) -> None:
            self.delivered.extend(r.sequence_number for r in p.records)
            entered.set()
            release.wait(5)
            try:
                p.checkpointer.checkpoint()
            except Exception as exc:  # noqa: BLE001 - what the processor would see
                refused.append(exc)

    p = Slow()
    leases = MemoryLeases("w")
    c, _, source = make([Batch(recs(1))], p, leases)
    c.start()
    assert entered.wait(5)
    leases.lose("shard-1")
    leases.acquire("shard-1")  # assigned here again: a new holding, held throughout what follows
    c.notify_lease_lost()
    source.reader.q.put(Batch(recs(2)))
    release.set()
    assert c.join(5)
    assert p.delivered == ["1"] and leases.history("shard-1") == []
    assert len(refused) == 1 and type(refused[0]).__name__ == "LeaseLostError"


def test_an_idle_prefetch_feeds_wait_is_ended_by_wake() -> None:
    """An idle shard's thread waits long for a batch (it waited 0.1 s: a thousand idle shards
    woke ten thousand times a second), so ``wake`` (a shutdown, a lost lease) must end the wait."""
    from streamworker.consumer.shard_consumer import PrefetchFeed

    class Silent:
        def __init__(self) -> None:
            self.closed = threading.Event()

        def read(self) -> Any:
            self.closed.wait()
            raise StopReading()

        def close(self) -> None:
            self.closed.set()

    assert PrefetchFeed.IDLE_WAIT >= 1.0
    feed = PrefetchFeed("s", depth=2)
    feed.IDLE_WAIT = 600.0  # only a wake can end this wait within the test
    feed.start(Silent())
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(feed.next()))
    waiter.start()
    feed.wake()
    waiter.join(60)
    assert not waiter.is_alive() and got == [None]
    feed.stop()


def test_a_prefetch_feed_runs_one_thread_and_its_stop_closes_the_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reader is closed by ``stop`` itself (there was a third thread per shard waiting to
    close it); a stop before the start closes the reader without reading."""
    from streamworker.consumer.shard_consumer import PrefetchFeed

    started: list[threading.Thread] = []

    class Counted(threading.Thread):
        def start(self) -> None:
            started.append(self)
            super().start()

    monkeypatch.setattr("streamworker.consumer.shard_consumer.threading.Thread", Counted)

    class Blocking:
        def __init__(self) -> None:
            self.closed = threading.Event()
            self.reading = threading.Event()

        def read(self) -> Any:
            self.reading.set()
            self.closed.wait()
            raise StopReading()

        def close(self) -> None:
            self.closed.set()

    feed = PrefetchFeed("s", depth=2)
    reader = Blocking()
    feed.start(reader)
    assert reader.reading.wait(30)
    assert [t.name for t in started] == ["read-s"]
    feed.stop()
    assert reader.closed.is_set()
    started[0].join(30)
    assert not started[0].is_alive()

    late, unread = PrefetchFeed("t", depth=2), Blocking()
    late.stop()
    late.start(unread)
    assert unread.closed.is_set() and not unread.reading.is_set()
    assert [t.name for t in started] == ["read-s"]
