"""`streamworker local`: the servers a user runs a processor against, in the foreground."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import boto3
import pytest

pytestmark = pytest.mark.integration


def test_local_all_prints_what_to_paste_serves_it_and_stops_on_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen([sys.executable, "-m", "streamworker", "local", "all"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    assert proc.stdout is not None and proc.stderr is not None
    try:
        deadline = time.monotonic() + 180  # a fresh machine fetches Apache Kafka with Maven first
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"exited early: {proc.stderr.read()}"
            lines.append(line)
            if line.startswith("Ctrl-C stops"):
                break
        text = "".join(lines)
        assert "ready. In another shell:" in text
        exports = dict(re.findall(r"export ([A-Z_]+)=(\S+)", text))
        assert exports["AWS_ACCESS_KEY_ID"] == "testing"
        kinesis = boto3.client("kinesis", endpoint_url=exports["AWS_ENDPOINT_URL"], region_name="us-east-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing")
        kinesis.create_stream(StreamName="local-check", ShardCount=1)
        assert "local-check" in kinesis.list_streams()["StreamNames"]
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": exports["STREAMWORKER_BOOTSTRAP_SERVERS"]})
        assert admin.list_topics(timeout=20).brokers
        from streamworker.local.apache_kafka import java_and_maven

        assert ("Kafka: Apache Kafka" if java_and_maven() else "Kafka: tansu") in text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
