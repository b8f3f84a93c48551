"""Faults on the wire and in the lease table, with real `streamworker run` processes where the
defect was seen that way: replies cut short, credentials that fail for a while, permissions
refused, a table deleted, latency, hand-edited rows (issue 11)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest
from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef
from structlog.testing import capture_logs

from streamworker import Worker, WorkerConfig
from streamworker.local import MotoServer

from ..faultproxy import FaultProxy
from .conftest import RecordLog, WorkerProcess, make_stream, produce, wait_for
from .inprocess import Collected, CollectingProcessor

pytestmark = pytest.mark.integration


def table_items(app: str) -> dict[str, dict[str, AttributeValueTypeDef]]:
    ddb = boto3.client("dynamodb")
    try:
        items = ddb.scan(TableName=app, ConsistentRead=True)["Items"]
    except ddb.exceptions.ResourceNotFoundException:
        return {}  # not created yet
    return {i["leaseKey"]["S"]: i for i in items}


def http_get(url: str) -> tuple[Any, Any]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except urllib.error.URLError:
        return 0, ""  # not listening yet


def free_port() -> Any:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_cut_or_garbled_get_records_reply_never_ends_an_open_shard(aws_env: dict[str, str], names: dict[str, str], tmp_path: Path, moto_server: MotoServer) -> None:
    """Defect 1: a 200 reply cut short (or garbled) parses as a reply without NextShardIterator;
    it used to end the shard (SHARD_END written, the rest never delivered)."""
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 2)
    produce(kinesis, names["stream"], 0, 200)
    log = RecordLog(tmp_path / "records.jsonl")
    with FaultProxy(moto_server.endpoint) as proxy:
        with_records = lambda status, body: status == 200 and b'"Records": [{' in body  # noqa: E731
        proxy.add("GetRecords", "truncate", times=2, when=with_records)
        proxy.add("GetRecords", "garble", times=2, when=with_records)
        w = WorkerProcess("W1", names, {**aws_env, "AWS_ENDPOINT_URL_KINESIS": proxy.endpoint}, log, tmp_path,
                          failover=10)
        try:
            wait_for(lambda: set(log.data()) >= set(range(200)), 60, "every record, through the faults")
            produce(kinesis, names["stream"], 200, 50)
            wait_for(lambda: set(log.data()) >= set(range(250)), 60, "records produced after the faults")
            assert sum(r.hits for r in proxy.rules) == 4
            checkpoints = {k: i["checkpoint"]["S"] for k, i in table_items(names["app"]).items()}
            assert "SHARD_END" not in checkpoints.values(), checkpoints
            assert not log.events("shard_ended")
            assert "GetRecords reply without Records" in w.stderr()
        finally:
            w.stop()


CREDENTIAL_SCRIPT = """#!/bin/sh
if [ -e "{flag}" ]; then echo "credential service unavailable" >&2; exit 1; fi
printf '{{"Version": 1, "AccessKeyId": "testing", "SecretAccessKey": "testing", "SessionToken": "t", "Expiration": "%s"}}' "$(date -u -d '+3 sec' +%Y-%m-%dT%H:%M:%SZ)"
"""


def credential_env(aws_env: dict[str, str], tmp_path: Path) -> Any:
    """A profile whose credential_process fails while the flag file exists. Its credentials last
    2-3 s, less than the outage, so the worker must fetch them during it."""
    flag = tmp_path / "credentials-down"
    script = tmp_path / "creds.sh"
    script.write_text(CREDENTIAL_SCRIPT.format(flag=flag))
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    config = tmp_path / "aws-config"
    config.write_text(f"[profile outage]\ncredential_process = {script}\nregion = us-east-1\n")
    env = dict(aws_env)
    env.update({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "",  # empty: botocore skips them
                "AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                "AWS_PROFILE": "outage"})
    return env, flag


def test_a_short_credential_outage_halts_nothing_and_keeps_every_line_json(aws_env: dict[str, str], names: dict[str, str], tmp_path: Path) -> None:
    """Defects 2, 3 and 10: a 3 s credential outage used to halt every shard for good (leases
    still held), spin the coordinator, and put plain-text tracebacks in the JSON log."""
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 2)
    produce(kinesis, names["stream"], 0, 100)
    env, flag = credential_env(aws_env, tmp_path)
    env["STREAMWORKER_LOG_LEVEL"] = "INFO"
    log = RecordLog(tmp_path / "records.jsonl")
    w = WorkerProcess("W1", names, env, log, tmp_path, failover=10)
    try:
        wait_for(lambda: set(log.data()) >= set(range(100)), 60, "the first 100 records")
        flag.touch()
        produce(kinesis, names["stream"], 100, 100)
        time.sleep(3)  # the outage itself (a duration under test, not a synchronisation)
        flag.unlink()
        wait_for(lambda: set(log.data()) >= set(range(200)), 60, "the records produced during the outage")
        assert w.proc.poll() is None
        assert not log.events("lease_lost")
        stderr = w.stderr()
        assert "halted" not in stderr
        lines = [ln for ln in stderr.splitlines() if ln.strip()]
        not_json = [ln for ln in lines if not ln.startswith("{")]
        assert not not_json, not_json[:5]
        events = [json.loads(ln) for ln in lines]
        assert any("Credential" in json.dumps(e) for e in events)  # the outage was seen and logged
        errors = [e for e in events if e.get("level") == "error"]
        assert len(errors) <= 4, errors  # no retry storm: it used to be hundreds of tracebacks
    finally:
        w.stop()


def test_access_denied_at_run_time_is_one_clear_error_and_exit_1(aws_env: dict[str, str], names: dict[str, str], tmp_path: Path, moto_server: MotoServer) -> None:
    """Defect 3: dynamodb:UpdateItem denied used to spin at ~30 calls/s forever."""
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 2)
    produce(kinesis, names["stream"], 0, 20)
    log = RecordLog(tmp_path / "records.jsonl")
    with FaultProxy(moto_server.endpoint) as proxy:
        arn = f"arn:aws:dynamodb:us-east-1:123456789012:table/{names['app']}"
        proxy.add("UpdateItem", "error", status=400, code="AccessDeniedException",
                  message=f"User: arn:aws:iam::123456789012:user/worker is not authorized to perform: "
                          f"dynamodb:UpdateItem on resource: {arn} because no identity-based policy allows it")
        w = WorkerProcess("W1", names, {**aws_env, "AWS_ENDPOINT_URL_DYNAMODB": proxy.endpoint}, log, tmp_path,
                          failover=10)
        try:
            assert w.proc.wait(30) == 1
            last = w.stderr().strip().splitlines()[-1]
            assert last.startswith("streamworker: error: lease table") and "dynamodb:UpdateItem" in last
            assert arn in last
            assert proxy.calls["UpdateItem"] <= 10, proxy.calls
        finally:
            w.stop()


def test_a_lease_table_deleted_while_running_stops_the_worker_clearly(aws_env: dict[str, str], names: dict[str, str], tmp_path: Path) -> None:
    """Defect 3: a deleted lease table used to be retried ~60 times a second, forever."""
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 2)
    produce(kinesis, names["stream"], 0, 50)
    log = RecordLog(tmp_path / "records.jsonl")
    w = WorkerProcess("W1", names, aws_env, log, tmp_path, failover=10)
    try:
        wait_for(lambda: set(log.data()) >= set(range(50)), 60, "the records")
        boto3.client("dynamodb").delete_table(TableName=names["app"])
        assert w.proc.wait(30) == 1
        last = w.stderr().strip().splitlines()[-1]
        assert last.startswith("streamworker: error:") and f"lease table {names['app']!r} does not exist" in last
        assert len(log.events("lease_lost")) == 2  # the processors were told; nothing was checkpointed
    finally:
        w.stop()


def test_forty_idle_leases_survive_400_ms_of_latency_per_call(aws_env: dict[str, str], names: dict[str, str], moto_server: MotoServer) -> None:
    """Defect 4: renewals one after another (40 x 400 ms = 16 s, twice the 8 s validity of a
    10 s failover time) lost leases although every write succeeded. In parallel, up to 20 at
    once, they keep every lease with seconds to spare, unless the lease table itself answers
    slower than that slack (a machine so loaded that moto stands still: the proxy measures it)."""
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 40)
    out = Collected()
    with FaultProxy(moto_server.endpoint) as proxy:
        w = proxied_worker(names, proxy, out, {"failover_time": 10, "initial_position": "TRIM_HORIZON", "idle_time_between_reads": 1.5})
        try:
            wait_for(lambda: len(w.coordinator.held_keys()) == 40, 60, "40 leases held")
            proxy.add("*", "delay", seconds=0.4)
            renewals, since = proxy.calls["UpdateItem"], time.monotonic()
            held: list[int] = []
            deadline = since + 25  # 2.5 failover times with the latency on
            while time.monotonic() < deadline:
                held.append(len(w.coordinator.held_keys()))
                time.sleep(0.5)
            # the defect's mark: one renewal at a time through the proxy; the fix: many at once
            assert proxy.in_flight_at_most("UpdateItem", since) >= 10
            slowest = max(b - a for op, a, b in proxy.spans if op == "UpdateItem" and a >= since)
            # A lease stays valid 8 s after its renewal began. A renew cycle waits for its slowest
            # call S, and 40 leases on 20 threads take two calls in line: a lease renewed at t is
            # renewed again by t + max(2S, 10/3) + 2S, within 8 s for any S up to 2 s. (Up to
            # 8 - 10/3 s, the bound this test had, a run under double load lost leases at S = 4.4 s
            # with every call answered: the slack is the cycle's, not one call's.)
            if slowest <= 2.0:
                assert set(held) == {40} and w.coordinator.stats.lost == 0, (held, slowest)
                # every lease renewed about every 3.3 s (300 in all); one after another, 16 s a round: 62
                assert proxy.calls["UpdateItem"] - renewals >= 160
            else:
                print(f"the lease table took {slowest:.1f} s to answer one renewal: leases lost to that are expected")
        finally:
            proxy.rules.clear()
            w.shutdown(20)


def test_every_lost_lease_is_counted_and_logged_with_its_reason(aws_env: dict[str, str], names: dict[str, str], moto_server: MotoServer) -> None:
    """Defect 5: leases whose shard consumer saw the expiry first were forgotten silently."""
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 4)
    out = Collected()
    with FaultProxy(moto_server.endpoint) as proxy:
        w = proxied_worker(names, proxy, out, {"failover_time": 3, "initial_position": "TRIM_HORIZON", "metrics_port": 0})
        try:
            wait_for(lambda: len(w.coordinator.held_keys()) == 4, 30, "4 leases held")
            with capture_logs() as logs:
                rule = proxy.add("UpdateItem", "error", status=500, code="InternalServerError", message="down")
                wait_for(lambda: not w.coordinator.held_keys(), 20, "the leases given up")
                proxy.remove(rule)
            assert w.coordinator.stats.lost == 4
            lost = [e for e in logs if e["event"] == "lease lost"]
            assert len(lost) == 4 and all(e["log_level"] == "warning" and e["reason"] for e in lost)
            status, body = http_get(f"http://127.0.0.1:{w._ops.port}/metrics")
            assert "streamworker_leases_lost_total 4.0" in body
        finally:
            w.shutdown(20)


def proxied_worker(names: dict[str, str], proxy: Any, out: Any, settings: Any) -> Any:
    """An in-process worker whose lease table is reached through ``proxy``."""
    cfg = WorkerConfig.load({"stream": names["stream"], "application_name": names["app"], "worker_id": "W1",
                             "initial_position": "TRIM_HORIZON", **settings})
    # the client as the worker makes its own: a pool for its parallel renewals (boto3's default
    # of 10 connections would open and discard one per renewal beyond ten)
    client = boto3.client("dynamodb", endpoint_url=proxy.endpoint,
                          config=botocore.config.Config(max_pool_connections=50))
    w = Worker(cfg, lambda: CollectingProcessor("W1", out), dynamodb_client=client)
    w.start()
    return w


def run_cli(*args: Any, env: Any) -> Any:
    return subprocess.run([sys.executable, "-m", "streamworker", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_a_halted_shard_is_visible_in_health_leases_and_status_and_can_be_released(aws_env: dict[str, str], names: dict[str, str], tmp_path: Path) -> None:
    """Defect 6: with every shard halted /healthz said 200 and `leases` said "owned"."""
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 1)
    produce(kinesis, names["stream"], 0, 10)
    log = RecordLog(tmp_path / "records.jsonl")
    port = free_port()
    env = {**aws_env, "FAIL_RECORDS": "1"}
    # released after 20 s: the checks of the halted state below (two CLI processes) must come
    # before it, and took more than 6 s under two suites at once
    w = WorkerProcess("W1", names, env, log, tmp_path, failover=10,
                      extra=["--metrics-port", str(port), "--processor-retries", "1",
                             "--release-halted-after", "20"])
    try:
        wait_for(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 503, 30, "/healthz failing")
        status, body = http_get(f"http://127.0.0.1:{port}/healthz")
        assert "1 shard(s) halted" in body and "poison batch" in body
        assert http_get(f"http://127.0.0.1:{port}/readyz")[0] == 503
        leases = json.loads(run_cli("leases", "--application-name", names["app"], "--json", env=aws_env).stdout)
        (row,) = leases["leases"]
        assert row["state"] == "HALTED" and "poison batch" in row["halted"] and row["owner"] == "W1"
        text = run_cli("status", "--application-name", names["app"], "--count", "1", env=aws_env).stdout
        assert "HALTED" in text and "poison batch" in text
        # released after 20 s, and not taken back by the same worker for as long
        wait_for(lambda: "leaseOwner" not in table_items(names["app"])["shardId-000000000000"], 45, "the release")
        assert "swHalted" not in table_items(names["app"])["shardId-000000000000"]
    finally:
        w.stop()


def test_status_judges_expiry_as_the_coordinators_do(aws_env: dict[str, str], names: dict[str, str], tmp_path: Path) -> None:
    """Defect 7: a live idle worker's leases flipped between owned and expired? every refresh."""
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 2)
    log = RecordLog(tmp_path / "records.jsonl")
    w = WorkerProcess("W1", names, aws_env, log, tmp_path, failover=3)
    try:
        wait_for(lambda: len(table_items(names["app"])) == 2 and all(
            "leaseOwner" in i for i in table_items(names["app"]).values()), 30, "leases taken")
        live = run_cli("status", "--application-name", names["app"], "--count", "6", "--interval", "1",
                       "--failover-time", "3", env=aws_env).stdout
        assert "owned" in live and "expired" not in live.replace("(expired: counter still", "")
        # piped, with neither --count nor --watch: printed once (a capture used to grow forever)
        once = run_cli("status", "--application-name", names["app"], env=aws_env)
        assert once.returncode == 0 and once.stdout.count("lease table") == 1, once.stdout + once.stderr
        watch = subprocess.Popen([sys.executable, "-m", "streamworker", "status", "--application-name", names["app"],
                                  "--watch", "--interval", "0.2"], env={**os.environ, **aws_env},
                                 stdout=subprocess.PIPE, text=True)
        try:
            assert watch.stdout is not None
            headers = 0
            while headers < 3:  # --watch refreshes, piped or not
                line = watch.stdout.readline()
                assert line, "status --watch ended"
                headers += line.startswith("lease table")
        finally:
            watch.kill()
            watch.wait(10)
        w.proc.send_signal(signal.SIGKILL)
        w.proc.wait(10)
        dead = run_cli("status", "--application-name", names["app"], "--count", "5", "--interval", "1",
                       "--failover-time", "3", env=aws_env).stdout
        last = dead.split("lease table")[-1]
        assert last.count(" expired") == 2, last
    finally:
        w.stop()


