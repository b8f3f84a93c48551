"""An HTTP proxy in front of an AWS endpoint (moto, kinesis-mock) that injects faults by API
operation, as seen on the wire: replies cut short or garbled, canned errors, added latency.

Rules match the ``X-Amz-Target`` operation (``GetRecords``, ``UpdateItem``, or ``*``) and, where
given, the upstream reply (``when(status, body)``). Every request is counted by operation.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


class _QuietServer(ThreadingHTTPServer):
    """A client that goes away mid-request (a process killed with -9) is not an error here."""

    def handle_error(self, request: object, client_address: object) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@dataclass
class Rule:
    operation: str
    #: truncate (send half the body, then close), garble (a body that is not JSON), error
    #: (a canned AWS error, upstream not called), delay (``seconds`` before forwarding)
    action: str
    times: int | None = None
    status: int = 400
    code: str = ""
    message: str = ""
    seconds: float = 0.0
    when: Callable[[int, bytes], bool] | None = None
    hits: int = 0

    def matches(self, operation: str) -> bool:
        return (self.times is None or self.hits < self.times) and self.operation in ("*", operation)


class FaultProxy:
    def __init__(self, upstream: str) -> None:
        u = urlsplit(upstream)
        self.upstream_host, self.upstream_port = u.hostname or "127.0.0.1", u.port or 80
        self.rules: list[Rule] = []
        self.calls: Counter[str] = Counter()
        #: (operation, arrived, answered) of every request answered, in ``time.monotonic()``
        self.spans: list[tuple[str, float, float]] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                proxy._handle(self)

            do_GET = do_POST  # noqa: N815
            do_PUT = do_POST  # noqa: N815
            do_DELETE = do_POST  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, operation: str, action: str, **kw: object) -> Rule:
        rule = Rule(operation, action, **kw)  # type: ignore[arg-type]
        with self._lock:
            self.rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        with self._lock:
            if rule in self.rules:
                self.rules.remove(rule)

    def _take(self, operation: str, phase: str, status: int = 0, body: bytes = b"") -> Rule | None:
        with self._lock:
            for rule in self.rules:
                before = rule.action in ("error", "delay")
                if (phase == "before") != before or not rule.matches(operation):
                    continue
                if rule.when is not None and (phase == "before" or not rule.when(status, body)):
                    continue
                rule.hits += 1
                return rule
        return None

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        target = h.headers.get("X-Amz-Target", "")
        operation = target.rsplit(".", 1)[-1] if target else h.command
        arrived = time.monotonic()
        with self._lock:
            self.calls[operation] += 1
        try:
            self._forward(h, operation, body)
        finally:
            with self._lock:
                self.spans.append((operation, arrived, time.monotonic()))

    def in_flight_at_most(self, operation: str, since: float) -> int:
        """The most requests of ``operation`` the proxy held at once (arrived after ``since``)."""
        with self._lock:
            spans = [(a, b) for op, a, b in self.spans if op == operation and a >= since]
        events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
        most = now = 0
        for _, step in events:
            now += step
            most = max(most, now)
        return most

    def _forward(self, h: BaseHTTPRequestHandler, operation: str, body: bytes) -> None:
        rule = self._take(operation, "before")
        if rule is not None and rule.action == "delay":
            time.sleep(rule.seconds)  # the fault itself: latency on the wire
        elif rule is not None and rule.action == "error":
            payload = json.dumps({"__type": rule.code, "message": rule.message}).encode()
            self._reply(h, rule.status, [("Content-Type", "application/x-amz-json-1.0"),
                                         ("x-amzn-ErrorType", rule.code)], payload)
            return
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
            conn.request(h.command, h.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP]
            status = resp.status
        except OSError:
            h.close_connection = True
            return
        finally:
            conn.close()
        rule = self._take(operation, "after", status, data)
        if rule is not None and rule.action == "truncate":
            h.send_response(status)
            for k, v in out_headers:
                h.send_header(k, v)
            h.send_header("Content-Length", str(len(data)))
            h.send_header("Connection", "close")
            h.end_headers()
            h.wfile.write(data[: len(data) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        if rule is not None and rule.action == "garble":
            data = data[: len(data) // 2] + b"\x00\xff not json"
        self._reply(h, status, out_headers, data)

    @staticmethod
    def _reply(h: BaseHTTPRequestHandler, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        h.send_response(status)
        for k, v in headers:
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)
