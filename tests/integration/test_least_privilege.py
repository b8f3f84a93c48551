"""The documented least-privilege IAM policy (docs/security.md), proven: ``streamworker run`` processes signed as a
principal holding exactly that policy (its JSON read from that page, placeholders filled in),
with IAM enforced on every call by tests/iam_proxy.py (moto's policy evaluator, real resource
ARNs), in each setting the page names; and a missing permission is one line naming the action
and the resource, at start (exit 1) and at run time (issue 14, item 2)."""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from streamworker.local import KinesisMock, MotoServer

from ..iam_proxy import IamProxy, Principal
from .conftest import PROCESSOR, RecordLog, make_stream, produce, wait_for

pytestmark = pytest.mark.integration

POLICY_PAGE = Path(__file__).resolve().parents[2] / "docs" / "security.md"
REGION, ACCOUNT = "us-east-1", "123456789012"
WORKER_KEY, ADMIN_KEY = "AKIAWORKER0000000001", "AKIAADMIN00000000001"
ADMIN_ARN = f"arn:aws:iam::{ACCOUNT}:user/admin"


def documented_policy() -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The documented worker policy and its per-feature statements (by Sid), as JSON."""
    blocks = re.findall(r"```json\n(.*?)```", POLICY_PAGE.read_text(), re.S)
    base = next(json.loads(b) for b in blocks if '"Sid": "OwnTheLeaseTable"' in b)
    extra = next(json.loads(b) for b in blocks if '"Sid": "FanOutConsumer"' in b)
    return base, {s["Sid"]: s for s in extra}


def fill(policy: Any, **names: str) -> Any:
    text = json.dumps(policy)
    for placeholder, value in {"REGION": REGION, "ACCOUNT": ACCOUNT, **names}.items():
        text = re.sub(rf"\b{placeholder}\b", value, text)
    return json.loads(text)


def policy_for(stream: str, app: str, *features: str, without: tuple[str, ...] = (), drop: tuple[str, ...] = (),
               **names: str) -> dict[str, Any]:
    base, extra = documented_policy()
    policy = copy.deepcopy(base)
    policy["Statement"] = [st for st in policy["Statement"] if st["Sid"] not in drop]
    policy["Statement"] += [extra[f] for f in features]
    for statement in policy["Statement"]:
        statement["Action"] = [a for a in statement["Action"] if a not in without]
    filled: dict[str, Any] = fill(policy, STREAM=stream, APPLICATION=app, **names)
    return filled


class Setting:
    def __init__(self, proxy: IamProxy, names: dict[str, str], tmp: Path) -> None:
        self.proxy, self.names, self.tmp = proxy, names, tmp
        self.log = RecordLog(tmp / "records.jsonl")
        admin = boto3.Session(aws_access_key_id=ADMIN_KEY, aws_secret_access_key="x", region_name=REGION)
        self.kinesis = admin.client("kinesis", endpoint_url=proxy.endpoint)
        self.ddb = admin.client("dynamodb", endpoint_url=proxy.endpoint)
        self.sqs: Any = admin.client("sqs", endpoint_url=proxy.endpoint)
        self.procs: list[subprocess.Popen[bytes]] = []

    def grant(self, policy: dict[str, Any]) -> None:
        self.proxy.principals[WORKER_KEY] = Principal(f"arn:aws:iam::{ACCOUNT}:user/streamworker", policy)

    def worker(self, *args: str, env: dict[str, str] | None = None, static_keys: bool = True) -> subprocess.Popen[bytes]:
        """``streamworker run`` signing with the worker's key (``static_keys``), or with what
        ``env`` sets up for boto3's credential chain."""
        penv = {**os.environ, "AWS_ENDPOINT_URL": self.proxy.endpoint, "AWS_DEFAULT_REGION": REGION,
                "RECORD_LOG": str(self.log.path), "WORKER_NAME": "w1", "STREAMWORKER_TAKE_INTERVAL": "0.5"}
        for k in ("AWS_ENDPOINT_URL_KINESIS", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE", "AWS_SESSION_TOKEN",
                  "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            penv.pop(k, None)
        if static_keys:
            penv.update(AWS_ACCESS_KEY_ID=WORKER_KEY, AWS_SECRET_ACCESS_KEY="x")
        penv.update(env or {})
        p = subprocess.Popen([sys.executable, "-m", "streamworker", "run", PROCESSOR,
                              "--application-name", self.names["app"], "--worker-id", "w1", "--failover-time", "3",
                              "--initial-position", "TRIM_HORIZON", "--idle-time-between-reads", "0.2",
                              "--log-format", "json", *args], env=penv, stdout=subprocess.DEVNULL,
                             stderr=open(self.tmp / "w1.stderr", "w"))
        self.procs.append(p)
        return p

    def stderr(self) -> str:
        return (self.tmp / "w1.stderr").read_text()

    def errors(self) -> list[str]:
        return [ln for ln in self.stderr().splitlines() if ln.startswith("streamworker: error:")]

    def processed(self) -> list[int]:
        return sorted(int(e["data"]) for e in self.log.events("rec"))

    def stop(self, p: subprocess.Popen[bytes]) -> None:
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0, self.stderr()[-3000:]

    def no_denials(self) -> None:
        denied = self.proxy.denied()
        assert not denied, denied[:5]


@pytest.fixture
def setting(kinesis_mock: KinesisMock, moto_server: MotoServer, names: dict[str, str], tmp_path: Path) -> Iterator[Setting]:
    admin = Principal(ADMIN_ARN,
                      {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})
    upstreams = {"kinesis": kinesis_mock.endpoint, "dynamodb": moto_server.endpoint, "sqs": moto_server.endpoint,
                 "sts": moto_server.endpoint}  # STS: moto's, which issues the role credentials
    with IamProxy(upstreams, {ADMIN_KEY: admin}, REGION, ACCOUNT) as proxy:
        s = Setting(proxy, names, tmp_path)
        yield s
        for p in s.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)


