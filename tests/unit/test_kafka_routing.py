"""The poll loop's routing: consume()'s messages into partition buffers, in order, errors apart."""

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import KafkaError, Message  # noqa: E402

from streamworker.kafka.client import KafkaClient  # noqa: E402


class Batches:
    """A consumer whose consume() hands out prepared lists of messages."""

    def __init__(self, conf):
        self.batches = []
        self.paused = []

    def consume(self, n, timeout):
        return self.batches.pop(0) if self.batches else []

    def pause(self, tps):
        self.paused.extend((tp.topic, tp.partition) for tp in tps)

    def get_watermark_offsets(self, tp, timeout=None, cached=False):
        return (0, 0)


def msg(topic, partition, offset, value=b"v"):
    return Message(topic=topic, partition=partition, offset=offset, value=value)


def offsets(buf):
    return [m.offset() for m in buf.messages]


def make(*partitions, capacity=1 << 20):
    client = KafkaClient({"group.id": "g"}, consumer_factory=Batches, buffer_bytes=capacity)
    bufs = {tp: client.open_buffer(*tp) for tp in partitions}
    return client, client.consumer, bufs


def test_interleaved_runs_of_partitions_land_in_their_buffers_in_order():
    client, consumer, bufs = make(("t", 0), ("t", 1))
    consumer.batches.append([msg("t", 0, 0), msg("t", 0, 1), msg("t", 1, 0), msg("t", 0, 2), msg("t", 1, 1)])
    client._poll_once()
    assert offsets(bufs["t", 0]) == [0, 1, 2]
    assert offsets(bufs["t", 1]) == [0, 1]
    assert bufs["t", 0].next_offset == 3 and bufs["t", 1].next_offset == 2


def test_same_partition_number_of_two_topics_is_kept_apart():
    client, consumer, bufs = make(("a", 0), ("b", 0))
    consumer.batches.append([msg("a", 0, 5), msg("b", 0, 9), msg("a", 0, 6)])
    client._poll_once()
    assert offsets(bufs["a", 0]) == [5, 6]
    assert offsets(bufs["b", 0]) == [9]


def test_one_run_of_one_partition_is_routed_whole():
    client, consumer, bufs = make(("t", 3))
    batch = [msg("t", 3, i) for i in range(100)]
    consumer.batches.append(batch)
    client._poll_once()
    assert offsets(bufs["t", 3]) == list(range(100))


def test_messages_of_a_partition_not_ours_and_refetched_duplicates_are_dropped():
    client, consumer, bufs = make(("t", 0))
    bufs["t", 0].next_offset = 2  # 0 and 1 were buffered before a pause
    consumer.batches.append([msg("t", 0, 1), msg("t", 0, 2), msg("t", 7, 0)])
    client._poll_once()
    assert offsets(bufs["t", 0]) == [2]


def test_error_events_are_counted_and_not_delivered():
    client, consumer, bufs = make(("t", 0))
    err = Message(topic="t", partition=0, offset=0, error=KafkaError(KafkaError._TRANSPORT))
    eof = Message(topic="t", partition=0, offset=1, error=KafkaError(KafkaError._PARTITION_EOF))
    consumer.batches.append([msg("t", 0, 0), err, eof, msg("t", 0, 1)])
    client._poll_once()
    assert offsets(bufs["t", 0]) == [0, 1]
    assert client.errors == 1  # the end-of-partition event is not an error


def test_a_full_buffer_pauses_its_partition():
    client, consumer, bufs = make(("t", 0), ("t", 1), capacity=1024)
    consumer.batches.append([msg("t", 0, i, b"x" * 100) for i in range(10)] + [msg("t", 1, 0)])
    client._poll_once()
    assert bufs["t", 0].paused and consumer.paused == [("t", 0)]
    assert not bufs["t", 1].paused
