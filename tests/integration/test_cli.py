"""`streamworker run` on bad input: one clear line on stderr, a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest

from streamworker.local import KafkaBroker
from streamworker.local.apache_kafka import ApacheKafka

from .conftest import PROCESSOR, make_stream

pytestmark = pytest.mark.integration


def run_cli(*args: Any, env: Any=None, timeout: Any=60) -> Any:
    return subprocess.run([sys.executable, "-m", "streamworker", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def one_clear_line(result: Any) -> Any:
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def env(aws_env: dict[str, str]) -> Any:
    import os

    return {**os.environ, **aws_env}


def test_processor_that_does_not_import(env: Any, names: dict[str, str]) -> None:
    r = run_cli("run", "no_such_module:Processor", "--stream", names["stream"], "--application-name",
                names["app"], env=env)
    assert r.returncode == 2
    assert "import failed" in one_clear_line(r) and "no_such_module" in r.stderr


def test_processor_file_without_the_class(env: Any, names: dict[str, str]) -> None:
    r = run_cli("run", PROCESSOR.replace("RecordingProcessor", "Nope"), "--stream", names["stream"],
                "--application-name", names["app"], env=env)
    assert r.returncode == 2 and "has no attribute 'Nope'" in one_clear_line(r)


def test_invalid_setting(env: Any, names: dict[str, str]) -> None:
    r = run_cli("run", PROCESSOR, "--stream", names["stream"], "--application-name", names["app"],
                "--failover-time", "-3", env=env)
    assert r.returncode == 2 and "failover_time" in one_clear_line(r)
    r = run_cli("run", PROCESSOR, "--stream", names["stream"], "--application-name", names["app"],
                "--failover-time", "soon", env=env)
    assert r.returncode == 2 and "--failover-time" in one_clear_line(r)


def test_missing_stream(env: Any, names: dict[str, str]) -> None:
    r = run_cli("run", PROCESSOR, "--stream", "does-not-exist", "--application-name", names["app"], env=env)
    assert r.returncode == 1
    assert "'does-not-exist' not found" in one_clear_line(r)


def test_unreachable_endpoint(env: Any, names: dict[str, str]) -> None:
    bad = {**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    r = run_cli("run", PROCESSOR, "--stream", names["stream"], "--application-name", names["app"], env=bad)
    assert r.returncode == 1 and "cannot reach Kinesis at http://127.0.0.1:9" in one_clear_line(r)


def test_config_file_and_env(env: Any, names: dict[str, str], tmp_path: Path) -> None:
    make_stream(boto3.client("kinesis"), names["stream"], 1)
    cfg = tmp_path / "app.toml"
    cfg.write_text(f'[streamworker]\nstream = "{names["stream"]}"\napplication_name = "{names["app"]}"\n'
                   f'processor = "{PROCESSOR}"\nfailover_time = "abc"\n')
    r = run_cli("run", "--config", str(cfg), env=env)
    assert r.returncode == 2 and "failover_time" in one_clear_line(r)
    # the environment overrides the bad file value; the worker starts, then SIGTERM stops it
    good = {**env, "STREAMWORKER_FAILOVER_TIME": "3", "RECORD_LOG": str(tmp_path / "r.jsonl")}
    p = subprocess.Popen([sys.executable, "-m", "streamworker", "run", "--config", str(cfg), "--log-format",
                          "json"], env=good, stderr=subprocess.PIPE, text=True)
    import json
    import signal

    assert p.stderr is not None
    for line in p.stderr:
        if json.loads(line).get("event") == "shard processing started":
            break
    p.send_signal(signal.SIGTERM)
    assert p.wait(30) == 0


def test_kafka_missing_topic_and_unreachable_broker(env: Any, names: dict[str, str], kafka_broker: ApacheKafka | KafkaBroker) -> None:
    r = run_cli("run", PROCESSOR, "--source", "kafka", "--topic", "no-such-topic", "--bootstrap-servers",
                kafka_broker.bootstrap, "--application-name", names["app"], env=env)
    assert r.returncode == 1 and "topic(s) no-such-topic not found" in one_clear_line(r)
    r = run_cli("run", PROCESSOR, "--source", "kafka", "--topic", "t", "--bootstrap-servers", "127.0.0.1:9",
                "--application-name", names["app"], env=env)
    assert r.returncode == 1 and "cannot reach Kafka at 127.0.0.1:9" in one_clear_line(r)
    r = run_cli("run", PROCESSOR, "--source", "kafka", "--application-name", names["app"], env=env)
    assert r.returncode == 2 and "--topic" in one_clear_line(r)


def test_the_demo_runs_on_its_embedded_servers_and_hands_over(env: Any) -> None:
    """``./dev demo``, the README's first command: two workers, a graceful handoff, every record
    processed (the demo exits 1 otherwise)."""
    r = run_cli("demo", "--duration", "12", env=env, timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "all shards" in r.stdout and "after the takeover" in r.stdout
    assert "[info" not in r.stdout + r.stderr  # the story alone; --log-level INFO adds the workers' log


def test_the_kafka_demo_runs_on_apache_kafka_where_java_and_maven_are(env: Any) -> None:
    from streamworker.local.apache_kafka import java_and_maven

    if not java_and_maven():
        pytest.skip("no Java 17+ and Maven here: the Kafka demo runs on tansu (test_the_kafka_demo_on_tansu)")
    r = run_cli("demo", "--source", "kafka", "--duration", "12", env=env, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "embedded Apache Kafka 4." in r.stdout and "all partitions" in r.stdout


def test_the_kafka_demo_on_tansu(env: Any) -> None:
    r = run_cli("demo", "--source", "kafka", "--broker", "tansu", "--duration", "12", env=env, timeout=240)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "tansu, a stand-in (--broker tansu)" in r.stdout and "all partitions" in r.stdout


def test_profile_and_endpoint_url_as_the_aws_cli_has_them(aws_env: dict[str, str], moto_server: Any,
                                                           names: dict[str, str], tmp_path: Path) -> None:
    """A user whose region and keys are in a named profile and whose endpoint is a local server:
    ``--profile`` and ``--endpoint-url``, no AWS_* variable set, for ``run`` and the tools."""
    import json
    import os
    import time

    (tmp_path / "config").write_text("[profile local]\nregion = us-west-2\n")
    (tmp_path / "credentials").write_text("[local]\naws_access_key_id = testing\naws_secret_access_key = testing\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_CONFIG_FILE=str(tmp_path / "config"), AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
               RECORD_LOG=str(tmp_path / "records.jsonl"))
    kinesis = boto3.client("kinesis", region_name="us-west-2")  # where the profile points
    make_stream(kinesis, names["stream"], 1)
    kinesis.put_record(StreamName=names["stream"], Data=b"via-profile", PartitionKey="k")
    aws = ["--profile", "local", "--endpoint-url", moto_server.endpoint]
    worker = subprocess.Popen([sys.executable, "-m", "streamworker", "run", PROCESSOR, "--stream", names["stream"],
                               "--application-name", names["app"], "--initial-position", "TRIM_HORIZON", *aws],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        log = tmp_path / "records.jsonl"
        deadline = time.monotonic() + 60
        while not (log.exists() and "via-profile" in log.read_text()):
            assert worker.poll() is None, worker.communicate()[1][-2000:]
            assert time.monotonic() < deadline, "the record was not processed"
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(30)
    r = run_cli("leases", "--application-name", names["app"], "--json", *aws, env=env)
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)["leases"]
    assert row["shard"] == "shardId-000000000000" and row["checkpoint"] not in ("TRIM_HORIZON", ""), row
    r = run_cli("leases", "--application-name", names["app"], "--profile", "nope", env=env)
    assert r.returncode == 2 and "The config profile (nope) could not be found" in one_clear_line(r)


def test_a_region_the_local_server_does_not_know_is_one_line_naming_it(env: Any, names: dict[str, str]) -> None:
    """moto answered a region it has no backend for with an HTML 500 page (and printed a
    traceback per retry); the user saw six lines of HTML."""
    r = run_cli("run", PROCESSOR, "--stream", names["stream"], "--application-name", names["app"],
                env={**env, "AWS_DEFAULT_REGION": "us-east-9"})
    line = one_clear_line(r)
    assert r.returncode == 1 and "has no region 'us-east-9' for kinesis" in line and "<html" not in line, line