def run_through(s: Setting, policy: dict[str, Any], *args: str, count: int = 60) -> None:
    s.grant(policy)
    w = s.worker(*args)
    wait_for(lambda: s.processed() == list(range(count)) or w.poll() is not None, 60, "every record processed")
    assert w.poll() is None, s.stderr()[-3000:]
    s.stop(w)
    assert s.processed() == list(range(count))
    s.no_denials()


def test_the_documented_policy_runs_a_worker_that_creates_its_table(setting: Setting) -> None:
    s, stream, app = setting, setting.names["stream"], setting.names["app"]
    make_stream(s.kinesis, stream, 2)
    produce(s.kinesis, stream, 0, 60)
    run_through(s, policy_for(stream, app), "--stream", stream)
    assert s.proxy.allowed_actions()["dynamodb:CreateTable"] == 1  # the worker created it, as the worker


def test_without_create_table_once_the_table_exists(setting: Setting) -> None:
    s, stream, app = setting, setting.names["stream"], setting.names["app"]
    make_stream(s.kinesis, stream, 2)
    produce(s.kinesis, stream, 0, 60)
    s.ddb.create_table(TableName=app, KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                       AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                       BillingMode="PAY_PER_REQUEST")
    run_through(s, policy_for(stream, app, without=("dynamodb:CreateTable",)), "--stream", stream)


def test_with_enhanced_fan_out(setting: Setting) -> None:
    s, stream, app = setting, setting.names["stream"], setting.names["app"]
    make_stream(s.kinesis, stream, 2)
    produce(s.kinesis, stream, 0, 60)
    run_through(s, policy_for(stream, app, "FanOut", "FanOutConsumer"), "--stream", stream, "--retrieval", "fanout")
    assert s.proxy.allowed_actions()["kinesis:SubscribeToShard"] >= 2


def test_with_a_stream_pattern(setting: Setting) -> None:
    s, prefix, app = setting, setting.names["stream"], setting.names["app"]
    for n in (1, 2):
        make_stream(s.kinesis, f"{prefix}-{n}", 1)
    produce(s.kinesis, f"{prefix}-1", 0, 30)
    produce(s.kinesis, f"{prefix}-2", 30, 30)
    run_through(s, policy_for(f"{prefix}-*", app, "StreamPattern"), "--stream-pattern", f"{prefix}-.*")


