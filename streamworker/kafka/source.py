"""Topic-partitions as shards: a shard id is ``topic:partition``, a sequence number an offset.

Partitions are assigned either by the consumer-group protocol (``KafkaGroupCoordinator`` drives
``subscribe``) or explicitly by ``open_reader`` (``incremental_assign``, for the DynamoDB
coordinator).
"""

from __future__ import annotations

import re
from typing import Any

import structlog

from streamworker.errors import SourceError
from streamworker.kafka.buffers import KafkaPartitionReader
from streamworker.kafka.client import KafkaClient
from streamworker.kafka.keys import kafka_key, parse_kafka_key
from streamworker.records import ExtendedSequenceNumber, StartPosition
from streamworker.sources.base import ShardInfo

log = structlog.get_logger("streamworker.kafka")

shard_key = kafka_key


def parse_shard(shard_id: str) -> tuple[str, int]:
    parsed = parse_kafka_key(shard_id)
    if parsed is None:
        raise ValueError(f"not a Kafka partition key: {shard_id!r}")
    return parsed


def start_offset(position: StartPosition, consumer: Any, topic: str, partition: int) -> int:
    """The offset to fetch from for a start position."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

    if position.sequence is not None:
        return int(position.sequence.sequence_number) + 1
    if position.kind == "TRIM_HORIZON":
        return int(OFFSET_BEGINNING)
    if position.kind == "LATEST":
        return int(OFFSET_END)
    if position.kind == "AT_TIMESTAMP" and position.timestamp is not None:
        ms = int(position.timestamp.timestamp() * 1000)
        (tp,) = consumer.offsets_for_times([TopicPartition(topic, partition, ms)], timeout=10)
        return int(tp.offset) if tp.offset >= 0 else int(OFFSET_END)
    raise ValueError(f"unsupported start position {position}")


class KafkaSource:
    """Topic-partitions as shards, over one shared KafkaClient."""

    def __init__(self, client: KafkaClient, topics: list[str], topic_pattern: str | None, *,
                 max_records: int = 10000, wait: float = 0.5, assign_on_open: bool = True) -> None:
        self.client = client
        self.topics = list(topics)
        self.topic_pattern = topic_pattern
        self.max_records = max_records
        self.wait = wait
        self.assign_on_open = assign_on_open

    @property
    def stream(self) -> str:
        return ",".join(self.topics) if self.topics else f"/{self.topic_pattern}/"

    def subscription(self) -> list[str]:
        """Topic names, with the pattern as librdkafka's ``^regex`` form."""
        subs = list(self.topics)
        if self.topic_pattern:
            subs.append(self.topic_pattern if self.topic_pattern.startswith("^") else f"^{self.topic_pattern}")
        return subs

    def _matches(self, topic: str) -> bool:
        if topic in self.topics:
            return True
        return bool(self.topic_pattern and re.fullmatch(self.topic_pattern.lstrip("^"), topic))

    def describe(self) -> str:
        """Check the broker answers and the topics exist; SourceError otherwise."""
        try:
            md = self.client.consumer.list_topics(timeout=10)
        except Exception as exc:
            raise SourceError(f"cannot reach Kafka at {self.client.conf.get('bootstrap.servers')}: {exc}") from None
        missing = [t for t in self.topics if t not in md.topics or md.topics[t].error is not None]
        if missing:
            raise SourceError(f"Kafka topic(s) {', '.join(missing)} not found at "
                              f"{self.client.conf.get('bootstrap.servers')}")
        return "ACTIVE"

    def list_shards(self) -> list[ShardInfo]:
        md = self.client.run_on_poll_thread(lambda: self.client.consumer.list_topics(timeout=10))
        shards: list[ShardInfo] = []
        for name, t in sorted(md.topics.items()):
            if t.error is None and not name.startswith("__") and self._matches(name):
                shards.extend(ShardInfo(shard_key(name, p)) for p in sorted(t.partitions))
        return shards

    def open_reader(self, shard_id: str, position: StartPosition) -> KafkaPartitionReader:
        topic, partition = parse_shard(shard_id)
        skip = int(position.sequence.sequence_number) if position.sequence is not None else None
        if not self.assign_on_open:
            buf = self.client.open_buffer(topic, partition)
            return KafkaPartitionReader(self.client, buf, skip_through=skip, max_records=self.max_records,
                                        wait=self.wait)
        from confluent_kafka import TopicPartition

        offset = self.client.run_on_poll_thread(
            lambda: start_offset(position, self.client.consumer, topic, partition))
        buf = self.client.open_buffer(topic, partition, next_offset=offset if offset >= 0 else None)
        self.client.call_on_poll_thread(
            lambda: self.client.consumer.incremental_assign([TopicPartition(topic, partition, offset)]))

        def unassign() -> None:
            self.client.close_buffer(topic, partition)
            self.client.call_on_poll_thread(
                lambda: self.client.consumer.incremental_unassign([TopicPartition(topic, partition)]))

        return KafkaPartitionReader(self.client, buf, skip_through=skip, max_records=self.max_records,
                                    wait=self.wait, on_close=unassign)

    def mirror_checkpoint(self, lease_key: str, checkpoint: ExtendedSequenceNumber) -> None:
        """Copy a lease-table checkpoint to Kafka's committed offsets, for standard lag tools."""
        if checkpoint.is_sentinel:
            return
        topic, partition = parse_shard(lease_key)
        try:
            self.client.commit(topic, partition, self.client.next_offset(topic, partition,
                                                                         int(checkpoint.sequence_number)),
                               asynchronous=True)
        except Exception as exc:  # the lease table holds the truth; the mirror is best effort
            log.warning("mirroring the checkpoint to Kafka failed", shard_id=lease_key, error=str(exc))
