"""Apache Kafka itself (KRaft: one combined broker + controller) on 127.0.0.1, from Maven Central.

The broker's jars are fetched once with Maven (a small pom and ``dependency:copy-dependencies``,
no tarball download) into the cache, with Kafka's command-line tools (``kafka-tools``:
``kafka-consumer-groups`` is ``org.apache.kafka.tools.consumer.group.ConsumerGroupCommand``); each
start formats a log dir if it is new, writes a ``server.properties`` and runs ``kafka.Kafka`` on
Java 17+. ``stop()`` is a clean shutdown
(SIGTERM), so a ``restart()`` keeps every record and committed offset.
"""

from __future__ import annotations

import base64
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
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

KAFKA_VERSION = "4.1.1"
SLF4J_VERSION = "1.7.36"  # the slf4j-api Kafka 4.1 brings: a binding of the same line

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>streamworker.local</groupId><artifactId>apache-kafka</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>{kafka}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>{slf4j}</version></dependency>
  </dependencies>
</project>
"""


def java_and_maven() -> bool:
    """Whether this machine can run Apache Kafka here (a JVM and Maven on the PATH)."""
    return shutil.which("java") is not None and shutil.which("mvn") is not None


def install_apache_kafka(version: str = KAFKA_VERSION) -> Path:
    """Fetch the broker's jars with Maven into the cache (once); return the jar folder."""
    home = (cache_dir() / f"apache-kafka-{version}").resolve()
    jars = home / "jars"
    done = home / ".complete"
    pom = _POM.format(kafka=version, slf4j=SLF4J_VERSION)
    with cache_lock(home.name):
        if done.is_file() and (home / "pom.xml").read_text() == pom:
            return jars
        mvn = shutil.which("mvn")
        if mvn is None or shutil.which("java") is None:
            raise RuntimeError("Apache Kafka needs Java 17+ and Maven on the PATH (or use tansu: the dev extra)")
        home.mkdir(parents=True, exist_ok=True)
        done.unlink(missing_ok=True)
        shutil.rmtree(jars, ignore_errors=True)
        (home / "pom.xml").write_text(pom)
        result = subprocess.run([mvn, "-q", "-B", "dependency:copy-dependencies", f"-DoutputDirectory={jars}",
                                 "-DincludeScope=runtime"], cwd=home, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"fetching Apache Kafka {version} with Maven failed: "
                               f"{(result.stdout + result.stderr).strip()[-2000:]}")
        done.touch()
    return jars


