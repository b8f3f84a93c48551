"""AWS's MultiLangDaemon with AWS's amazon-kclpy sample app, for migration tests and benchmarks.

The MultiLangDaemon of KCL 2.x/3.x (``software.amazon.kinesis:amazon-kinesis-client-multilang``)
is not served by this machine's Maven mirror; KCL 1.x ships its MultiLangDaemon inside the core
jar (``com.amazonaws:amazon-kinesis-client``), which is. So this is the daemon amazon-kclpy 1.x
users run, with amazon-kclpy 1.5.1 (its pairing) and its ``samples/sample_kclpy_app.py``, both
from PyPI's sdist (its installer would fetch the jars, so it is unpacked, not installed).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from streamworker.local.servers import cache_dir, cache_lock

from .harness import JavaProcess, fetch_jars

KCL1_VERSION = "1.15.2"
KCLPY1_VERSION = "1.5.1"
HERE = Path(__file__).parent
RECORDING_APP = HERE / "kclpy1_app.py"

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamworker.tests</groupId><artifactId>kcl-multilang</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>com.amazonaws</groupId><artifactId>amazon-kinesis-client</artifactId><version>{kcl}</version></dependency>
  </dependencies>
</project>
"""


def available() -> bool:
    return all(shutil.which(t) for t in ("java", "mvn"))


def install(version: str = KCL1_VERSION) -> Path:
    """KCL 1.x's jars (its MultiLangDaemon among them) in the cache; returns the folder."""
    home = (cache_dir() / f"kcl-multilang-{version}").resolve()
    fetch_jars(home, POM.format(kcl=version))
    return home


def kclpy_sdist(version: str) -> Path:
    """amazon-kclpy's unpacked sdist (the ``amazon_kclpy`` package and AWS's ``samples/``)."""
    cache = cache_dir() / "amazon_kclpy"
    root = cache / f"amazon_kclpy-{version}"
    with cache_lock(root.name):
        if not (root / "amazon_kclpy" / "kcl.py").is_file():
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                                "-d", tmp, f"amazon-kclpy=={version}"], check=True)
                (archive,) = Path(tmp).glob(f"amazon*kclpy-{version}.tar.gz")
                with tarfile.open(archive) as tar:
                    tar.extractall(cache, filter="data")
    return root


def child_pythonpath(sdist: Path) -> str:
    """What the recording app imports: amazon_kclpy and AWS's sample, both from the sdist."""
    return f"{sdist}:{sdist / 'samples'}"


def write_properties(path: Path, stream: str, app: str, kinesis_url: str, dynamodb_url: str,
                     worker_id: str, failover_ms: int = 10000, max_records: int | None = None,
                     child: Path = RECORDING_APP) -> Path:
    """A KCL 1.x MultiLangDaemon ``.properties`` file running ``child`` with this interpreter.

    The same file runs under ``streamworker run --properties`` (the migration being tested).
    """
    lines = [
        f"executableName = {sys.executable} {child}",
        f"streamName = {stream}",
        f"applicationName = {app}",
        "AWSCredentialsProvider = DefaultAWSCredentialsProviderChain",
        "processingLanguage = python/3",
        "initialPositionInStream = TRIM_HORIZON",
        "regionName = us-east-1",
        f"kinesisEndpoint = {kinesis_url}",
        f"dynamoDBEndpoint = {dynamodb_url}",
        "metricsLevel = NONE",
        f"workerId = {worker_id}",
        f"failoverTimeMillis = {failover_ms}",
        "idleTimeBetweenReadsInMillis = 250",
    ]
    if max_records:
        lines.append(f"maxRecords = {max_records}")
    path.write_text("\n".join(lines) + "\n")
    return path


class MultiLangDaemon(JavaProcess):
    """One KCL 1.x MultiLangDaemon process (a JVM, and a Python child per shard it holds).

    SIGTERM: KCL 1.x's shutdown hook ends every shard processor with ``shutdown`` ZOMBIE (no final
    checkpoint, leases left to expire)."""

    def __init__(self, home: Path, properties: Path, env: dict[str, str], stderr: Path,
                 jvm: tuple[str, ...] = ("-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")) -> None:
        # SDK v1 talks CBOR to Kinesis by default; kinesis-mock's plain port is used with JSON.
        cmd = ["java", *jvm, "-Dcom.amazonaws.sdk.disableCbor=true", "-cp", f"{home / 'jars'}/*",
               "com.amazonaws.services.kinesis.multilang.MultiLangDaemon", str(properties)]
        self.stderr_path = stderr
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=open(stderr, "w"))


def complaints(stderr: str) -> list[str]:
    """The daemon's SEVERE and ERROR lines, and exceptions, from before its shutdown began
    (java.util.logging prints the level on the line after the timestamp)."""
    lines = stderr.splitlines()
    end = next((i for i, ln in enumerate(lines) if "will initiate shutdown" in ln), len(lines))
    return [ln for ln in lines[:end] if ln.startswith(("SEVERE:", "ERROR:")) or "Exception" in ln]
