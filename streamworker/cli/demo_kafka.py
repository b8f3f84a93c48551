"""``streamworker demo --source kafka``: the metrics demo on a local broker (Apache Kafka where
Java 17+ and Maven are on the PATH, else tansu, a Kafka-compatible stand-in), with the
consumer-group protocol deciding which worker owns which partition."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

from streamworker.cli.demo import (
    HOSTS,
    METRICS,
    Aggregates,
    DemoMetricsProcessor,
    _print_metrics,
    _print_shards,
    _progress_line,
    _show_until,
    _summary,
    _wait,
)
from streamworker.config import WorkerConfig
from streamworker.errors import ConfigError
from streamworker.ops.log import configure_logging
from streamworker.records import InitialPosition
from streamworker.worker import Worker

TOPIC = "metrics"


def _producer(bootstrap: str, stop: threading.Event, produced: list[int]) -> None:
    from streamworker.kafka import factory

    p = factory.producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    rng = random.Random(7)
    while not stop.is_set():
        for _ in range(25):
            metric, host = rng.choice(METRICS), rng.choice(HOSTS)
            value = round(rng.uniform(0, 100), 2)
            p.produce(TOPIC, key=metric.encode(), value=json.dumps({"host": host, "metric": metric,
                                                                    "value": value}).encode())
        p.flush(10)
        produced[0] += 25
        stop.wait(0.25)


def _start_broker(choice: str) -> Any:
    """The broker ``choice`` names (``auto``: Apache Kafka where it can run), started; it says which."""
    from streamworker.local import KafkaBroker
    from streamworker.local.apache_kafka import KAFKA_VERSION, ApacheKafka, java_and_maven

    if choice == "apache-kafka" or (choice == "auto" and java_and_maven()):
        if not java_and_maven():
            raise ConfigError("--broker apache-kafka needs Java 17+ and Maven on the PATH (or use --broker tansu)")
        print(f"starting Apache Kafka {KAFKA_VERSION} (KRaft; its jars are fetched with Maven on first use)...",
              flush=True)
        kafka = ApacheKafka().start()
        print(f"embedded Apache Kafka {KAFKA_VERSION} at {kafka.bootstrap}")
        return kafka
    broker = KafkaBroker().start()
    why = "--broker tansu" if choice == "tansu" else "no Java 17+ and Maven here for Apache Kafka"
    print(f"embedded Kafka-compatible broker at {broker.bootstrap}: tansu, a stand-in ({why})")
    return broker


def run_kafka_demo(duration: float = 40.0, partitions: int = 4, log_level: str = "WARNING",
                   broker_choice: str = "auto") -> int:
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    from streamworker.kafka import factory

    configure_logging(log_level, "console")
    broker = _start_broker(broker_choice)
    admin = factory.admin({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=partitions, replication_factor=1)])[TOPIC].result(15)
    del admin  # a client left open would log its lost connection when the broker stops
    print(f"created topic {TOPIC!r} with {partitions} partitions; producing metric records keyed by metric name")

    agg = Aggregates()
    stop_producing = threading.Event()
    produced = [0]
    producing = threading.Thread(target=_producer, args=(broker.bootstrap, stop_producing, produced), daemon=True)
    producing.start()

    def make_worker(name: str) -> Worker:
        cfg = WorkerConfig.load({
            "source": "kafka", "topics": [TOPIC], "bootstrap_servers": broker.bootstrap,
            "application_name": "metrics-demo", "worker_id": name,
            "initial_position": InitialPosition.TRIM_HORIZON, "idle_time_between_reads": 0.3,
            "kafka_properties": ["session.timeout.ms=6000", "heartbeat.interval.ms=1000"],
            "log_format": "console"})
        return Worker(cfg, lambda: DemoMetricsProcessor(name, agg))

    t0 = time.monotonic()
    a, b = make_worker("worker-A"), make_worker("worker-B")
    a.start()
    b.start()
    split = _wait(lambda: len(a.coordinator.held_keys()) + len(b.coordinator.held_keys()) == partitions
                  and len(a.coordinator.held_keys()) > 0 and len(b.coordinator.held_keys()) > 0, 30)
    print(f"\nthe group assigned worker-A {a.coordinator.held_keys()} and worker-B {b.coordinator.held_keys()}"
          f"{'' if split else ' (not settled yet)'}")
    _show_until([a, b], agg, produced, t0, t0 + duration * 0.45)
    print()
    _print_shards([a, b], agg)

    print("\n>>> stopping worker-A (graceful: shutdown_requested, commit, leave the group)")
    handed = time.monotonic()
    a.shutdown()
    took_over = _wait(lambda: len(b.coordinator.held_keys()) == partitions, 30)
    print(f">>> worker-B holds {b.coordinator.held_keys()} "
          f"({'all partitions' if took_over else 'not all yet'}, {time.monotonic() - handed:.1f}s after the stop)")
    _show_until([b], agg, produced, t0, t0 + duration * 0.85)
    stop_producing.set()
    producing.join(15)
    caught_up = _wait(lambda: len(agg.seen) >= produced[0], max(5.0, duration * 0.2))
    print(_progress_line([b], agg, produced[0], t0) + "\n")
    _print_shards([b], agg)
    _print_metrics(agg)
    b.shutdown()
    print(_summary(agg, produced[0], t0))
    broker.stop()
    return 0 if caught_up and took_over else 1
