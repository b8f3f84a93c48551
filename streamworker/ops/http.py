"""The HTTP server under the worker's endpoints (``/metrics``, probes, the status page)."""

from __future__ import annotations

import sys
from http.server import ThreadingHTTPServer

import structlog

log = structlog.get_logger("streamworker.ops")


class QuietHTTPServer(ThreadingHTTPServer):
    """A client that goes away mid-request (a scraper's timeout, a probe killed) is not an error;
    any other failure of a request is one log line. socketserver printed a traceback to stderr
    for either, in the middle of a worker's JSON log."""

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            return
        log.warning("a request to the worker's HTTP endpoint failed", client=str(client_address),
                    error=repr(exc)[:300])
