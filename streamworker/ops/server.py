"""``--metrics-port``: /metrics (Prometheus), /healthz (liveness), /readyz (readiness), and the
live status page (``/`` and ``/status.json``, see web.py) unless ``status_page`` is off."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from streamworker.ops import web
from streamworker.ops.http import QuietHTTPServer
from streamworker.ops.metrics import render
from streamworker.ops.view import WorkerView


class OpsServer:
    """A small HTTP server on a daemon thread, bound to ``host:port`` (port 0 picks one)."""

    def __init__(self, worker: WorkerView, registry: CollectorRegistry, port: int, host: str = "0.0.0.0", *,
                 status_page: bool = True) -> None:
        worker_ref = worker
        pages = web.routes(worker.status_document) if status_page else {}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                route = pages.get(self.path.split("?", 1)[0])
                if route is not None:
                    web.answer(self, 200, route[0], route[1]())
                    return
                if self.path.startswith("/metrics"):
                    body, status, ctype = render(registry), 200, CONTENT_TYPE_LATEST
                elif self.path.startswith("/healthz"):
                    ok, why = worker_ref.healthy()
                    body, status, ctype = why.encode() + b"\n", 200 if ok else 503, "text/plain"
                elif self.path.startswith("/readyz"):
                    ok, why = worker_ref.ready()
                    body, status, ctype = why.encode() + b"\n", 200 if ok else 503, "text/plain"
                else:
                    body, status, ctype = b"not found\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # probes every few seconds are not news

        self._server = QuietHTTPServer((host, port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="ops-http", daemon=True)

    def start(self) -> OpsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which never ran otherwise
            self._server.shutdown()
        self._server.server_close()
