"""The Kafka poll loop's routing (demultiplexing, error events), backpressure (pause) and
resume-at-the-right-offset."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("confluent_kafka")

from confluent_kafka import KafkaError, Message  # noqa: E402

from streamworker.kafka.buffers import KafkaPartitionReader  # noqa: E402
from streamworker.kafka.client import KafkaClient  # noqa: E402
from streamworker.kafka.records import to_record  # noqa: E402


def Msg(topic: str, partition: int, offset: int, key: bytes | None = b"k") -> Message[bytes, bytes]:  # noqa: N802 - reads as the class it stood in for
    """A message as consume() returns it (the constructor confluent-kafka offers for tests)."""
    return Message(topic=topic, partition=partition, offset=offset, key=key, value=str(offset).encode(),
                   headers=[("h", b"v")], timestamp=(1, 1_700_000_000_000))


class FakeConsumer:
    def __init__(self, conf: Any) -> None:
        self.script: list[Any] = []
        self.calls: list[Any] = []

    def consume(self, n: Any, timeout: Any) -> Any:
        return self.script.pop(0) if self.script else []

    def pause(self, tps: Any) -> None:
        self.calls.append(("pause", [(t.topic, t.partition) for t in tps]))

    def resume(self, tps: Any) -> None:
        self.calls.append(("resume", [(t.topic, t.partition) for t in tps]))

    def seek(self, tp: Any) -> None:
        self.calls.append(("seek", (tp.topic, tp.partition, tp.offset)))


def make(capacity: int = 4) -> tuple[KafkaClient, Any]:
    # each test message weighs len(value) + 64 bytes of accounted overhead: ~65-66 bytes
    client = KafkaClient({}, buffer_bytes=capacity * 66, consumer_factory=FakeConsumer)
    return client, client.consumer


def test_messages_are_routed_to_their_partition_and_never_dropped_when_full() -> None:
    client, consumer = make(capacity=4)
    b0 = client.open_buffer("t", 0, next_offset=0)
    b1 = client.open_buffer("t", 1, next_offset=0)
    consumer.script = [[Msg("t", 0, o) for o in range(6)] + [Msg("t", 1, 0), Msg("other", 0, 0)]]
    client._poll_once()
    assert [m.offset() for m in b0.messages] == [0, 1, 2, 3, 4, 5]
    assert [m.offset() for m in b1.messages] == [0]
    assert b0.paused and not b1.paused
    assert consumer.calls == [("pause", [("t", 0)])]


def test_a_drained_partition_resumes_exactly_after_its_last_buffered_offset() -> None:
    client, consumer = make(capacity=4)
    buf = client.open_buffer("t", 0, next_offset=10)
    consumer.script = [[Msg("t", 0, o) for o in range(10, 16)]]
    client._poll_once()
    reader = KafkaPartitionReader(client, buf, skip_through=None, max_records=3, wait=0.01)
    assert [r.offset for r in reader.read().records] == [10, 11, 12]
    client._poll_once()
    assert ("resume", [("t", 0)]) not in consumer.calls  # still above half the capacity
    assert [r.offset for r in reader.read().records] == [13, 14, 15]
    consumer.script = [[Msg("t", 0, 15), Msg("t", 0, 16), Msg("t", 0, 17)]]  # a re-fetch overlaps
    client._poll_once()
    assert consumer.calls[-2:] == [("resume", [("t", 0)]), ("seek", ("t", 0, 16))]
    assert [r.offset for r in reader.read().records] == [16, 17]  # offset 15 not delivered twice


def test_reader_skips_through_the_checkpoint_and_maps_kafka_fields() -> None:
    client, consumer = make()
    buf = client.open_buffer("orders", 3)
    consumer.script = [[Msg("orders", 3, o, key=b"user-1") for o in (7, 8, 9)]]
    client._poll_once()
    reader = KafkaPartitionReader(client, buf, skip_through=8, max_records=100, wait=0.01)
    (rec,) = reader.read().records
    assert (rec.shard_id, rec.topic, rec.partition, rec.offset, rec.sequence_number) == ("orders:3", "orders", 3, 9,
                                                                                         "9")
    assert rec.key == b"user-1" and rec.partition_key == "user-1" and rec.data == b"9"
    ts = rec.approximate_arrival_timestamp
    assert rec.headers == (("h", b"v"),) and ts is not None and ts.year == 2023
    assert to_record(Msg("t", 0, 1, key=None)).partition_key == ""


# -- routing of consume() batches, on messages as confluent-kafka builds them ---------------------


def offsets(buf: Any) -> list[Any]:
    return [m.offset() for m in buf.messages]


def make_buffers(*partitions: Any, capacity: Any=1 << 20) -> Any:
    client = KafkaClient({}, consumer_factory=FakeConsumer, buffer_bytes=capacity)
    return client, client.consumer, {tp: client.open_buffer(*tp) for tp in partitions}


def test_interleaved_runs_of_partitions_land_in_their_buffers_in_order() -> None:
    client, consumer, bufs = make_buffers(("t", 0), ("t", 1))
    consumer.script.append([Msg("t", 0, 0), Msg("t", 0, 1), Msg("t", 1, 0), Msg("t", 0, 2), Msg("t", 1, 1)])
    client._poll_once()
    assert offsets(bufs["t", 0]) == [0, 1, 2]
    assert offsets(bufs["t", 1]) == [0, 1]
    assert bufs["t", 0].next_offset == 3 and bufs["t", 1].next_offset == 2


def test_same_partition_number_of_two_topics_is_kept_apart() -> None:
    client, consumer, bufs = make_buffers(("a", 0), ("b", 0))
    consumer.script.append([Msg("a", 0, 5), Msg("b", 0, 9), Msg("a", 0, 6)])
    client._poll_once()
    assert offsets(bufs["a", 0]) == [5, 6]
    assert offsets(bufs["b", 0]) == [9]


def test_one_run_of_one_partition_is_routed_whole() -> None:
    client, consumer, bufs = make_buffers(("t", 3))
    batch = [Msg("t", 3, i) for i in range(100)]
    consumer.script.append(batch)
    client._poll_once()
    assert offsets(bufs["t", 3]) == list(range(100))


def test_messages_of_a_partition_not_ours_and_refetched_duplicates_are_dropped() -> None:
    client, consumer, bufs = make_buffers(("t", 0))
    bufs["t", 0].next_offset = 2  # 0 and 1 were buffered before a pause
    consumer.script.append([Msg("t", 0, 1), Msg("t", 0, 2), Msg("t", 7, 0)])
    client._poll_once()
    assert offsets(bufs["t", 0]) == [2]


def test_error_events_are_counted_and_not_delivered() -> None:
    client, consumer, bufs = make_buffers(("t", 0))
    err = Message(topic="t", partition=0, offset=0, error=KafkaError(KafkaError._TRANSPORT))
    eof = Message(topic="t", partition=0, offset=1, error=KafkaError(KafkaError._PARTITION_EOF))
    consumer.script.append([Msg("t", 0, 0), err, eof, Msg("t", 0, 1)])
    client._poll_once()
    assert offsets(bufs["t", 0]) == [0, 1]
    assert client.errors == 1  # the end-of-partition event is not an error


def test_a_full_buffer_pauses_its_partition() -> None:
    client, consumer, bufs = make_buffers(("t", 0), ("t", 1), capacity=1024)
    consumer.script.append([Message(topic="t", partition=0, offset=i, value=b"x" * 100) for i in range(10)] + [Msg("t", 1, 0)])
    client._poll_once()
    assert bufs["t", 0].paused and consumer.calls == [("pause", [("t", 0)])]
    assert not bufs["t", 1].paused