def test_hand_edited_rows_get_one_clear_error_each(aws_env: dict[str, str], names: dict[str, str], tmp_path: Path) -> None:
    """Defect 11: a counter stored as a string was read as 0 and every take failed silently; a
    garbage checkpoint made reads fail with no hint at the row."""
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 3)
    produce(kinesis, names["stream"], 0, 30)
    ddb = boto3.client("dynamodb")
    from streamworker.leases.dynamodb.table import LeaseTable

    LeaseTable(ddb, names["app"]).ensure_table()
    ddb.put_item(TableName=names["app"], Item={
        "leaseKey": {"S": "shardId-000000000000"}, "leaseCounter": {"S": "7"}, "checkpoint": {"S": "TRIM_HORIZON"},
        "checkpointSubSequenceNumber": {"N": "0"}, "ownerSwitchesSinceCheckpoint": {"N": "0"}})
    ddb.put_item(TableName=names["app"], Item={
        "leaseKey": {"S": "shardId-000000000001"}, "leaseCounter": {"N": "3"}, "checkpoint": {"S": "garbage"},
        "checkpointSubSequenceNumber": {"N": "0"}, "ownerSwitchesSinceCheckpoint": {"N": "0"}})
    log = RecordLog(tmp_path / "records.jsonl")
    port = free_port()
    w = WorkerProcess("W1", names, aws_env, log, tmp_path, failover=3,
                      extra=["--metrics-port", str(port)])
    try:
        wait_for(lambda: log.events("init") and any(e["shard"] == "shardId-000000000002" for e in log.events("rec")),
                 30, "the healthy shard processed")
        wait_for(lambda: "cannot be read from" in w.stderr(), 30, "the garbage checkpoint reported")
        time.sleep(3)  # several take cycles: the malformed row must be reported once, not per scan
        stderr = w.stderr()
        malformed = [ln for ln in stderr.splitlines() if "'shardId-000000000000' is malformed" in ln]
        assert len(malformed) == 1 and "leaseCounter must be a whole number (N), got S '7'" in malformed[0]
        bad = [json.loads(ln) for ln in stderr.splitlines() if "cannot be read from" in ln and ln.startswith("{")]
        assert bad and bad[0]["event"] == "shard halted" and "shardId-000000000001" in bad[0]["reason"]
        assert "delete it to restart the shard" in bad[0]["reason"]
        assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 503
        rows = json.loads(run_cli("leases", "--application-name", names["app"], "--json", env=aws_env).stdout)
        states = {r["shard"]: r["state"] for r in rows["leases"]}
        assert states == {"shardId-000000000000": "MALFORMED", "shardId-000000000001": "HALTED",
                          "shardId-000000000002": "owned"}
    finally:
        w.stop()



