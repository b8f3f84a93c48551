"""Long run (``./dev test-slow``): repeated kill -9, SIGTERM and restarts of three workers while
producing; nothing may be lost, and duplicates only come from hard kills."""

from __future__ import annotations

import random
import signal
import threading

import boto3
import pytest

from tests.integration.conftest import Workers

from .conftest import make_stream, owner_counts, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_kill_and_restart_cycles_lose_nothing(aws_env: dict[str, str], names: dict[str, str], workers: Workers) -> None:
    log = workers.log
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 6)
    stop, produced = threading.Event(), [0]

    def producer() -> None:
        while not stop.is_set():
            n = produced[0]
            kinesis.put_records(StreamName=names["stream"], Records=[
                {"Data": str(i).encode(), "PartitionKey": f"k{i % 24}"} for i in range(n, n + 20)])
            produced[0] = n + 20
            stop.wait(0.05)

    threading.Thread(target=producer, daemon=True).start()
    rng = random.Random(42)
    live = {name: workers(name) for name in ("W0", "W1", "W2")}
    generation = 3
    hard_kills = 0
    try:
        for _ in range(8):
            wait_for(lambda: sum(owner_counts(names["app"]).get(n, 0) for n in live) == 6, 30, "all shards owned")
            victim = rng.choice(sorted(live))
            if rng.random() < 0.5:
                live[victim].proc.kill()
                hard_kills += 1
            else:
                live[victim].signal(signal.SIGTERM)
                assert live[victim].proc.wait(30) == 0
            live[victim].proc.wait(10)
            del live[victim]
            name = f"W{generation}"
            generation += 1
            live[name] = workers(name)
    finally:
        stop.set()
    total = produced[0]
    wait_for(lambda: set(log.data()) >= set(range(total)), 60, f"all {total} records")
    data = log.data()
    assert set(data) >= set(range(total))
    if hard_kills == 0:
        assert len(data) == len(set(data))
