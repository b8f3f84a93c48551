"""KCL Java and streamworker on one lease table, both ways: the rows KCL itself writes are
continued by streamworker, and the rows streamworker writes are continued by KCL (issue 12)."""

import boto3
import pytest

from ..kcl import harness
from .conftest import RecordLog, WorkerProcess, make_stream, produce, wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not harness.available(), reason="needs Java (javac) and Maven")]


@pytest.fixture(scope="session")
def kcl_home():
    return harness.install()


@pytest.fixture
def setting(aws_env, kinesis_mock, moto_server, names, tmp_path):
    kinesis = boto3.client("kinesis", endpoint_url=kinesis_mock.endpoint)
    make_stream(kinesis, names["stream"], 2)
    env = {**aws_env, "AWS_ENDPOINT_URL_KINESIS": kinesis_mock.endpoint,
           "AWS_ENDPOINT_URL_DYNAMODB": moto_server.endpoint}
    return kinesis, env, RecordLog(tmp_path / "records.jsonl")


def kcl(kcl_home, names, log, kinesis_mock, moto_server, tmp_path, worker="kcl-1"):
    return harness.KclWorker(kcl_home, names["stream"], names["app"], worker, log.path, kinesis_mock.endpoint,
                             moto_server.endpoint, tmp_path / f"{worker}.stderr")


def by_worker(log, prefix):
    return [int(e["data"]) for e in log.events("rec") if e["w"].startswith(prefix)]


def test_streamworker_continues_a_table_kcl_java_wrote(setting, kcl_home, names, kinesis_mock, moto_server, tmp_path):
    kinesis, env, log = setting
    produce(kinesis, names["stream"], 0, 200)
    k = kcl(kcl_home, names, log, kinesis_mock, moto_server, tmp_path)
    try:
        wait_for(lambda: set(by_worker(log, "kcl")) >= set(range(200)), 120, "KCL Java to process 200 records")
    finally:
        assert k.stop() == 0, k.stderr()[-3000:]
    rows = boto3.client("dynamodb", endpoint_url=moto_server.endpoint).scan(TableName=names["app"])["Items"]
    assert len(rows) == 2 and all(r["checkpoint"]["S"].isdigit() for r in rows)  # KCL's own rows
    produce(kinesis, names["stream"], 200, 100)
    w = WorkerProcess("sw-1", names, env, log, tmp_path, failover=10)
    try:
        wait_for(lambda: set(by_worker(log, "sw")) >= set(range(200, 300)), 60, "streamworker to go on")
    finally:
        w.stop()
    assert sorted(by_worker(log, "sw")) == list(range(200, 300))  # nothing KCL had checkpointed again
    assert "malformed" not in w.stderr()


def test_kcl_java_continues_a_table_streamworker_wrote(setting, kcl_home, names, kinesis_mock, moto_server, tmp_path):
    kinesis, env, log = setting
    produce(kinesis, names["stream"], 0, 200)
    w = WorkerProcess("sw-1", names, env, log, tmp_path, failover=10)
    try:
        wait_for(lambda: set(by_worker(log, "sw")) >= set(range(200)), 60, "streamworker to process 200 records")
        w.signal(15)
        assert w.proc.wait(30) == 0
    finally:
        w.stop()
    produce(kinesis, names["stream"], 200, 100)
    k = kcl(kcl_home, names, log, kinesis_mock, moto_server, tmp_path)
    try:
        wait_for(lambda: set(by_worker(log, "kcl")) >= set(range(200, 300)), 120, "KCL Java to go on")
    finally:
        k.stop()
    assert sorted(by_worker(log, "kcl")) == list(range(200, 300))  # nothing streamworker had checkpointed again
    complaints = [ln for ln in k.stderr().splitlines() if " ERROR " in ln or "Exception" in ln]
    assert not complaints, complaints[:10]