def test_an_unexpected_lease_table_error_backs_off_instead_of_spinning(aws_env: dict[str, str], names: dict[str, str], moto_server: MotoServer) -> None:
    """Defect 3: an error that is neither transient nor fatal used to be retried every 10 ms."""
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 2)
    out = Collected()
    with FaultProxy(moto_server.endpoint) as proxy:
        w = proxied_worker(names, proxy, out, {"failover_time": 10, "initial_position": "TRIM_HORIZON"})
        try:
            wait_for(lambda: len(w.coordinator.held_keys()) == 2, 30, "2 leases held")
            with capture_logs() as logs:
                rule = proxy.add("Scan", "error", status=400, code="ValidationException", message="odd")
                before = proxy.calls["Scan"]
                time.sleep(6)  # the fault's duration under test: how many scans does it cost?
                proxy.remove(rule)
                scans = proxy.calls["Scan"] - before
            assert 2 <= scans <= 12, scans  # backoff 0.2 s doubling to 10 s; it used to be ~600
            failed = [e for e in logs if "take cycle failed" in e["event"]]
            assert len(failed) == scans and failed[0].get("exc_info") and all(
                "exc_info" not in e for e in failed[1:])
            assert w.coordinator.held_keys() and w.healthy()[0]  # renewals went on meanwhile
            wait_for(lambda: any(e["event"] == "lease take cycle recovered" for e in logs) or
                     proxy.calls["Scan"] > before + scans, 15, "scans again")
        finally:
            w.shutdown(20)
