"""The worker's HTTP endpoints: a client that goes away is not an error, and no request failure
prints a traceback into the worker's log."""

from __future__ import annotations

import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from structlog.testing import capture_logs

from streamworker.ops.http import QuietHTTPServer


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        if self.path == "/boom":
            raise ValueError("a bug in a handler")
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Any:
    s = QuietHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=s.serve_forever, daemon=True)
    t.start()
    yield s
    s.shutdown()
    s.server_close()


def test_a_client_reset_mid_request_prints_nothing(server: Any, capfd: pytest.CaptureFixture[str]) -> None:
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        with capture_logs() as logs:
            server.handle_error(None, ("127.0.0.1", 1))
    assert logs == [] and capfd.readouterr().err == ""
    # and through the socket: a request cut off by a reset (RST), then a whole one served
    c = socket.create_connection(server.server_address)
    c.sendall(b"GET / HTTP/1.1\r\nHo")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/", timeout=10) as r:
        assert r.status == 200
    assert "Traceback" not in capfd.readouterr().err


def test_a_failing_handler_is_one_log_line(server: Any, capfd: pytest.CaptureFixture[str]) -> None:
    with capture_logs() as logs:
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/boom", timeout=10)
        deadline = time.monotonic() + 10
        while not logs and time.monotonic() < deadline:
            time.sleep(0.01)  # handle_error runs on the server's thread after the reply is cut
    assert [e["event"] for e in logs] == ["a request to the worker's HTTP endpoint failed"]
    assert "ValueError" in logs[0]["error"] and logs[0]["log_level"] == "warning"
    assert "Traceback" not in capfd.readouterr().err
