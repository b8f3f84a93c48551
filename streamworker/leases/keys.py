"""Lease keys, built and parsed in this one place.

- a Kinesis shard of a single-stream application: the shard id (``shardId-000000000001``);
- a Kinesis shard in a KCL multi-stream table: ``account:stream:creationEpoch:shardId``;
- a Kafka partition: ``topic:partition``, built in ``streamworker.kafka.keys``.
"""

from __future__ import annotations


def _multi(lease_key: str) -> list[str] | None:
    parts = lease_key.split(":")
    return parts if len(parts) == 4 else None


def shard_of(lease_key: str) -> str:
    """The shard id of a Kinesis lease key (a Kafka key is its own shard id)."""
    parts = _multi(lease_key)
    return parts[3] if parts else lease_key


def stream_of(lease_key: str) -> str | None:
    """The stream of a KCL multi-stream lease key, else None."""
    parts = _multi(lease_key)
    return parts[1] if parts else None


def key_prefix_of(lease_key: str) -> str:
    """``account:stream:creationEpoch:`` of a multi-stream lease key, else empty."""
    parts = _multi(lease_key)
    return ":".join(parts[:3]) + ":" if parts else ""


def stream_identifier_of(lease_key: str) -> str | None:
    """KCL's serialized StreamIdentifier (``account:stream:creationEpoch``) of a multi-stream
    lease key, else None (its CloudWatch ``StreamId`` dimension)."""
    return key_prefix_of(lease_key).rstrip(":") or None


def stream_prefix(account: str, stream: str, creation_epoch: int | str) -> str:
    """The key prefix of a stream's leases in a multi-stream table."""
    return f"{account}:{stream}:{creation_epoch}:"


def stream_name(stream: str) -> str:
    """The name of a stream given by name or ARN."""
    return stream.rsplit("/", 1)[-1]
