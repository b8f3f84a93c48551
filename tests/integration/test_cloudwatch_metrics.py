"""``--cloudwatch-metrics``: KCL's metrics in CloudWatch under KCL's names, namespace and
dimensions, read back as a migrating team's dashboards and alarms read them (moto's CloudWatch,
the stand-in here). moto's GetMetricData ignores the namespace when dimensions are given (its
GetMetricStatistics does not), and the tests share one moto: GetMetricStatistics reads the
default dimensions; GetMetricData reads series made unique by the WorkerIdentifier dimension."""

from __future__ import annotations

import signal
from datetime import datetime, timedelta, timezone
from typing import Any

import boto3
import pytest

from .conftest import Workers, make_stream, produce, wait_for

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
