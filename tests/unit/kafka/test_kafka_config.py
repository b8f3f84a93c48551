from __future__ import annotations

from typing import Any

import pytest

from streamworker.config import WorkerConfig
from streamworker.errors import ConfigError
from streamworker.kafka.conf import kafka_conf


def kcfg(**kw: Any) -> Any:
    base = {"source": "kafka", "topics": ["orders"], "bootstrap_servers": "b:9092", "application_name": "app"}
    return WorkerConfig.load({**base, **kw})


def test_defaults_and_passthrough() -> None:
    conf = kafka_conf(kcfg(worker_id="w-1", kafka_properties=["security.protocol=SASL_SSL", "sasl.mechanism=PLAIN",
                                                              "fetch.queue.backoff.ms=5"]))
    assert conf["bootstrap.servers"] == "b:9092" and conf["group.id"] == "app" and conf["client.id"] == "w-1"
    assert conf["enable.auto.commit"] is False and conf["auto.offset.reset"] == "latest"
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "PLAIN"
    assert conf["fetch.queue.backoff.ms"] == "5"  # -X wins over streamworker's defaults
    assert "group.instance.id" not in conf


def test_group_id_static_membership_and_initial_position() -> None:
    conf = kafka_conf(kcfg(group_id="g", static_membership=True, worker_id="w-2",
                           initial_position="TRIM_HORIZON"))
    assert conf["group.id"] == "g" and conf["group.instance.id"] == "w-2"
    assert conf["auto.offset.reset"] == "earliest"


def test_coordinator_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kcfg().coordinator_kind == "kafka-group"
    assert kcfg(coordinator="dynamodb").coordinator_kind == "dynamodb"
    assert WorkerConfig.load({"stream": "s", "application_name": "app"}).coordinator_kind == "dynamodb"
    monkeypatch.setenv("STREAMWORKER_TOPICS", "a,b")
    monkeypatch.setenv("STREAMWORKER_KAFKA_PROPERTIES", "session.timeout.ms=6000,heartbeat.interval.ms=1000")
    cfg = WorkerConfig.load({"source": "kafka", "bootstrap_servers": "b:1", "application_name": "app"})
    assert cfg.topics == ["a", "b"]
    assert cfg.kafka_properties == {"session.timeout.ms": "6000", "heartbeat.interval.ms": "1000"}
    assert cfg.stream_label == "a,b"


@pytest.mark.parametrize("flags, message", [
    ({"source": "kafka", "bootstrap_servers": "b:1", "application_name": "app"}, "--topic or --topic-pattern"),
    ({"source": "kafka", "topics": ["t"], "application_name": "app"}, "--bootstrap-servers"),
    ({"stream": "s", "application_name": "app", "coordinator": "kafka-group"}, "needs source kafka"),
    ({"application_name": "app"}, "stream is required"),
    ({"source": "kafka", "topics": ["t"], "bootstrap_servers": "b:1", "application_name": "app",
      "kafka_properties": ["novalue"]}, "key=value"),
])
def test_kafka_settings_are_validated(flags: Any, message: Any) -> None:
    with pytest.raises(ConfigError, match=message):
        WorkerConfig.load(flags)


def test_failover_time_is_the_group_session_timeout_unless_x_sets_it() -> None:
    """Issue 12: failover_time used to be logged and used nowhere on Kafka (librdkafka's 45 s)."""
    from streamworker.kafka.conf import kafka_conf

    base = {"source": "kafka", "topics": ["t"], "bootstrap_servers": "b:1", "application_name": "app"}
    conf = kafka_conf(WorkerConfig.load(base))
    assert conf["session.timeout.ms"] == 10000 and conf["heartbeat.interval.ms"] == 2500
    conf = kafka_conf(WorkerConfig.load({**base, "failover_time": 6}))
    assert conf["session.timeout.ms"] == 6000 and conf["heartbeat.interval.ms"] == 1500
    conf = kafka_conf(WorkerConfig.load({**base, "kafka_properties": ["session.timeout.ms=30000"]}))
    assert conf["session.timeout.ms"] == "30000" and conf["heartbeat.interval.ms"] == 7500
    conf = kafka_conf(WorkerConfig.load({**base, "kafka_properties": ["group.protocol=consumer"]}))
    assert "session.timeout.ms" not in conf and "heartbeat.interval.ms" not in conf  # the broker's, in KIP-848
