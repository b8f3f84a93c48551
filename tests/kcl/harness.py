"""KCL Java (the real Scheduler and lease coordinator, from Maven Central) for migration tests.

KCL's MultiLangDaemon artifact (amazon-kinesis-client-multilang) is not served here, so the
consumer is KclHarness.java: KCL core with a recording processor, compiled once into the cache.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
from pathlib import Path

from streamworker.local.servers import cache_dir, cache_lock

KCL_VERSION = "2.6.0"
KCL3_VERSION = "3.1.0"  # run with client_version="COMPATIBLE_WITH_2X" (mixed fleets) or "3X" (leader mode)
HERE = Path(__file__).parent

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamworker.tests</groupId><artifactId>kcl-java</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>software.amazon.kinesis</groupId><artifactId>amazon-kinesis-client</artifactId><version>{kcl}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>2.0.7</version></dependency>
  </dependencies>
</project>
"""


def available() -> bool:
    return all(shutil.which(t) for t in ("java", "javac", "mvn"))


def classes_dir(home: Path) -> Path:
    """Where this KclHarness.java is compiled (by content, so an edit recompiles)."""
    return home / f"classes-{hashlib.sha1((HERE / 'KclHarness.java').read_bytes()).hexdigest()[:12]}"


def fetch_jars(home: Path, pom: str) -> None:
    """The runtime jars of ``pom``'s dependencies into ``home/jars``, once (Maven Central)."""
    with cache_lock(home.name):
        if (home / ".jars-complete").is_file():
            return
        home.mkdir(parents=True, exist_ok=True)
        (home / "pom.xml").write_text(pom)
        subprocess.run(["mvn", "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={home / 'jars'}",
                        "-DincludeScope=runtime"], cwd=home, check=True, capture_output=True)
        (home / ".jars-complete").touch()


def install(version: str = KCL_VERSION) -> Path:
    """KCL's jars (Maven) and the compiled harness, in the cache; returns the folder."""
    home = (cache_dir() / f"kcl-java-{version}").resolve()
    source = HERE / "KclHarness.java"
    classes = classes_dir(home)
    fetch_jars(home, POM.format(kcl=version))
    with cache_lock(classes.name):
        if not (classes / "KclHarness.class").is_file():
            classes.mkdir(exist_ok=True)
            subprocess.run(["javac", "-nowarn", "-cp", f"{home / 'jars'}/*", "-d", str(classes), str(source)],
                           check=True, capture_output=True)
    return home


class JavaProcess:
    """A JVM started by a harness: stopped with SIGTERM (its shutdown hooks run) or killed."""

    proc: subprocess.Popen[bytes]
    stderr_path: Path

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; returns 0 when the JVM exited on the signal (128 + 15) or cleanly."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return 0 if self.proc.returncode in (0, 143) else self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stderr(self) -> str:
        return self.stderr_path.read_text()


class KclWorker(JavaProcess):
    """One KCL Java worker process; SIGTERM runs KCL's graceful shutdown (processors checkpoint
    and release)."""

    def __init__(self, home: Path, stream: str, app: str, worker_id: str, record_log: Path, kinesis_url: str,
                 dynamodb_url: str, stderr: Path, failover_ms: int = 10000, client_version: str | None = None,
                 quiet: bool = False, max_records: int | None = None, idle_ms: int | None = None, jvm: tuple[str, ...] = ("-Xmx384m", "-XX:+UseSerialGC",
                                                              "-XX:TieredStopAtLevel=1"),
                 cloudwatch_buffer_ms: int | None = None, lease_assignment: str | None = None) -> None:
        classes = classes_dir(home)
        extra = [f"-DclientVersion={client_version}"] if client_version else []
        if lease_assignment:  # KCL 3.5's leaseAssignmentStrategy: LEASE_COUNT_BASED or WORKER_UTILIZATION_AWARE
            extra.append(f"-DleaseAssignment={lease_assignment}")
        if cloudwatch_buffer_ms:  # KCL's own CloudWatch metrics, to the DynamoDB endpoint's server (moto)
            extra.append(f"-DcloudWatchMetrics={cloudwatch_buffer_ms}")
        if quiet:
            extra.append("-Dquiet=true")
        if max_records:
            extra.append(f"-DmaxRecords={max_records}")
        if idle_ms:
            extra.append(f"-DidleMillis={idle_ms}")
        cmd = ["java", *jvm, "-Daws.cborEnabled=false", *extra,
               f"-Dfailover={failover_ms}", "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
               "-Dorg.slf4j.simpleLogger.showDateTime=true", "-Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS",
               "-cp", f"{classes}:{home / 'jars'}/*", "KclHarness", stream, app, worker_id, str(record_log),
               kinesis_url, dynamodb_url]
        self.stderr_path = stderr
        self.worker_id = worker_id
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(stderr, "w"))


def complaints(stderr: str) -> list[str]:
    """KCL's ERROR/exception lines from before its own shutdown began.

    KCL 3.1's worker loop logs `LeaderDecider uninitialized` once a second after the shutdown hook
    stopped its migration state machine; that is KCL's shutdown order, not a complaint about a row.
    """
    lines = stderr.splitlines()
    end = next((i for i, ln in enumerate(lines) if "Worker shutdown requested" in ln), len(lines))
    return [ln for ln in lines[:end] if " ERROR " in ln or "Exception" in ln]
