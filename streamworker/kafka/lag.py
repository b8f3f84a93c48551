"""Consumer lag of a Kafka partition, from librdkafka's cached watermarks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamworker.kafka.keys import parse_kafka_key

if TYPE_CHECKING:
    from streamworker.consumer.shard_consumer import ShardConsumer
    from streamworker.kafka.client import KafkaClient


def kafka_lag(kafka: KafkaClient, consumer: ShardConsumer) -> int | None:
    """Offsets of the partition not yet processed, as ``kafka-consumer-groups`` counts them: its
    high watermark less the offset that would be committed now (after the last record
    processed, past any transaction marker that follows it; else where the shard started: its
    committed offset, the start of the partition for TRIM_HORIZON, its end for LATEST). None
    until librdkafka knows the watermark."""
    key = parse_kafka_key(consumer.shard_id)
    if key is None:
        return None
    high = kafka.high_watermarks.get(key)
    if high is None:
        return None
    last = consumer.progress.last_sequence
    start = consumer.lease.checkpoint.sequence_number
    if last is not None and last.isdigit():
        next_offset = kafka.next_offset(*key, int(last))
    elif start.isdigit():
        next_offset = kafka.next_offset(*key, int(start))  # a checkpoint at N is a commit of N + 1
    elif start == "LATEST":
        return 0
    else:
        at = kafka.start_offset(*key)
        next_offset = at if at is not None and at >= 0 else kafka.low_watermarks.get(key, 0)
    return max(0, int(high) - next_offset)