@pytest.mark.parametrize("target", ["kinesis", "sqs"])
def test_with_a_dead_letter_stream_or_queue(setting: Setting, target: str, monkeypatch: pytest.MonkeyPatch) -> None:
    s, stream, app = setting, setting.names["stream"], setting.names["app"]
    dlq = f"{stream}-dlq"
    make_stream(s.kinesis, stream, 1)
    if target == "kinesis":
        make_stream(s.kinesis, dlq, 1)
        policy = policy_for(stream, app, "DeadLetterStream", DEAD_LETTER_STREAM=dlq)
    else:
        s.sqs.create_queue(QueueName=dlq)
        policy = policy_for(stream, app, "DeadLetterQueue", QUEUE=dlq)
    produce(s.kinesis, stream, 0, 20)
    monkeypatch.setenv("POISON", "7")
    s.grant(policy)
    w = s.worker("--stream", stream, "--on-error", "bisect", "--dead-letter", f"{target}:{dlq}",
                 "--processor-retries", "0")
    wait_for(lambda: s.processed() == [n for n in range(20) if n != 7] or w.poll() is not None, 60,
             "every record but the poison one processed")
    s.stop(w)
    if target == "kinesis":
        it = s.kinesis.get_shard_iterator(StreamName=dlq, ShardId="shardId-000000000000",
                                          ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        letters = [json.loads(r["Data"]) for r in s.kinesis.get_records(ShardIterator=it)["Records"]]
    else:
        url = s.sqs.get_queue_url(QueueName=dlq)["QueueUrl"]
        letters = [json.loads(m["Body"]) for m in s.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]]
    assert [ln["data_base64"] for ln in letters] == ["Nw=="]  # base64 of b"7"
    s.no_denials()


@pytest.mark.parametrize("missing", ["kinesis:ListShards", "dynamodb:Scan", "kinesis:SubscribeToShard"])
def test_a_permission_missing_at_start_is_one_line_and_exit_1(setting: Setting, missing: str) -> None:
    s, stream, app = setting, setting.names["stream"], setting.names["app"]
    make_stream(s.kinesis, stream, 2)
    fanout = missing == "kinesis:SubscribeToShard"
    s.grant(policy_for(stream, app, *(("FanOut", "FanOutConsumer") if fanout else ()), without=(missing,)))
    w = s.worker("--stream", stream, *(("--retrieval", "fanout") if fanout else ()))
    assert w.wait(60) == 1, s.stderr()[-3000:]
    resource = {"kinesis:ListShards": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}",
                "dynamodb:Scan": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{app}",
                "kinesis:SubscribeToShard": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}/consumer/{app}:"}[missing]
    (line,) = s.errors()
    assert f"not allowed to perform {missing} on {resource}" in line, line
    assert "Traceback" not in s.stderr()


@pytest.mark.parametrize("revoked", ["kinesis:GetRecords", "dynamodb:UpdateItem"])
def test_a_permission_revoked_while_running_is_one_line_and_exit_1(setting: Setting, revoked: str) -> None:
    s, stream, app = setting, setting.names["stream"], setting.names["app"]
    make_stream(s.kinesis, stream, 2)
    produce(s.kinesis, stream, 0, 20)
    s.grant(policy_for(stream, app))
    w = s.worker("--stream", stream)
    wait_for(lambda: s.processed() == list(range(20)), 60, "the first records")
    s.grant(policy_for(stream, app, without=(revoked,)))
    assert w.wait(60) == 1, s.stderr()[-3000:]
    resource = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}" if revoked.startswith("kinesis") else \
        f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{app}"
    (line,) = s.errors()
    assert f"not allowed to perform {revoked} on {resource}" in line, line
    denied = [d for d in s.proxy.denied() if d.action == revoked]
    assert 1 <= len(denied) <= 10  # no retry storm against a refusal


# -- the credential chain, each way a deployment gets credentials, under the same policy ----------

ROLE = f"arn:aws:iam::{ACCOUNT}:role/orders-consumer"


def signed_only_by(s: Setting, principal_prefix: str) -> None:
    """Every Kinesis and DynamoDB call of the worker was signed with the role's credentials."""
    with s.proxy._lock:
        signers = {d.principal for d in s.proxy.decisions
                   if d.action.split(":")[0] in ("kinesis", "dynamodb") and d.principal != ADMIN_ARN}
    assert signers and all(p.startswith(principal_prefix) for p in signers), signers


