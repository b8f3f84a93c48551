"""The worker's meters: what /metrics costs grows with the shards only where it must."""

from __future__ import annotations

import urllib.request

from prometheus_client import generate_latest

from streamworker.consumer.meters import ShardMeters, WorkerMetrics
from streamworker.ops.metrics import render
from streamworker.ops.server import OpsServer


def test_latency_histograms_are_the_workers_and_counters_are_per_shard() -> None:
    """A labelled histogram is 16 series a shard (a thousand shards made /metrics 3.4 MB that
    took seconds of the GIL to render): latencies are the worker's, counts stay per shard."""
    metrics = WorkerMetrics()
    for i in range(50):
        ShardMeters(metrics, f"shard-{i}").processed(records=3, size=30, seconds=0.002)
    text = generate_latest(metrics.registry).decode()
    buckets = [line for line in text.splitlines() if line.startswith("streamworker_process_records_seconds_bucket")]
    assert len(buckets) == 14 and all("shard=" not in line for line in buckets)
    assert 'streamworker_process_records_seconds_count 50.0' in text
    counts = [line for line in text.splitlines() if line.startswith("streamworker_records_processed_total{")]
    assert len(counts) == 50 and 'streamworker_records_processed_total{shard="shard-7"} 3.0' in text


def test_metrics_serves_no_created_series() -> None:
    """prometheus_client's ``<name>_created`` gauge beside every counter and histogram was half
    of /metrics at a thousand shards; /metrics serves everything else, the sums included."""
    metrics = WorkerMetrics()
    for i in range(20):
        ShardMeters(metrics, f"shard-{i}").processed(records=2, size=20, seconds=0.002)
    metrics.checkpoint_failures.labels("shard-3", "LeaseLost").inc()
    full = generate_latest(metrics.registry).decode()
    assert "_created" in full  # what prometheus_client renders by itself

    class View:
        def status_document(self) -> dict[str, object]:
            return {}

    server = OpsServer(View(), metrics.registry, 0, "127.0.0.1", status_page=False).start()  # type: ignore[arg-type]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=10) as reply:
            served = reply.read().decode()
    finally:
        server.stop()
    assert served == render(metrics.registry).decode()
    assert "_created" not in served
    kept = [line for line in full.splitlines() if "_created" not in line]
    assert served.splitlines() == kept
    assert 'streamworker_records_processed_total{shard="shard-19"} 2.0' in served
    assert "streamworker_process_records_seconds_count 20.0" in served
    assert 'streamworker_checkpoint_failures_total{error="LeaseLost",shard="shard-3"} 1.0' in served
