"""The live status page: ``/`` (one HTML file, its tables filled on the server, plain JavaScript
refreshing them, no build step) and
``/status.json`` (what it shows, for scripts too), served by a worker's ops server or by
``streamworker status --web`` for any application from its lease table alone."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any, TextIO

from streamworker.ops import page
from streamworker.ops.http import QuietHTTPServer

#: path -> (content type, body maker)
Routes = dict[str, tuple[str, Callable[[], bytes]]]


def routes(document: Callable[[], dict[str, Any]]) -> Routes:
    def html() -> bytes:
        return page.render_or_empty(document)

    return {"/": ("text/html; charset=utf-8", html),
            "/index.html": ("text/html; charset=utf-8", html),
            "/status.json": ("application/json", lambda: json.dumps(document()).encode())}


def answer(handler: BaseHTTPRequestHandler, status: int, ctype: str, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Cache-Control", "no-store")
    handler.end_headers()
    handler.wfile.write(body)


class StatusServer:
    """The status page alone on ``host:port`` (port 0 picks one), on a daemon thread."""

    def __init__(self, document: Callable[[], dict[str, Any]], port: int = 0, host: str = "127.0.0.1") -> None:
        table = routes(document)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                route = table.get(self.path.split("?", 1)[0])
                if route is None:
                    answer(self, 404, "text/plain", b"not found\n")
                    return
                answer(self, 200, route[0], route[1]())

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = QuietHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="status-web", daemon=True)

    def start(self) -> StatusServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()


def serve_until_interrupted(document: Callable[[], dict[str, Any]], title: str, *, port: int, host: str,
                            open_browser: bool, out: TextIO) -> int:
    """``streamworker status --web``: serve the page in the foreground (and open it) until Ctrl-C or SIGTERM."""
    import signal
    import webbrowser

    stopped = threading.Event()
    # Handlers of our own rather than KeyboardInterrupt: a shell starts a background job with SIGINT
    # ignored, and Python then never raises it; SIGTERM (systemd, kubectl) stops the page the same way.
    previous = {s: signal.signal(s, lambda *_: stopped.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    server = StatusServer(document, port, host).start()
    try:
        out.write(f"status page for {title}: {server.url}  (Ctrl-C stops it)\n")
        out.flush()
        if open_browser:
            webbrowser.open(server.url)
        stopped.wait()
    finally:
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
