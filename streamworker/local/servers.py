"""Start and stop the local servers on 127.0.0.1 with free ports."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

KINESIS_LOCAL_VERSION = "0.6.2"


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


class MotoServer:
    """moto in-process: DynamoDB and (basic) Kinesis at ``endpoint``."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def start(self) -> MotoServer:
        self._server.start()
        _wait_http(self.endpoint + "/moto-api/", time.monotonic() + 15)
        return self

    def reset(self) -> None:
        req = urllib.request.Request(self.endpoint + "/moto-api/reset", method="POST")
        urllib.request.urlopen(req, timeout=5)

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def kinesis_local_dir() -> Path:
    base = Path(os.environ.get("STREAMWORKER_CACHE", Path.home() / ".cache" / "streamworker"))
    return base / f"kinesis-local-{KINESIS_LOCAL_VERSION}"


def install_kinesis_local() -> Path:
    """npm-install kinesis-mock into the cache (once); return the package folder."""
    prefix = kinesis_local_dir()
    pkg = prefix / "node_modules" / "kinesis-local"
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
        pkg = install_kinesis_local()
        preload = Path(__file__).with_name("bind_loopback.js")
        env = {**os.environ, "KINESIS_MOCK_PLAIN_PORT": str(self.port),
               "KINESIS_MOCK_TLS_PORT": str(self.tls_port),
               "KINESIS_MOCK_CERT_PATH": str(pkg / "server.json"),
               "SHARD_LIMIT": str(self.shard_limit), "LOG_LEVEL": "ERROR", "ROOT_LOG_LEVEL": "ERROR",
               "CREATE_STREAM_DURATION": "100ms", "SPLIT_SHARD_DURATION": "200ms",
               "MERGE_SHARDS_DURATION": "200ms", "UPDATE_SHARD_COUNT_DURATION": "200ms"}
        self._proc = subprocess.Popen(["node", "-r", str(preload), str(pkg / "main.js")], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"kinesis-mock exited with status {self._proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise TimeoutError("kinesis-mock did not start")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)

    def __enter__(self) -> KinesisMock:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
