"""``streamworker demo``: two workers share a 4-shard ``metrics-stream`` on an embedded moto,
then one stops and the other takes its shards over. Ends by itself."""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import boto3

from streamworker.config import WorkerConfig
from streamworker.ops.log import configure_logging
from streamworker.processor import ProcessRecordsInput, RecordProcessor
from streamworker.records import InitialPosition
from streamworker.worker import Worker

STREAM = "metrics-stream"
METRICS = ("cpu", "memory", "disk_io", "net_in", "net_out", "latency_ms", "errors", "requests",
           "gc_pause_ms", "queue_depth", "threads", "open_files")
HOSTS = ("web-1", "web-2", "db-1", "cache-1")


@dataclass
class Aggregates:
    """Shared by the demo's processors: per-metric figures and per-shard progress."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    count: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    total: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    peak: dict[str, float] = field(default_factory=dict)
    seen: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    by_worker: dict[str, str] = field(default_factory=dict)
    #: distinct records processed per shard, whoever processed them
    per_shard: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, worker: str, shard_id: str, seq: str, metric: str, value: float) -> None:
        with self.lock:
            if (shard_id, seq) not in self.seen:
                self.per_shard[shard_id] += 1
            self.seen[(shard_id, seq)] += 1
            self.by_worker[shard_id] = worker
            self.count[metric] += 1
            self.total[metric] += value
            self.peak[metric] = max(self.peak.get(metric, value), value)


class DemoMetricsProcessor(RecordProcessor):
    def __init__(self, worker: str, agg: Aggregates) -> None:
        self.worker, self.agg = worker, agg

    def process_records(self, process_records_input: ProcessRecordsInput) -> None:
        for r in process_records_input.records:
            m = json.loads(r.data)
            self.agg.add(self.worker, r.shard_id, r.sequence_number, m["metric"], float(m["value"]))
        process_records_input.checkpointer.checkpoint()


def _producer(client: Any, stop: threading.Event, produced: list[int]) -> None:
    rng = random.Random(7)
    while not stop.is_set():
        entries = []
        for _ in range(25):
            metric, host = rng.choice(METRICS), rng.choice(HOSTS)
            value = round(rng.uniform(0, 100), 2)
            entries.append({"Data": json.dumps({"host": host, "metric": metric, "value": value}).encode(),
                            "PartitionKey": metric})
        resp = client.put_records(StreamName=STREAM, Records=entries)
        produced[0] += len(entries) - int(resp.get("FailedRecordCount", 0))
        stop.wait(0.25)


def _table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join("    " + x for x in out)


def _behind(s: Any) -> str:
    if s.millis_behind_latest is not None:
        return f"{s.millis_behind_latest} ms"
    return "-" if s.lag is None else f"{s.lag} records"


def _print_shards(workers: list[Worker], agg: Aggregates) -> None:
    """One row per shard: its owner now, everything processed on it (by any owner) and by this one."""
    with agg.lock:
        total = dict(agg.per_shard)
    rows = [[s.shard_id, w.worker_id, s.state, str(total.get(s.shard_id, 0)), str(s.records), _behind(s),
             s.checkpoint[-12:]] for w in workers for s in w.status()]
    print(_table(sorted(rows), ["shard", "owner", "state", "processed", "by this owner", "behind", "checkpoint"]))


def _print_metrics(agg: Aggregates) -> None:
    with agg.lock:
        rows = [[m, str(agg.count[m]), f"{agg.total[m] / agg.count[m]:.1f}", f"{agg.peak[m]:.1f}"]
                for m in sorted(agg.count)]
    print("\nwhat the processors computed, per metric:")
    print(_table(rows, ["metric", "records", "avg", "max"]))


def _progress_line(workers: list[Worker], agg: Aggregates, produced: int, t0: float) -> str:
    with agg.lock:
        processed = len(agg.seen)
    held = ", ".join(f"{w.worker_id} {len(w.coordinator.held_keys())}" for w in workers)
    behind = [_behind(s) for w in workers for s in w.status()]
    worst = max(behind, key=lambda b: int(b.split()[0]) if b != "-" else -1, default="-")
    return (f"[{time.monotonic() - t0:5.1f}s] produced {produced}, processed {processed}; shards held: {held}; "
            f"furthest behind: {worst}")


def _show_until(workers: list[Worker], agg: Aggregates, produced: list[int], t0: float, until: float) -> None:
    """One progress line every 5 s until ``until`` (monotonic)."""
    while time.monotonic() < until:
        time.sleep(min(5.0, max(0.0, until - time.monotonic())))
        print(_progress_line(workers, agg, produced[0], t0))


def _summary(agg: Aggregates, produced: int, t0: float) -> str:
    distinct = len(agg.seen)
    dupes = sum(agg.seen.values()) - distinct
    return (f"\nproduced {produced} records; processed {distinct} distinct, {dupes} twice; "
            f"{'nothing lost' if distinct >= produced else 'NOT ALL PROCESSED'} ({time.monotonic() - t0:.0f}s)")


def _print_leases(worker: Worker, title: str) -> None:
    assert worker.table is not None
    rows = [[le.lease_key, le.lease_owner or "(none)", str(le.lease_counter), str(le.checkpoint)[-20:]]
            for le in sorted(worker.table.list_leases(), key=lambda x: x.lease_key)]
    print(f"\n== lease table {worker.table.table_name!r}: {title}")
    print(_table(rows, ["shard", "owner", "counter", "checkpoint"]))


def _wait(cond: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False


def run_demo(duration: float = 40.0, shards: int = 4, log_level: str = "WARNING") -> int:
    from streamworker.local import MotoServer

    configure_logging(log_level, "console")
    server = MotoServer().start()
    # Point boto3 at the embedded server through its own settings, only in this process.
    os.environ.update({"AWS_ENDPOINT_URL": server.endpoint, "AWS_ACCESS_KEY_ID": "demo",
                       "AWS_SECRET_ACCESS_KEY": "demo", "AWS_DEFAULT_REGION": "us-east-1"})
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_DYNAMODB"):
        os.environ.pop(var, None)
    print(f"embedded Kinesis + DynamoDB (moto) at {server.endpoint}")
    kinesis = boto3.client("kinesis")
    kinesis.create_stream(StreamName=STREAM, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=STREAM, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    print(f"created stream {STREAM!r} with {shards} shards; producing metric records keyed by metric name")

    agg = Aggregates()
    stop_producing = threading.Event()
    produced = [0]
    producer = threading.Thread(target=_producer, args=(kinesis, stop_producing, produced), daemon=True)
    producer.start()

    def make_worker(name: str) -> Worker:
        cfg = WorkerConfig.load({"stream": STREAM, "application_name": "metrics-demo", "worker_id": name,
                                 "initial_position": InitialPosition.TRIM_HORIZON, "failover_time": 6.0,
                                 "idle_time_between_reads": 0.3, "take_interval": 0.5,
                                 "log_format": "console"})
        return Worker(cfg, lambda: DemoMetricsProcessor(name, agg))

    t0 = time.monotonic()
    a, b = make_worker("worker-A"), make_worker("worker-B")
    a.start()
    b.start()
    split = _wait(lambda: len(a.coordinator.held_keys()) == len(b.coordinator.held_keys()) == shards // 2, 15)
    print(f"\nworker-A holds {a.coordinator.held_keys()}, worker-B holds {b.coordinator.held_keys()}"
          f"{'' if split else ' (not split evenly yet)'}")
    _show_until([a, b], agg, produced, t0, t0 + duration * 0.4)
    print()
    _print_shards([a, b], agg)
    _print_leases(a, "both workers running")

    print("\n>>> stopping worker-A (graceful: shutdown_requested, checkpoint, release its leases)")
    handed = time.monotonic()
    a.shutdown()
    took_over = _wait(lambda: len(b.coordinator.held_keys()) == shards, 15)
    print(f">>> worker-B holds {b.coordinator.held_keys()} "
          f"({'all shards' if took_over else 'not all shards yet'}, {time.monotonic() - handed:.1f}s after the stop)")
    _show_until([b], agg, produced, t0, t0 + duration * 0.8)

    stop_producing.set()
    producer.join(5)
    caught_up = _wait(lambda: sum(agg.seen.values()) >= produced[0] and len(agg.seen) >= produced[0],
                      max(5.0, duration * 0.2))
    print(_progress_line([b], agg, produced[0], t0) + "\n")
    _print_shards([b], agg)
    _print_leases(b, "after the takeover")
    _print_metrics(agg)
    b.shutdown()
    print(_summary(agg, produced[0], t0))
    server.stop()
    return 0 if caught_up and took_over else 1
