"""Kafka lease keys: ``topic:partition`` (a topic name cannot contain ``:``), built and parsed here."""

from __future__ import annotations


def kafka_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def parse_kafka_key(lease_key: str) -> tuple[str, int] | None:
    """(topic, partition) of a Kafka lease key, else None."""
    topic, sep, part = lease_key.rpartition(":")
    if not sep or not topic or not part.isdigit():
        return None
    return topic, int(part)


def topic_of(lease_key: str) -> str:
    """The topic of a Kafka lease key."""
    return lease_key.rpartition(":")[0]