def test_an_assumed_role_holds_the_policy_the_worker_only_assumes(setting: Setting) -> None:
    """--role-arn: the worker's own key may only assume the role; the role holds the documented policy."""
    s, stream, app = setting, setting.names["stream"], setting.names["app"]
    make_stream(s.kinesis, stream, 2)
    produce(s.kinesis, stream, 0, 60)
    s.proxy.roles[ROLE] = policy_for(stream, app)
    run_through(s, {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": ROLE}]}, "--stream", stream, "--role-arn", ROLE)
    signed_only_by(s, f"arn:aws:sts::{ACCOUNT}:assumed-role/orders-consumer/")


def test_an_eks_pod_with_a_web_identity_role(setting: Setting, tmp_path: Path) -> None:
    """EKS IRSA: no keys at all, only the token file and role boto3's chain reads (AssumeRoleWithWebIdentity)."""
    s, stream, app = setting, setting.names["stream"], setting.names["app"]
    make_stream(s.kinesis, stream, 2)
    produce(s.kinesis, stream, 0, 60)
    token = tmp_path / "token"
    token.write_text("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6b3JkZXJzIn0.c2ln")
    s.proxy.roles[ROLE] = policy_for(stream, app)
    w = s.worker("--stream", stream, static_keys=False, env={
        "AWS_ROLE_ARN": ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token), "AWS_ROLE_SESSION_NAME": "orders-pod-1"})
    wait_for(lambda: s.processed() == list(range(60)) or w.poll() is not None, 60, "every record processed")
    s.stop(w)
    assert s.processed() == list(range(60)), s.stderr()[-3000:]
    s.no_denials()
    signed_only_by(s, f"arn:aws:sts::{ACCOUNT}:assumed-role/orders-consumer/orders-pod-1")


class TaskRoleEndpoint:
    """The ECS agent's credentials endpoint: new keys at every fetch, expiring in ``life`` seconds,
    only for the authorization token the container was given."""

    def __init__(self, proxy: IamProxy, policy: dict[str, Any], token: str, life: float) -> None:
        import datetime
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from threading import Thread

        self.fetches = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                if self.headers.get("Authorization") != token:
                    self.send_response(401)
                    self.end_headers()
                    return
                endpoint.fetches += 1
                key = f"ASIATASKROLE{endpoint.fetches:08d}"
                proxy.principals[key] = Principal(f"arn:aws:sts::{ACCOUNT}:assumed-role/orders-task/ecs-task", policy)
                expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=life)
                body = json.dumps({"AccessKeyId": key, "SecretAccessKey": "x", "Token": "t", "RoleArn": ROLE,
                                   "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v2/credentials/task"
        Thread(target=self.server.serve_forever, daemon=True).start()


def test_an_ecs_task_role_refreshed_as_it_expires(setting: Setting) -> None:
    s, stream, app = setting, setting.names["stream"], setting.names["app"]
    make_stream(s.kinesis, stream, 2)
    produce(s.kinesis, stream, 0, 60)
    task = TaskRoleEndpoint(s.proxy, policy_for(stream, app), token="container-secret", life=20)
    try:
        w = s.worker("--stream", stream, static_keys=False, env={
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": task.url, "AWS_CONTAINER_AUTHORIZATION_TOKEN": "container-secret"})
        wait_for(lambda: s.processed() == list(range(60)) or w.poll() is not None, 60, "every record processed")
        # credentials lasting 20 s are fetched again when 10 s are left; the worker keeps signing
        wait_for(lambda: task.fetches > 1 or w.poll() is not None, 60, "the task role's credentials refreshed")
        produce(s.kinesis, stream, 60, 20)
        wait_for(lambda: s.processed() == list(range(80)) or w.poll() is not None, 60, "records after the refresh")
        s.stop(w)
    finally:
        task.server.shutdown()
    assert s.processed() == list(range(80)), s.stderr()[-3000:]
    s.no_denials()
    signed_only_by(s, f"arn:aws:sts::{ACCOUNT}:assumed-role/orders-task/")
    assert task.fetches > 1


def test_with_a_dynamodb_stream(setting: Setting) -> None:
    """--source dynamodb-streams: the table's stream instead of a Kinesis stream."""
    s, table, app = setting, f"{setting.names['stream']}-orders", setting.names["app"]
    s.ddb.create_table(TableName=table, KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                       AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                       BillingMode="PAY_PER_REQUEST",
                       StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    for n in range(10):
        s.ddb.put_item(TableName=table, Item={"id": {"S": f"o{n}"}})
    s.grant(policy_for("unused", app, "DynamoDBStreamsTable", "DynamoDBStreams", drop=("ReadTheStream",),
                       SOURCE_TABLE=table))
    w = s.worker("--source", "dynamodb-streams", "--table", table)
    wait_for(lambda: len(s.log.events("rec")) >= 10 or w.poll() is not None, 60, "ten changes")
    assert w.poll() is None, s.stderr()[-3000:]
    s.stop(w)
    assert [json.loads(e["data"])["dynamodb"]["Keys"]["id"]["S"] for e in s.log.events("rec")] == [
        f"o{n}" for n in range(10)]
    s.no_denials()
    assert s.proxy.allowed_actions()["dynamodb:GetRecords"] >= 1
