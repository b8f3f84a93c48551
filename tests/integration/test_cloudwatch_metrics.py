"""``--cloudwatch-metrics``: KCL's metrics in CloudWatch under KCL's names, namespace and
dimensions, read back as a migrating team's dashboards and alarms read them (moto's CloudWatch,
the stand-in here). moto's GetMetricData ignores the namespace when dimensions are given (its
GetMetricStatistics does not), and the tests share one moto: GetMetricStatistics reads the
default dimensions; GetMetricData reads series made unique by the WorkerIdentifier dimension."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest

from streamworker.local import KinesisMock, MotoServer
from tests.kcl import harness

from .conftest import RecordLog, Workers, make_stream, produce, wait_for

pytestmark = pytest.mark.integration


def kcl_stat(cloudwatch: Any, namespace: str, name: str, dimensions: dict[str, str], stat: str) -> float | None:
    """The stat of a KCL metric over the last ten minutes (GetMetricStatistics, as an alarm reads it)."""
    now = datetime.now(timezone.utc)
    points = cloudwatch.get_metric_statistics(
        Namespace=namespace, MetricName=name, Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=1), Period=3600,
        Statistics=[stat])["Datapoints"]
    values = [p[stat] for p in points]
    return sum(values) if values and stat == "Sum" else (max(values) if values else None)


def kcl_data(cloudwatch: Any, namespace: str, name: str, dimensions: dict[str, str], stat: str) -> float | None:
    """The same through GetMetricData, as a dashboard widget reads it."""
    now = datetime.now(timezone.utc)
    answer = cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "m", "MetricStat": {"Metric": {
            "Namespace": namespace, "MetricName": name,
            "Dimensions": [{"Name": k, "Value": v} for k, v in dimensions.items()]},
            "Period": 3600, "Stat": stat}}],
        StartTime=now - timedelta(minutes=10), EndTime=now + timedelta(minutes=1))
    values = answer["MetricDataResults"][0]["Values"]
    return sum(values) if values and stat == "Sum" else (max(values) if values else None)


def test_kcl_metrics_reach_cloudwatch_under_kcls_names(workers: Workers, names: dict[str, str]) -> None:
    kinesis = boto3.client("kinesis")
    cloudwatch = boto3.client("cloudwatch")
    make_stream(kinesis, names["stream"], 2)
    produce(kinesis, names["stream"], 0, 120)
    shards = [s["ShardId"] for s in kinesis.list_shards(StreamName=names["stream"])["Shards"]]
    w = workers("A", extra=["--cloudwatch-metrics", "--metrics-buffer-time", "1"])
    wait_for(lambda: len(workers.log.data()) >= 120, 60, "the records processed")
    ns = names["app"]  # KCL's default namespace: the application name

    def processed() -> float:
        return sum(kcl_stat(cloudwatch, ns, "RecordsProcessed", {"Operation": "ProcessTask", "ShardId": s}, "Sum")
                   or 0 for s in shards)

    wait_for(lambda: processed() == 120, 30, "RecordsProcessed summing to the 120 records, per shard")
    assert kcl_stat(cloudwatch, ns, "DataBytesProcessed", {"Operation": "ProcessTask", "ShardId": shards[0]}, "Sum")
    wait_for(lambda: kcl_stat(cloudwatch, ns, "CurrentLeases", {"Operation": "RenewAllLeases"}, "Maximum") == 2, 30,
             "CurrentLeases 2")
    assert kcl_stat(cloudwatch, ns, "TakenLeases", {"Operation": "TakeLeases"}, "Sum") == 2
    wait_for(lambda: kcl_stat(cloudwatch, ns, "TotalLeases", {"Operation": "TakeLeases"}, "Maximum") == 2, 30,
             "TotalLeases 2 (DETAILED, the default level)")
    wait_for(lambda: kcl_stat(cloudwatch, ns, "MillisBehindLatest", {"Operation": "ApplicationTracker"},
                              "Maximum") is not None, 30, "the application's MillisBehindLatest")
    assert kcl_stat(cloudwatch, ns, "RecordProcessor.processRecords.Time",
                    {"Operation": "ProcessTask", "ShardId": shards[0]}, "Maximum") is not None
    w.signal(signal.SIGTERM)
    assert w.proc.wait(30) == 0
    assert "sending KCL's metrics to CloudWatch" in w.stderr()


def test_a_namespace_level_and_dimensions_of_ones_own(workers: Workers, names: dict[str, str]) -> None:
    kinesis = boto3.client("kinesis")
    cloudwatch = boto3.client("cloudwatch")
    make_stream(kinesis, names["stream"], 1)
    produce(kinesis, names["stream"], 0, 10)
    ns, worker = f"custom-{names['app']}", f"W-{names['app']}"
    workers(worker, extra=["--cloudwatch-metrics", "--metrics-buffer-time", "1", "--metrics-namespace", ns,
                           "--metrics-level", "SUMMARY", "--metrics-enabled-dimensions", "ALL"])
    series = {"Operation": "ProcessTask", "ShardId": "shardId-000000000000", "WorkerIdentifier": worker}
    wait_for(lambda: kcl_data(cloudwatch, ns, "RecordsProcessed", series, "Sum") == 10, 60,
             "RecordsProcessed with every dimension, in the namespace given")
    assert kcl_stat(cloudwatch, names["app"], "RecordsProcessed", series, "Sum") is None  # not the default namespace
    listed = cloudwatch.list_metrics(Namespace=ns, MetricName="RecordsProcessed")["Metrics"]
    assert [sorted(d["Name"] for d in m["Dimensions"]) for m in listed] == [
        ["Operation", "ShardId", "WorkerIdentifier"]]  # ALL: the worker too (a single stream has no StreamId)
    wait_for(lambda: "NumWorkers" in {m["MetricName"] for m in cloudwatch.list_metrics(Namespace=ns)["Metrics"]},
             30, "NumWorkers (SUMMARY)")
    sent = {m["MetricName"] for m in cloudwatch.list_metrics(Namespace=ns)["Metrics"]}
    assert {"CurrentLeases", "RecordsProcessed"} <= sent and "TotalLeases" not in sent  # DETAILED: left out


def _series(cloudwatch: Any, namespace: str) -> set[tuple[str, str, tuple[str, ...]]]:
    """(metric, Operation, dimension names) of every series in ``namespace``."""
    out = set()
    for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace=namespace):
        for m in page["Metrics"]:
            dims = {d["Name"]: d["Value"] for d in m["Dimensions"]}
            out.add((m["MetricName"], dims.get("Operation", ""), tuple(sorted(dims))))
    return out


@pytest.mark.skipif(not harness.available(), reason="needs Java (javac) and Maven for KCL Java")
def test_the_series_are_the_ones_kcl_java_publishes(workers: Workers, names: dict[str, str], kinesis_mock: KinesisMock,
                                                     moto_server: MotoServer, tmp_path: Path,
                                                     aws_env: dict[str, str]) -> None:
    """KCL Java 2.x (its own CloudWatch publisher, the MultiLangDaemon's default dimensions) and
    streamworker on a stream each: every series streamworker sends, KCL sends too, with the same
    metric name, Operation and dimension names."""
    kinesis = boto3.client("kinesis", endpoint_url=kinesis_mock.endpoint)
    cloudwatch = boto3.client("cloudwatch")
    kcl_app, sw_app = f"kcl-{names['app']}", f"sw-{names['app']}"
    for stream in (f"kcl-{names['stream']}", f"sw-{names['stream']}"):
        make_stream(kinesis, stream, 2)
        produce(kinesis, stream, 0, 40)
    log = RecordLog(tmp_path / "records.jsonl")
    sw = Workers({"stream": f"sw-{names['stream']}", "app": sw_app},
                 {**aws_env, "AWS_ENDPOINT_URL_KINESIS": kinesis_mock.endpoint}, tmp_path)
    java = harness.KclWorker(harness.install(harness.KCL_VERSION), f"kcl-{names['stream']}", kcl_app, "kcl-1",
                             log.path, kinesis_mock.endpoint, moto_server.endpoint, tmp_path / "kcl.stderr",
                             cloudwatch_buffer_ms=1000)
    try:
        sw("sw-1", extra=["--cloudwatch-metrics", "--metrics-buffer-time", "1"])
        expected = {"RecordsProcessed", "MillisBehindLatest", "CurrentLeases", "TakenLeases", "NumWorkers"}
        wait_for(lambda: expected <= {s[0] for s in _series(cloudwatch, sw_app)}, 60, "streamworker's series")
        wait_for(lambda: expected <= {s[0] for s in _series(cloudwatch, kcl_app)}, 120, "KCL's series")
        ours, kcls = _series(cloudwatch, sw_app), _series(cloudwatch, kcl_app)
        assert ours - kcls == set(), f"sent by streamworker, not by KCL: {sorted(ours - kcls)}; KCL's: {sorted(kcls)}"
    finally:
        java.stop()
        for w in sw.started:
            w.stop()
