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


def _children(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not __import__("shutil").which("setpriv"), reason="needs util-linux's setpriv")
def test_servers_die_with_a_local_command_killed_by_sigkill() -> None:
    """kill -9 of `streamworker local all --faithful` leaves no kinesis-mock or Kafka behind."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen([sys.executable, "-m", "streamworker", "local", "all", "--faithful"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "exited early"
            if line.startswith("Ctrl-C stops"):
                break
        servers = _children(proc.pid)
        assert len(servers) == 2, servers  # node (kinesis-mock) and java (Kafka, or tansu)
        proc.kill()
        proc.wait(10)
        deadline = time.monotonic() + 60  # Kafka gets SIGTERM and shuts down cleanly
        while any(_alive(p) for p in servers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in servers if _alive(p)], "a server outlived its killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()
