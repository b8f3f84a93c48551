"""A KCL application on a DynamoDB table's stream through AWS's dynamodb-streams-kinesis-adapter
(StreamsAdapterHarness.java: KCL 1.14 + adapter 1.6.0, from Maven Central, compiled once into the
cache), for the DynamoDB Streams migration tests."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from streamworker.local.servers import cache_dir, cache_lock

from .harness import JavaProcess, fetch_jars

ADAPTER_VERSION = "1.6.0"
HERE = Path(__file__).parent
SOURCE = HERE / "StreamsAdapterHarness.java"
POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamworker.tests</groupId><artifactId>kcl-streams-adapter</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>com.amazonaws</groupId><artifactId>dynamodb-streams-kinesis-adapter</artifactId><version>{v}</version></dependency>
  </dependencies>
</project>
"""


def install(version: str = ADAPTER_VERSION) -> tuple[Path, Path]:
    """The jars and the compiled harness in the cache; returns (jars folder, classes folder)."""
    home = (cache_dir() / f"kcl-streams-adapter-{version}").resolve()
    fetch_jars(home, POM.format(v=version))
    classes = home / f"classes-{hashlib.sha1(SOURCE.read_bytes()).hexdigest()[:12]}"
    with cache_lock(classes.name):
        if not (classes / "StreamsAdapterHarness.class").is_file():
            classes.mkdir(exist_ok=True)
            subprocess.run(["javac", "-nowarn", "-cp", f"{home / 'jars'}/*", "-d", str(classes), str(SOURCE)],
                           check=True, capture_output=True)
    return home / "jars", classes


class StreamsAdapterWorker(JavaProcess):
    """One KCL + adapter worker process; SIGTERM runs KCL's graceful shutdown."""

    def __init__(self, stream_arn: str, app: str, worker_id: str, record_log: Path, dynamodb_url: str,
                 stderr: Path, failover_ms: int = 5000) -> None:
        jars, classes = install()
        cmd = ["java", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Dcom.amazonaws.sdk.disableCbor=true",
               f"-Dfailover={failover_ms}", "-cp", f"{classes}:{jars}/*", "StreamsAdapterHarness", stream_arn, app,
               worker_id, str(record_log), dynamodb_url]
        self.stderr_path = stderr
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(stderr, "w"))


def complaints(stderr: str) -> list[str]:
    """SEVERE lines and exceptions before KCL's shutdown began (java.util.logging format)."""
    lines = stderr.splitlines()
    end = next((i for i, ln in enumerate(lines) if "shutdown" in ln.lower() and "INFO" in ln), len(lines))
    return [ln for ln in lines[:end] if ln.startswith(("SEVERE:", "ERROR:")) or "Exception" in ln]
