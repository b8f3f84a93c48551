"""KCL 3.5.1's MultiLangDaemon (what amazon-kclpy 3.x apps run under), with amazon-kclpy 3.2.0's
own sample app, for migration tests and the benchmark against KCL as users upgrade to it today.

Maven Central does not serve ``amazon-kinesis-client-multilang`` here, but it serves KCL's core;
the steering folder beside the project (``../shared/kcl-multilang``: AWS's multilang sources at
v3.5.1 and ``build.sh``) compiles the daemon against that core into the cache, once. A clone
without that folder skips these tests with that reason; ``STREAMWORKER_KCL_MULTILANG_SRC`` names
another copy of the sources (e.g. ``amazon-kinesis-client/amazon-kinesis-client-multilang`` of a
KCL checkout with ``build.sh`` beside it).

KCL 3 speaks HTTP/2 to Kinesis even on ``http://`` (it opens with the HTTP/2 preface): Kinesis
comes from kinesis-mock, DynamoDB from moto.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from streamworker.local.servers import cache_dir, cache_lock

from .harness import JavaProcess

KCL3_VERSION = "3.5.1"
KCLPY3_VERSION = "3.2.0"
HERE = Path(__file__).parent
ROOT = HERE.parent.parent
RECORDING_APP = HERE / "kclpy3_app.py"


def source_dir() -> Path | None:
    """The multilang sources and their build.sh, or None where this clone has none."""
    given = os.environ.get("STREAMWORKER_KCL_MULTILANG_SRC")
    src = Path(given) if given else ROOT.parent / "shared" / "kcl-multilang"
    return src if (src / "build.sh").is_file() and (src / "src" / "main" / "java").is_dir() else None


def unavailable() -> str | None:
    """Why KCL 3.5.1's MultiLangDaemon cannot run here (None: it can)."""
    if not all(shutil.which(t) for t in ("java", "mvn")):
        return "needs Java and Maven"
    if source_dir() is None:
        return ("needs KCL 3.5.1's multilang sources (../shared/kcl-multilang, or STREAMWORKER_KCL_MULTILANG_SRC): "
                "Maven Central does not serve amazon-kinesis-client-multilang")
    return None


def install() -> Path:
    """Build the daemon into the cache (once per version of the sources); returns its folder,
    which holds ``lib/`` (the classpath) and ``run-daemon.sh``."""
    src = source_dir()
    if src is None:
        raise RuntimeError(unavailable() or "no multilang sources")
    digest = hashlib.sha1()
    for f in sorted([src / "build.sh", *(src / "src").rglob("*")]):
        if f.is_file():
            digest.update(f.relative_to(src).as_posix().encode() + f.read_bytes())
    home = (cache_dir() / f"kcl-multilang-{KCL3_VERSION}-{digest.hexdigest()[:12]}").resolve()
    with cache_lock(home.name):
        if not (home / ".complete").is_file():
            result = subprocess.run(["bash", str(src / "build.sh"), str(src), str(home)], capture_output=True,
                                    text=True, env={**os.environ, "KCL_VERSION": KCL3_VERSION})
            if result.returncode != 0:
                raise RuntimeError(f"building KCL {KCL3_VERSION}'s MultiLangDaemon failed: "
                                   f"{(result.stdout + result.stderr)[-2000:]}")
            (home / ".complete").touch()
    return home


def write_properties(path: Path, stream: str, app: str, kinesis_url: str, dynamodb_url: str, worker_id: str,
                     failover_ms: int = 10000, client_version: str | None = None, child: Path = RECORDING_APP,
                     max_records: int | None = None, idle_ms: int = 250, shard_sync_ms: int = 1000) -> Path:
    """A KCL 3.x MultiLangDaemon ``.properties`` (as amazon-kclpy 3.x's sample has it, pointed at
    the local servers); the same file runs under ``streamworker run --properties``.
    ``client_version``: ``CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X`` for KCL 2's algorithm."""
    lines = [
        f"executableName = {sys.executable} {child}",
        f"streamName = {stream}",
        f"applicationName = {app}",
        "AWSCredentialsProvider = DefaultCredentialsProvider",
        "processingLanguage = python/3",
        "initialPositionInStream = TRIM_HORIZON",
        "regionName = us-east-1",
        f"kinesisEndpoint = {kinesis_url}",
        f"dynamoDBEndpoint = {dynamodb_url}",
        "retrievalMode = POLLING",
        "metricsLevel = NONE",
        f"workerId = {worker_id}",
        f"failoverTimeMillis = {failover_ms}",
        f"idleTimeBetweenReadsInMillis = {idle_ms}",
        f"shardSyncIntervalMillis = {shard_sync_ms}",
        "shutdownGraceMillis = 30000",
    ]
    if client_version:
        lines.append(f"clientVersionConfig = {client_version}")
    if max_records:
        lines.append(f"maxRecords = {max_records}")
    path.write_text("\n".join(lines) + "\n")
    return path


class MultiLangDaemon3(JavaProcess):
    """One KCL 3.5.1 MultiLangDaemon process (a JVM, and a Python child per shard it holds).
    SIGTERM runs KCL's graceful shutdown (children get shutdownRequested, then leases go)."""

    def __init__(self, home: Path, properties: Path, env: dict[str, str], stderr: Path,
                 jvm: tuple[str, ...] = ("-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")) -> None:
        cmd = ["java", *jvm, "-Daws.cborEnabled=false", "-cp", f"{home / 'lib'}/*",
               "software.amazon.kinesis.multilang.MultiLangDaemon", "--properties-file", str(properties)]
        self.stderr_path = stderr
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(stderr, "w"))


def complaints(stderr: str) -> list[str]:
    """KCL's ERROR lines and exceptions from before its shutdown began."""
    lines = stderr.splitlines()
    end = next((i for i, ln in enumerate(lines) if "Worker shutdown requested" in ln
                or "Requesting a graceful shutdown" in ln), len(lines))
    return [ln for ln in lines[:end] if " ERROR " in ln or "Exception" in ln]
