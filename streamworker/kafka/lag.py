"""Consumer lag of a Kafka partition, from librdkafka's cached watermarks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..coordinators.keys import parse_kafka_key

if TYPE_CHECKING:
    from ..shard_consumer import ShardConsumer
    from .client import KafkaClient


def kafka_lag(kafka: KafkaClient, consumer: ShardConsumer) -> int | None:
    """Records of the partition not yet processed: its high watermark less the next offset to
    process: after the last record processed, else the committed offset the shard started from,
    else the start of the partition (TRIM_HORIZON) or its end (LATEST). None until librdkafka
    knows the watermark."""
    key = parse_kafka_key(consumer.shard_id)
    if key is None:
        return None
    high = kafka.high_watermarks.get(key)
    if high is None:
        return None
    last = consumer.progress.last_sequence
    start = consumer.lease.checkpoint.sequence_number
    if last is not None and last.isdigit():
        next_offset = int(last) + 1
    elif start.isdigit():
        next_offset = int(start) + 1  # a checkpoint at N is a commit of N + 1
    elif start == "LATEST":
        return 0
    else:
        next_offset = kafka.low_watermarks.get(key, 0)
    return max(0, int(high) - next_offset)
