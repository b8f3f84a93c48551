"""Kafka's own Java clients and tools for the tests, from the jars the broker is fetched with:
``JavaProducer`` (ProducerTool.java: Kafka's KafkaProducer, every codec, headers, null keys and
values, transactions) and ``consumer_groups`` (``kafka-consumer-groups``, i.e. Kafka's
``ConsumerGroupCommand``)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamworker.local.apache_kafka import install_apache_kafka
from streamworker.local.servers import cache_lock

HERE = Path(__file__).parent
SOURCE = HERE / "ProducerTool.java"
_JVM = ("-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")


def available() -> bool:
    return all(shutil.which(t) for t in ("java", "javac", "mvn"))


def _classes() -> tuple[Path, Path]:
    """The Kafka jars and ProducerTool compiled against them (once per version of the source)."""
    jars = install_apache_kafka()
    classes = jars.parent / f"tools-{hashlib.sha1(SOURCE.read_bytes()).hexdigest()[:12]}"
    with cache_lock(classes.name):
        if not (classes / "ProducerTool.class").is_file():
            classes.mkdir(exist_ok=True)
            subprocess.run(["javac", "-nowarn", "-cp", f"{jars}/*", "-d", str(classes), str(SOURCE)],
                           check=True, capture_output=True)
    return jars, classes


class JavaProducer:
    """One KafkaProducer in a JVM; each call is answered once the broker acknowledged it."""

    def __init__(self, bootstrap: str, **properties: str) -> None:
        jars, classes = _classes()
        props = {"bootstrap.servers": bootstrap, "acks": "all", **properties}
        self.proc = subprocess.Popen(["java", *_JVM, "-cp", f"{classes}:{jars}/*", "ProducerTool",
                                      *(f"{k}={v}" for k, v in props.items())],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def _call(self, **request: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the Java producer exited ({self.proc.wait(10)})")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"the Java producer refused {request}: {reply.get('error')}")
        return reply

    def send(self, topic: str, value: str | None, key: str | None = None, partition: int | None = None,
             headers: list[tuple[str, str | None]] = ()) -> int:  # type: ignore[assignment]
        """Produce one record; returns its offset."""
        req: dict[str, Any] = {"op": "send", "topic": topic, "key": key, "value": value,
                               "headers": [list(h) for h in headers]}
        if partition is not None:
            req["partition"] = partition
        return int(self._call(**req)["offset"])

    def begin(self) -> None:
        self._call(op="begin")

    def commit(self) -> None:
        self._call(op="commit")

    def abort(self) -> None:
        self._call(op="abort")

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> JavaProducer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def consumer_groups(bootstrap: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``kafka-consumer-groups --bootstrap-server B ARGS``: Kafka's own ConsumerGroupCommand."""
    jars, _ = _classes()
    result = subprocess.run(["java", *_JVM, "-cp", f"{jars}/*", "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
                             "--bootstrap-server", bootstrap, *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise RuntimeError(f"kafka-consumer-groups {' '.join(args)} failed ({result.returncode}): "
                           f"{result.stdout}{result.stderr}")
    return result


@dataclass(frozen=True)
class GroupRow:
    """One partition as ``kafka-consumer-groups --describe`` prints it (None for '-')."""

    topic: str
    partition: int
    current_offset: int | None
    log_end_offset: int | None
    lag: int | None
    consumer_id: str | None


def describe(bootstrap: str, group: str) -> list[GroupRow]:
    """The group's partitions as Kafka's tool describes them."""
    out = consumer_groups(bootstrap, "--describe", "--group", group).stdout
    rows: list[GroupRow] = []
    header: list[str] | None = None
    for line in out.splitlines():
        cells = re.split(r"\s+", line.strip())
        if cells and cells[0] == "GROUP":
            header = cells
            continue
        if header is None or len(cells) < len(header) or cells[0] != group:
            continue
        row = dict(zip(header, cells, strict=False))

        def num(v: str) -> int | None:
            return None if v == "-" else int(v)

        rows.append(GroupRow(row["TOPIC"], int(row["PARTITION"]), num(row["CURRENT-OFFSET"]),
                             num(row["LOG-END-OFFSET"]), num(row["LAG"]),
                             None if row["CONSUMER-ID"] == "-" else row["CONSUMER-ID"]))
    return sorted(rows, key=lambda r: (r.topic, r.partition))
