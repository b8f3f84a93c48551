"""librdkafka settings from a worker's configuration."""

from __future__ import annotations

from typing import Any

from streamworker.config import WorkerConfig
from streamworker.records import InitialPosition


def kafka_conf(config: WorkerConfig) -> dict[str, Any]:
    """librdkafka settings: streamworker's defaults, then every -X property as given."""
    conf: dict[str, Any] = {
        "group.id": config.group_id or config.application_name,
        "client.id": config.worker_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "latest" if config.initial_position == InitialPosition.LATEST else "earliest",
        # librdkafka's default (1000 ms) stalls a consumer with a deep prefetch queue for ~1 s.
        "fetch.queue.backoff.ms": 20,
    }
    if config.bootstrap_servers:
        conf["bootstrap.servers"] = config.bootstrap_servers
    if config.static_membership:
        conf["group.instance.id"] = config.worker_id
    if config.kafka_auth == "aws-msk-iam":
        from streamworker.kafka.msk_iam import msk_iam_conf

        conf.update(msk_iam_conf(config.region))
    conf.update(config.kafka_properties)
    # failover_time is the group's session timeout: a member that stops heartbeating is out (and
    # its partitions reassigned) after it, as a lease expires. KIP-848 groups take the session
    # timeout from the broker (group.consumer.session.timeout.ms), not from the client.
    if str(conf.get("group.protocol", "classic")).lower() != "consumer":
        conf.setdefault("session.timeout.ms", int(config.failover_time * 1000))
        conf.setdefault("heartbeat.interval.ms", max(100, int(conf["session.timeout.ms"]) // 4))
    return conf
