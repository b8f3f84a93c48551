"""IAM enforcement in front of the local AWS stand-ins, with real resource ARNs.

moto can enforce IAM, but it checks Kinesis and DynamoDB calls against resource ``*``, so a
policy scoped to one stream and one table (the documented one) would be neither proven nor refuted by
it; kinesis-mock enforces nothing. This proxy sits in front of both: it reads the caller's access
key from the SigV4 ``Authorization`` header, names the action (``service:Operation``) and the
resource the call touches as AWS's Service Authorization Reference does (the stream, the
stream's consumer, the table, the queue; ``*`` for listings), evaluates the caller's policy with
moto's own policy evaluator, and answers a refused call as AWS does (400,
``AccessDeniedException``, "User: ARN is not authorized to perform: ACTION on resource:
RESOURCE ..."). Allowed calls go to the upstream for their service (chosen by the signature's
credential scope), replies streamed through (SubscribeToShard), with kinesis-mock's missing
``initial-response`` event added in front of a subscription's events.

STS is followed as AWS does it: ``AssumeRole`` needs ``sts:AssumeRole`` on the role in the
caller's policy, ``AssumeRoleWithWebIdentity`` is unsigned (the token is the proof), and the keys
either reply hands out become a principal holding the role's policy (``roles``).
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from moto.iam.access_control import IAMPolicy, PermissionResult

from streamworker.local.fanout_shim import INITIAL_RESPONSE

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}
_CREDENTIAL = re.compile(r"Credential=([^/]+)/[^/]+/([^/]+)/([^/]+)/")
#: API operations whose permission is another's (SQS authorizes a batch as its single form)
_ACTION_OF = {"sqs:SendMessageBatch": "sqs:SendMessage", "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
              "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility"}


@dataclass
class Principal:
    arn: str
    policy: dict[str, Any]


@dataclass
class Decision:
    principal: str
    action: str
    resource: str
    allowed: bool


@dataclass
class IamProxy:
    """``upstreams``: SigV4 service name -> endpoint URL. ``principals``: access key -> who and
    their policy. Every decision is kept in ``decisions``."""

    upstreams: dict[str, str]
    principals: dict[str, Principal]
    region: str = "us-east-1"
    account: str = "123456789012"
    #: role ARN -> the policy of whoever assumes it
    roles: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: upstreams whose SubscribeToShard lacks the initial-response event (kinesis-mock)
    add_initial_response: bool = True
    decisions: list[Decision] = field(default_factory=list)
    _iterators: dict[str, str] = field(default_factory=dict)  # shard iterator / ListShards token -> stream
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                proxy._handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> IamProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def denied(self) -> list[Decision]:
        with self._lock:
            return [d for d in self.decisions if not d.allowed]

    def allowed_actions(self) -> Counter[str]:
        with self._lock:
            return Counter(d.action for d in self.decisions if d.allowed)

    # -- resources, as IAM names them ------------------------------------------------------

    def _stream_arn(self, name_or_arn: str) -> str:
        name = name_or_arn.split(":stream/", 1)[1].split("/", 1)[0] if ":stream/" in name_or_arn else name_or_arn
        return f"arn:aws:kinesis:{self.region}:{self.account}:stream/{name}"

    def resource(self, service: str, operation: str, body: dict[str, Any]) -> str:
        a = f"arn:aws:{service}:{self.region}:{self.account}"
        if service == "dynamodb":  # DynamoDB Streams signs as dynamodb too; its resource is the stream
            if "StreamArn" in body:
                return str(body["StreamArn"])
            if "ShardIterator" in body:
                with self._lock:
                    return self._iterators.get(body["ShardIterator"], f"{a}:table/UNKNOWN/stream/ShardIterator")
            return f"{a}:table/{body['TableName']}" if "TableName" in body else "*"
        if service == "sqs":
            if "QueueUrl" in body:
                return f"{a}:{body['QueueUrl'].rstrip('/').rsplit('/', 1)[1]}"
            return f"{a}:{body['QueueName']}" if "QueueName" in body else "*"
        if service == "kinesis":
            if "ConsumerARN" in body:  # .../stream/S/consumer/C:TIMESTAMP
                stream, consumer = body["ConsumerARN"].split(":stream/", 1)[1].split("/consumer/", 1)
                return f"{self._stream_arn(stream)}/consumer/{consumer}"
            if "ConsumerName" in body and operation != "RegisterStreamConsumer":
                # named by stream and name, authorized as the consumer (its creation time unknown here)
                return f"{self._stream_arn(body['StreamARN'])}/consumer/{body['ConsumerName']}:0"
            for key in ("StreamARN", "StreamName"):
                if key in body:
                    return self._stream_arn(body[key])
            with self._lock:
                for key in ("ShardIterator", "NextToken"):
                    if key in body:
                        return self._iterators.get(body[key], f"{a}:stream/UNKNOWN-{key}")
            return "*"  # ListStreams
        return "*"

    def _remember(self, service: str, operation: str, resource: str, reply: bytes) -> None:
        """Iterators and paging tokens name no stream: learn theirs from the replies that hand them out."""
        if service not in ("kinesis", "dynamodb") or operation not in ("GetShardIterator", "GetRecords", "ListShards"):
            return
        try:
            data = json.loads(reply)
        except ValueError:
            return
        with self._lock:
            for key in ("ShardIterator", "NextShardIterator", "NextToken"):
                if data.get(key):
                    self._iterators[data[key]] = resource

    # -- the proxy --------------------------------------------------------------------------

    def _sts(self, h: BaseHTTPRequestHandler, raw: bytes) -> None:
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode()).items()}
        action, role = form.get("Action", ""), form.get("RoleArn", "")
        if action == "AssumeRole":
            m = _CREDENTIAL.search(h.headers.get("Authorization", ""))
            caller = self.principals.get(m.group(1)) if m else None
            permitted = caller is not None and IAMPolicy(json.dumps(caller.policy)).is_action_permitted(
                "sts:AssumeRole", role) == PermissionResult.PERMITTED
            with self._lock:
                self.decisions.append(Decision(caller.arn if caller else "?", "sts:AssumeRole", role, permitted))
            if not permitted:
                return self._error(h, 403, "AccessDenied", f"not authorized to perform: sts:AssumeRole on resource: {role}")
        elif action != "AssumeRoleWithWebIdentity":
            return self._forward(h, "sts", action, "*", raw)
        if role not in self.roles:
            return self._error(h, 403, "AccessDenied", f"no such role here: {role}")
        self._forward(h, "sts", action, role, raw)

    def _learn_keys(self, role: str, reply: bytes) -> None:
        text = reply.decode(errors="replace")
        key = re.search(r"<AccessKeyId>([^<]+)</AccessKeyId>", text)
        who = re.search(r"<AssumedRoleUser>.*?<Arn>([^<]+)</Arn>", text, re.S)
        if key and role in self.roles:
            self.principals[key.group(1)] = Principal(who.group(1) if who else role, self.roles[role])

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        m = _CREDENTIAL.search(h.headers.get("Authorization", ""))
        target = h.headers.get("X-Amz-Target", "")
        if (m is not None and m.group(3) == "sts") or b"Action=AssumeRoleWithWebIdentity" in raw:
            return self._sts(h, raw)
        if m is None or not target:
            return self._error(h, 400, "MissingAuthenticationTokenException", "Missing Authentication Token")
        key, _, service = m.groups()
        operation = target.rsplit(".", 1)[-1]
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        action = _ACTION_OF.get(f"{service}:{operation}", f"{service}:{operation}")
        resource = self.resource(service, operation, body)
        principal = self.principals.get(key)
        if principal is None:
            return self._error(h, 400, "UnrecognizedClientException",
                               "The security token included in the request is invalid.")
        allowed = (service == "sts" and operation == "GetCallerIdentity") or \
            IAMPolicy(json.dumps(principal.policy)).is_action_permitted(action, resource) == PermissionResult.PERMITTED
        with self._lock:
            self.decisions.append(Decision(principal.arn, action, resource, allowed))
        if not allowed:
            return self._error(h, 400, "AccessDeniedException",
                               f"User: {principal.arn} is not authorized to perform: {action} on resource: {resource} "
                               f"because no identity-based policy allows the {action} action")
        self._forward(h, service, operation, resource, raw)

    def _forward(self, h: BaseHTTPRequestHandler, service: str, operation: str, resource: str, raw: bytes) -> None:
        u = urlsplit(self.upstreams[service])
        conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 80, timeout=330)
        try:
            conn.request("POST", h.path, body=raw,
                         headers={k: v for k, v in h.headers.items() if k.lower() not in _HOP})
            resp = conn.getresponse()
        except OSError:
            h.close_connection = True
            return
        streaming = operation == "SubscribeToShard" and resp.status == 200
        h.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in _HOP:
                h.send_header(k, v)
        if not streaming:
            data = resp.read()
            self._remember(service, operation, resource, data)
            if service == "sts" and resp.status == 200:
                self._learn_keys(resource, data)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
            conn.close()
            return
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        try:
            if self.add_initial_response:
                self._chunk(h, INITIAL_RESPONSE)
            while chunk := resp.read1(65536):
                self._chunk(h, chunk)
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            h.close_connection = True
        finally:
            conn.close()

    @staticmethod
    def _chunk(h: BaseHTTPRequestHandler, data: bytes) -> None:
        h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        h.wfile.flush()

    @staticmethod
    def _error(h: BaseHTTPRequestHandler, status: int, code: str, message: str) -> None:
        payload = json.dumps({"__type": code, "message": message}).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/x-amz-json-1.1")
        h.send_header("x-amzn-ErrorType", code)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)