class ApacheKafka:
    """An Apache Kafka broker on 127.0.0.1 at ``bootstrap``; ``log_dir`` survives ``restart()``.
    ``properties`` are added to (or override) the broker's ``server.properties``; ``listeners``
    replaces the PLAINTEXT listener (e.g. for SASL)."""

    kind = "apache-kafka"

    def __init__(self, log_dir: str | Path | None = None, *, port: int | None = None,
                 properties: dict[str, str] | None = None, version: str = KAFKA_VERSION,
                 heap: str = "512m", sasl_users: dict[str, str] | None = None) -> None:
        #: With ``sasl_users``: a SASL_PLAINTEXT listener at ``sasl_bootstrap`` offering
        #: SCRAM-SHA-256 (those users) and OAUTHBEARER (the broker's unsecured-JWT mode).
        self.sasl_users = dict(sasl_users or {})
        # ports chosen here may be taken by another process before the broker binds them: the
        # first start then tries new ones; a port given, or a restart, keeps its port
        self._may_move = port is None
        self._ports(port)
        self._tmp = None if log_dir is not None else tempfile.TemporaryDirectory(prefix="sw-kafka-")
        self.log_dir = Path(log_dir if log_dir is not None else self._tmp.name)  # type: ignore[union-attr]
        self.properties = dict(properties or {})
        self.version = version
        self.heap = heap
        self._proc: subprocess.Popen[bytes] | None = None

    def _ports(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.controller_port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.sasl_port = free_port() if self.sasl_users else None
        self.sasl_bootstrap = f"127.0.0.1:{self.sasl_port}" if self.sasl_port else None

    def server_properties(self) -> str:
        listeners = f"PLAINTEXT://127.0.0.1:{self.port}"
        sasl: dict[str, str] = {}
        if self.sasl_port:
            listeners += f",SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}"
            prefix = "listener.name.sasl_plaintext"
            sasl = {
                "sasl.enabled.mechanisms": "SCRAM-SHA-256,OAUTHBEARER",
                f"{prefix}.scram-sha-256.sasl.jaas.config":
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                f"{prefix}.oauthbearer.sasl.jaas.config":
                    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
                    'unsecuredLoginStringClaim_sub="broker";',
            }
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{self.controller_port}",
            "listeners": f"{listeners},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": listeners,
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            **sasl,
            "log.dirs": str(self.log_dir / "data"),
            "num.partitions": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "1000",
            "group.consumer.min.session.timeout.ms": "1000",
            "group.consumer.min.heartbeat.interval.ms": "500",
            "auto.create.topics.enable": "true",
            "delete.topic.enable": "true",
            **self.properties,
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def _java(self, jars: Path, *args: str, **kw: Any) -> list[str]:
        return ["java", f"-Xmx{self.heap}", "-Xss1m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-Djava.awt.headless=true",
                "-cp", f"{jars}/*", *args]

    def start(self, timeout: float = 90.0) -> ApacheKafka:
        start_on_free_ports(lambda: self._start(timeout), self._ports if self._may_move else None)
        self._may_move = False  # started: a restart comes back on the same port
        return self

    def _start(self, timeout: float) -> None:
        jars = install_apache_kafka(self.version)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        config = self.log_dir / "server.properties"
        config.write_text(self.server_properties())
        if not (self.log_dir / "data" / "meta.properties").is_file():
            cluster = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            scram = [f'--add-scram=SCRAM-SHA-256=[name={user},password="{password}"]'
                     for user, password in self.sasl_users.items()]
            fmt = subprocess.run(self._java(jars, "kafka.tools.StorageTool", "format", f"--cluster-id={cluster}",
                                            "-c", str(config), *scram), capture_output=True, text=True)
            if fmt.returncode != 0:
                raise RuntimeError(f"formatting the Kafka log dir failed: {(fmt.stdout + fmt.stderr)[-2000:]}")
        log = open(self.log_dir / "broker.log", "ab")
        # SIGTERM: a broker whose parent died still shuts down cleanly (its log dir stays usable)
        self._proc = subprocess.Popen(dies_with_this_process(self._java(jars, "kafka.Kafka", str(config)), "TERM"),
                                      stdout=log,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Until the broker answers a metadata request (the port alone opens before it serves)."""
        from streamworker.kafka import factory

        deadline = time.monotonic() + timeout
        assert self._proc is not None
        _wait_port(self._proc, self.port, "Apache Kafka", self.stop, timeout)
        admin = factory.admin({"bootstrap.servers": self.bootstrap, **self.client_properties()})
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RuntimeError(f"Apache Kafka exited with status {self._proc.returncode}; see "
                                   f"{self.log_dir / 'broker.log'}")
            try:
                if admin.list_topics(timeout=2).brokers:
                    return
            except Exception:
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"Apache Kafka did not answer within {timeout:.0f} s; see {self.log_dir / 'broker.log'}")

    def client_properties(self) -> dict[str, str]:
        """What a client needs besides bootstrap.servers (none for PLAINTEXT)."""
        return {}

    def stop(self, timeout: float = 30.0) -> None:
        """A clean shutdown (SIGTERM), SIGKILL after ``timeout``."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(10)
        self._proc = None

    def restart(self) -> None:
        """Stop cleanly and start again on the same port and log dir."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> ApacheKafka:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
