"""In-process workers for integration tests that need custom clients (fault injection, kinesis-mock)."""

from __future__ import annotations

import threading
import time
from typing import Any

from streamworker import RecordProcessor, Worker, WorkerConfig


class Collected:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[Any] = []  # (worker, shard, seq, sub, key, data, monotonic time)
        self.events: list[Any] = []

    def data(self) -> list[Any]:
        with self.lock:
            return [r[5] for r in self.records]


class CollectingProcessor(RecordProcessor):
    def __init__(self, worker: Any, out: Any) -> None:
        self.worker, self.out, self.shard = worker, out, None

    def initialize(self, i: Any) -> None:
        self.shard = i.shard_id
        with self.out.lock:
            self.out.events.append(("init", self.worker, i.shard_id, str(i.extended_sequence_number)))

    def process_records(self, p: Any) -> None:
        now = time.monotonic()
        with self.out.lock:
            for r in p.records:
                self.out.records.append((self.worker, r.shard_id, r.sequence_number, r.sub_sequence_number,
                                         r.partition_key, r.data.decode(), now))
        p.checkpointer.checkpoint()

    def shard_ended(self, i: Any) -> None:
        i.checkpointer.checkpoint()
        with self.out.lock:
            self.out.events.append(("shard_ended", self.worker, self.shard, ""))


def start_worker(name: Any, stream: Any, app: Any, out: Any, kinesis: Any, dynamodb: Any, **settings: Any) -> Any:
    cfg = WorkerConfig.load({"stream": stream, "application_name": app, "worker_id": name,
                             "initial_position": "TRIM_HORIZON", "failover_time": 3.0,
                             "idle_time_between_reads": 0.2, "take_interval": 0.5, **settings})
    w = Worker(cfg, lambda: CollectingProcessor(name, out), kinesis_client=kinesis, dynamodb_client=dynamodb)
    w.start()
    return w
