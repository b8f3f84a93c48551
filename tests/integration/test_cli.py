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
