"""The worker's meters: what /metrics costs grows with the shards only where it must."""

from __future__ import annotations

from prometheus_client import generate_latest

from streamworker.consumer.meters import ShardMeters, WorkerMetrics


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
