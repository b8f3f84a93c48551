"""The examples run as they are."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import boto3
import pytest

from streamworker import Worker, WorkerConfig
from streamworker.coordinator.processors import load_processor

from .conftest import make_stream, produce, wait_for

pytestmark = pytest.mark.integration


def test_idempotent_sink_stores_each_record_once_across_a_restart(aws_env: dict[str, str], names: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINK_DB", str(tmp_path / "sink.sqlite"))
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 2)
    produce(kinesis, names["stream"], 0, 300)
    sink = load_processor("examples/idempotent_sink.py:SqliteSink")
    cfg = WorkerConfig.load({"stream": names["stream"], "application_name": names["app"],
                             "initial_position": "TRIM_HORIZON", "idle_time_between_reads": 0.2})

    def rows() -> Any:
        with sqlite3.connect(tmp_path / "sink.sqlite") as db:
            try:
                return db.execute("SELECT COUNT(*), COUNT(DISTINCT data) FROM records").fetchone()
            except sqlite3.OperationalError:
                return (0, 0)

    w = Worker(cfg, sink)
    w.start()
    wait_for(lambda: rows() == (300, 300), 30, "300 rows")
    w.shutdown(15)
    # a second run over the same lease table resumes from the checkpoints
    produce(kinesis, names["stream"], 300, 100)
    w2 = Worker(cfg.model_copy(update={"worker_id": "second"}), sink)
    w2.start()
    wait_for(lambda: rows() == (400, 400), 30, "400 rows")
    w2.shutdown(15)


def test_metrics_processor_checkpoints_on_shutdown(aws_env: dict[str, str], names: dict[str, str]) -> None:
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 1)
    kinesis.put_records(StreamName=names["stream"], Records=[
        {"Data": b'{"host": "h", "metric": "cpu", "value": 1.5}', "PartitionKey": "cpu"},
        {"Data": b"not json", "PartitionKey": "cpu"}])
    cfg = WorkerConfig.load({"stream": names["stream"], "application_name": names["app"],
                             "initial_position": "TRIM_HORIZON", "idle_time_between_reads": 0.2})
    w = Worker(cfg, load_processor("examples/metrics_processor.py:MetricsProcessor"))
    w.start()
    wait_for(lambda: any(s.records == 2 for s in w.status()), 30, "both records")
    w.shutdown(15)
    item = boto3.client("dynamodb").scan(TableName=names["app"])["Items"][0]
    assert item["checkpoint"]["S"].isdigit() and "leaseOwner" not in item
