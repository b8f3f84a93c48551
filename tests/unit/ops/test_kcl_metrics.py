"""KCL's metrics as KCL aggregates and filters them, and their publisher."""

from __future__ import annotations

from typing import Any

import pytest

from streamworker.kcl.properties import load_properties
from streamworker.ops.cloudwatch import BATCH, CloudWatchPublisher
from streamworker.ops.kcl_metrics import KclMetrics


def series(data: list[dict[str, Any]]) -> dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, float]]:
    return {(d["MetricName"], tuple((x["Name"], x["Value"]) for x in d["Dimensions"])): d["StatisticValues"]
            for d in data}


def test_points_fold_into_statistic_sets_per_name_dimensions_and_unit() -> None:
    m = KclMetrics()
    for n in (3, 5, 1):
        m.add("ProcessTask", "RecordsProcessed", n, "Count", "SUMMARY", shard_id="shardId-1")
    m.add("ProcessTask", "RecordsProcessed", 7, "Count", "SUMMARY", shard_id="shardId-2")
    got = series(m.drain())
    assert got[("RecordsProcessed", (("Operation", "ProcessTask"), ("ShardId", "shardId-1")))] == {
        "SampleCount": 3, "Sum": 9, "Minimum": 1, "Maximum": 5}
    assert got[("RecordsProcessed", (("Operation", "ProcessTask"), ("ShardId", "shardId-2")))]["Sum"] == 7
    assert m.drain() == []  # drained


def test_the_level_drops_what_is_above_it() -> None:
    summary = KclMetrics(level="SUMMARY")
    summary.add("TakeLeases", "TotalLeases", 4, "Count", "DETAILED")
    summary.add("TakeLeases", "TakenLeases", 1, "Count", "SUMMARY")
    assert [d["MetricName"] for d in summary.drain()] == ["TakenLeases"]
    none = KclMetrics(level="NONE")
    none.add("TakeLeases", "TakenLeases", 1, "Count", "SUMMARY")
    assert none.drain() == []
    with pytest.raises(ValueError, match="metrics level 'LOUD'"):
        KclMetrics(level="LOUD")


def test_enabled_dimensions_keep_operation_always_and_the_others_as_named() -> None:
    only_op = KclMetrics(dimensions=["Operation"], worker_id="w1")
    only_op.add("ProcessTask", "RecordsProcessed", 1, "Count", "SUMMARY", shard_id="s1", stream="a:b:1")
    only_op.add("ProcessTask", "RecordsProcessed", 2, "Count", "SUMMARY", shard_id="s2")
    (d,) = only_op.drain()  # without ShardId both shards are one series, as in KCL
    assert d["Dimensions"] == [{"Name": "Operation", "Value": "ProcessTask"}] and d["StatisticValues"]["Sum"] == 3
    every = KclMetrics(dimensions=["ALL"], worker_id="w1")
    every.add("ProcessTask", "RecordsProcessed", 1, "Count", "SUMMARY", shard_id="s1", stream="a:b:1")
    (d,) = every.drain()
    assert {x["Name"] for x in d["Dimensions"]} == {"Operation", "ShardId", "StreamId", "WorkerIdentifier"}


def test_series_beyond_the_queue_size_are_dropped_and_counted() -> None:
    m = KclMetrics(max_series=2)
    for shard in ("a", "b", "c", "a"):
        m.add("ProcessTask", "RecordsProcessed", 1, "Count", "SUMMARY", shard_id=shard)
    assert len(m.drain()) == 2 and m.dropped == 1


class FakeCloudWatch:
    def __init__(self, fail: BaseException | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail

    def put_metric_data(self, **kw: Any) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append(kw)


class Log:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **kw: Any) -> None:
        self.warnings.append((event, kw))


def test_the_publisher_samples_then_sends_in_batches_under_the_namespace() -> None:
    client, m = FakeCloudWatch(), KclMetrics()
    sampled: list[int] = []

    def sample(kcl: KclMetrics) -> None:
        sampled.append(1)
        for i in range(BATCH + 5):
            kcl.add("ProcessTask", "MillisBehindLatest", 0, "Milliseconds", "SUMMARY", shard_id=f"s{i}")

    p = CloudWatchPublisher(client, "orders-app", m, interval=10, sample=sample, log=Log())
    p.flush()
    assert sampled == [1] and [len(c["MetricData"]) for c in client.calls] == [BATCH, 5]
    assert {c["Namespace"] for c in client.calls} == {"orders-app"} and p.sent == BATCH + 5


def test_a_refused_send_is_dropped_logged_once_a_minute_and_counted() -> None:
    clock = [0.0]
    log = Log()
    client = FakeCloudWatch(fail=RuntimeError("AccessDenied: cloudwatch:PutMetricData"))
    m = KclMetrics()

    def sample(kcl: KclMetrics) -> None:
        kcl.add("RenewAllLeases", "CurrentLeases", 2, "Count", "SUMMARY")

    p = CloudWatchPublisher(client, "app", m, interval=10, sample=sample, log=log, monotonic=lambda: clock[0])
    p.flush()
    clock[0] = 10.0
    p.flush()
    assert p.dropped == 2 and len(log.warnings) == 1 and "AccessDenied" in log.warnings[0][1]["error"]
    clock[0] = 61.0
    p.flush()
    assert len(log.warnings) == 2 and log.warnings[1][1]["datums"] == 2  # the two since the last line


def test_kcl_properties_metrics_keys_become_settings(tmp_path: Any) -> None:
    path = tmp_path / "app.properties"
    path.write_text("applicationName = app\nstreamName = s\nmetricsLevel = summary\n"
                    "metricsEnabledDimensions = Operation, ShardId, WorkerIdentifier\n"
                    "metricsBufferTimeMillis = 30000\nmetricsMaxQueueSize = 500\n")
    props = load_properties(path)
    assert props.settings["metrics_level"] == "SUMMARY"
    assert props.settings["metrics_enabled_dimensions"] == ["Operation", "ShardId", "WorkerIdentifier"]
    assert props.settings["metrics_buffer_time"] == 30.0 and props.settings["metrics_max_queue_size"] == 500
    assert not [w for w in props.warnings if "metrics" in w]
