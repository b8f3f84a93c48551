"""kinesalite and dynalite: Node.js stand-ins for Kinesis and DynamoDB, for the benchmarks only.

A thousand shards are more than kinesis-mock serves on 2 cores (GetRecords answered after 30 s)
and a thousand leases' renewals more than moto answers in time; these two (MIT, npm, in-memory
LevelDB) answer a GetRecords or a conditional UpdateItem in about a millisecond. They lack what
the tests need (resharding lineage, SubscribeToShard, KCL 3's rows are untested on them), so the
tests stay on moto and kinesis-mock; ``benchmarks/scale.py --servers node`` uses these.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from streamworker.local.servers import (
    _wait_port,
    cache_dir,
    cache_lock,
    dies_with_this_process,
    free_port,
    start_on_free_ports,
)

KINESALITE_VERSION = "3.3.3"
DYNALITE_VERSION = "4.0.0"


def install() -> Path:
    """npm-install kinesalite and dynalite into the cache (once); return the ``.bin`` folder."""
    prefix = cache_dir() / f"node-standins-k{KINESALITE_VERSION}-d{DYNALITE_VERSION}"
    bin_dir = prefix / "node_modules" / ".bin"
    with cache_lock(prefix.name):
        if (bin_dir / "kinesalite").exists() and (bin_dir / "dynalite").exists():
            return bin_dir
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed to install kinesalite and dynalite; install Node.js")
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(prefix),
                        f"kinesalite@{KINESALITE_VERSION}", f"dynalite@{DYNALITE_VERSION}"], check=True,
                       stdout=subprocess.DEVNULL)
    return bin_dir


class NodeServer:
    """One of the two on a free port of 127.0.0.1, in memory."""

    def __init__(self, kind: str, shard_limit: int = 10) -> None:
        if kind not in ("kinesalite", "dynalite"):
            raise ValueError(kind)
        self.kind, self.shard_limit = kind, shard_limit
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> NodeServer:
        start_on_free_ports(self._start, self._new_port)
        return self

    def _new_port(self) -> None:
        self.port = free_port()

    def _start(self) -> None:
        args = ["node", "-r", str(Path(__file__).with_name("survive_resets.js")), str(install() / self.kind),
                "--port", str(self.port)]
        if self.kind == "kinesalite":
            args += ["--shardLimit", str(self.shard_limit), "--createStreamMs", "0"]
        else:
            args += ["--host", "127.0.0.1", "--createTableMs", "0", "--updateTableMs", "0"]
        self._proc = subprocess.Popen(dies_with_this_process(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self._proc, self.port, self.kind, self.stop)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)

    def __enter__(self) -> NodeServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class CountingProxy:
    """``count_proxy.js`` in front of ``upstream``: ``calls`` is a Counter of operations so far."""

    def __init__(self, upstream: str) -> None:
        u = urllib.parse.urlsplit(upstream)
        self._args = [u.hostname or "127.0.0.1", str(u.port or 80)]
        self._proc: subprocess.Popen[str] | None = None
        self.endpoint = ""

    def start(self) -> CountingProxy:
        script = Path(__file__).with_name("count_proxy.js")
        self._proc = subprocess.Popen(dies_with_this_process(["node", str(script), *self._args]),
                                      stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        port = self._proc.stdout.readline().strip()
        if not port.isdigit():
            self.stop()
            raise RuntimeError("the counting proxy did not start")
        self.endpoint = f"http://127.0.0.1:{port}"
        return self

    @property
    def calls(self) -> Counter[str]:
        with urllib.request.urlopen(f"{self.endpoint}/__counts", timeout=30) as r:
            return Counter(json.loads(r.read()))

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(5)

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
