"""A TCP proxy in front of a server (a Kafka broker), with the faults a network produces:
``blackhole`` (bytes stop moving both ways and connections stay open: no RST, no FIN, as when a
route or a security group drops packets), ``latency`` (each chunk held back), and ``cut`` (every
open connection closed at once, mid-reply). A broker must advertise the proxy's address for its
clients to stay behind it (``advertised.listeners``).

It also measures what its clients lived through: ``silent_for_at_most`` says how long, at most,
requests waited while no reply came back on any connection, so a test can tell a client's
"no reply for N s" that the network (or a starved machine) caused from one the client made up."""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import threading
import time


class TcpProxy:
    def __init__(self, upstream: tuple[str, int], port: int = 0) -> None:
        self.upstream = upstream
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", port))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._flowing = threading.Event()
        self._flowing.set()
        self.latency = 0.0
        #: (start, end) of each stretch in which a request had gone upstream and no reply had
        #: come back on any connection; ``_waiting_since`` is the open one.
        self._silences: list[tuple[float, float]] = []
        self._waiting_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tcpproxy", daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        return self

    # -- faults ------------------------------------------------------------------------------

    def blackhole(self) -> None:
        """Stop moving bytes (new connections are accepted and then hang too)."""
        self._flowing.clear()

    def restore(self) -> None:
        self.latency = 0.0
        self._flowing.set()

    def cut(self) -> None:
        """Close every open connection now (both sides see the connection end mid-stream)."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    # -- what the clients lived through --------------------------------------------------------

    def longest_silence(self, since: float, until: float | None = None) -> float:
        """The longest stretch between ``since`` and ``until`` (``time.monotonic()`` values; until
        now by default) in which requests had gone upstream and no reply came back on any
        connection, an open one included."""
        until = time.monotonic() if until is None else until
        with self._lock:
            spans = list(self._silences)
            if self._waiting_since is not None:
                spans.append((self._waiting_since, until))
        return max((min(end, until) - max(start, since) for start, end in spans
                    if end > since and start < until), default=0.0)

    def _forwarded(self, upstream: bool) -> None:
        now = time.monotonic()
        with self._lock:
            if upstream:
                if self._waiting_since is None:
                    self._waiting_since = now
            elif self._waiting_since is not None:
                self._silences.append((self._waiting_since, now))
                self._waiting_since = None

    # -- plumbing ----------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._lock:
                self._pairs.append((client, server))
            for src, dst, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(target=self._pump, args=(src, dst, upstream), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        """Read from ``src`` as it comes; a second thread writes each chunk to ``dst`` once it is
        due (pipelined, as a slow link delays every packet by the same time)."""
        queue: collections.deque[tuple[float, bytes]] = collections.deque()
        ready = threading.Condition()
        done = threading.Event()

        def send() -> None:
            try:
                while True:
                    with ready:
                        while not queue and not done.is_set():
                            ready.wait(0.2)
                        if not queue:
                            return
                        due, data = queue[0]
                    wait = due - time.monotonic()
                    # a blackhole holds what was read too: nothing gets through, nothing is lost
                    if wait > 0 or not self._flowing.is_set():
                        if self._stop.is_set():
                            return
                        time.sleep(min(max(wait, 0.0), 0.05) or 0.05)
                        continue
                    with ready:
                        queue.popleft()
                    dst.sendall(data)
                    self._forwarded(upstream)
            except OSError:
                pass
            finally:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_RDWR)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([src], [], [], 0.2)
                if not readable:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                with ready:
                    queue.append((time.monotonic() + self.latency, data))
                    ready.notify()
        except (OSError, ValueError):  # ValueError: select on a socket ``cut`` closed meanwhile
            pass
        finally:
            done.set()
            with ready:
                ready.notify()
            sender.join(5)
            with contextlib.suppress(OSError):
                src.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        self.cut()
