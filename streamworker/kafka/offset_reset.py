"""``streamworker checkpoint set`` for the Kafka group coordinator: reset a consumer group's
committed offsets, with the guarantees of ``kafka-consumer-groups --reset-offsets``: the group
must have no members (the broker refuses otherwise; we say so first)."""

from __future__ import annotations

import json
from typing import Any, TextIO

from streamworker.checkpoint.target import Target
from streamworker.errors import ConfigError, StreamworkerError
from streamworker.kafka.keys import kafka_key, parse_kafka_key
from streamworker.records import AT_TIMESTAMP, LATEST, TRIM_HORIZON


def reset_offsets(conf: dict[str, Any], group: str, topics: list[str], shards: list[str], all_shards: bool,
                  to: Target, *, dry_run: bool, as_json: bool, out: TextIO) -> int:
    """Commit ``to`` for the selected partitions of ``group``. ``to`` as a number is the next
    offset to read (as ``--to-offset``); TRIM_HORIZON / LATEST / AT_TIMESTAMP resolve per partition."""
    from confluent_kafka import KafkaException, TopicPartition

    from streamworker.kafka import factory

    admin = factory.admin(conf)
    try:
        desc = admin.describe_consumer_groups([group], request_timeout=15)[group].result()
    except KafkaException as exc:
        raise StreamworkerError(f"cannot describe consumer group {group!r}: {exc.args[0]}") from None
    if desc.members:
        names = ", ".join(sorted(m.client_id or m.member_id for m in desc.members))
        raise StreamworkerError(
            f"consumer group {group!r} has {len(desc.members)} active member(s) ({names}); stop its workers "
            f"first: a group's offsets can only be reset while it is empty (as kafka-consumer-groups "
            f"--reset-offsets requires)")
    consumer = factory.consumer({**conf, "group.id": group, "enable.auto.commit": False})
    try:
        parts = _partitions(consumer, topics, shards, all_shards)
        if to.checkpoint.sequence_number.isdigit() and len(parts) > 1:
            raise ConfigError("an offset belongs to one partition: use --shard TOPIC:PARTITION with it")
        committed = {(tp.topic, tp.partition): tp.offset
                     for tp in consumer.committed([TopicPartition(t, p) for t, p in parts], timeout=15)}
        targets = {tp: _offset(consumer, tp, to) for tp in parts}
    finally:
        consumer.close()
    rows = [{"lease": kafka_key(t, p), "from": _show(committed.get((t, p), -1001)), "to": targets[(t, p)],
             "written": False} for t, p in parts]
    if not dry_run:
        from confluent_kafka import ConsumerGroupTopicPartitions

        request = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p, targets[(t, p)]) for t, p in parts])
        try:
            admin.alter_consumer_group_offsets([request], request_timeout=15)[group].result()
        except KafkaException as exc:
            raise StreamworkerError(f"the broker refused to reset group {group!r}: {exc.args[0]}") from None
        for r in rows:
            r["written"] = True
    if as_json:
        out.write(json.dumps(rows) + "\n")
    else:
        verb = "would set" if dry_run else "set"
        for r in rows:
            out.write(f"{verb} {r['lease']}: committed {r['from']} -> {r['to']} (next offset read)\n")
        if dry_run:
            out.write("dry run: nothing written\n")
    return 0


def _partitions(consumer: Any, topics: list[str], shards: list[str], all_shards: bool) -> list[tuple[str, int]]:
    if shards:
        out = []
        for s in shards:
            parsed = parse_kafka_key(s)
            if parsed is None:
                raise ConfigError(f"--shard {s!r}: a Kafka partition is TOPIC:PARTITION")
            out.append(parsed)
        return out
    if not all_shards or not topics:
        raise ConfigError("name the partitions: --shard TOPIC:PARTITION (repeatable) or --all-shards with --topic")
    meta = consumer.list_topics(timeout=15)
    out = []
    for t in topics:
        if t not in meta.topics or meta.topics[t].error is not None:
            raise StreamworkerError(f"Kafka topic {t!r} not found")
        out.extend((t, p) for p in sorted(meta.topics[t].partitions))
    return out


def _offset(consumer: Any, tp: tuple[str, int], to: Target) -> int:
    from confluent_kafka import TopicPartition

    seq = to.checkpoint.sequence_number
    if seq.isdigit():
        return int(seq)
    low, high = consumer.get_watermark_offsets(TopicPartition(*tp), timeout=15)
    if seq == TRIM_HORIZON:
        return int(low)
    if seq == LATEST:
        return int(high)
    if seq == AT_TIMESTAMP and to.timestamp is not None:
        ms = int(to.timestamp.timestamp() * 1000)
        (found,) = consumer.offsets_for_times([TopicPartition(tp[0], tp[1], ms)], timeout=15)
        return int(found.offset) if found.offset >= 0 else int(high)
    raise ConfigError(f"cannot reset a Kafka offset to {to}")


def _show(offset: int) -> str:
    return str(offset) if offset >= 0 else "none"
