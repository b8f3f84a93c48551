"""``streamworker dead-letters replay``: put dead-lettered records back on a stream or topic, once
their processor is fixed. Reads the JSON envelopes a ``file:`` or ``sqs:`` dead-letter target
holds; each record goes out with its original data and partition key (a Kafka record with its
exact key, and a tombstone as a null value; to Kinesis, which has no null, as empty data). An
SQS message is deleted only after the target acknowledged its record (at least once: a crash
mid-replay may put a record twice, never lose one); a file is left as it is. A file's last line
torn by a crash mid-append is reported and skipped: its records were never acknowledged, so the
worker dead-letters them again."""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from streamworker.dead_letter.sinks import put_all, queue_url
from streamworker.errors import ConfigError, StreamworkerError


@dataclass(frozen=True)
class Item:
    """A record to replay, and the acknowledgement to make once it is out (an SQS receipt)."""

    #: None: a Kafka tombstone
    data: bytes | None
    partition_key: str
    #: A Kafka record's exact key (None: a null key, or a Kinesis record)
    key: bytes | None = None
    ack: Any = None


def _decode(body: str, where: str, ack: Any = None) -> Item:
    try:
        env = json.loads(body)
        raw = env["data_base64"]
        key = env.get("key_base64")
        return Item(None if raw is None else base64.b64decode(raw),
                    str(env.get("partition_key") or env.get("shard_id") or "replay"),
                    None if key is None else base64.b64decode(key), ack)
    except (ValueError, KeyError, TypeError) as exc:
        raise StreamworkerError(f"{where}: not a streamworker dead-letter envelope ({exc!r:.120})") from None


class FileItems:
    """A dead-letter file's records. ``torn``: the number of a last line cut short (no newline);
    ``bad``: lines that are not envelopes (a file written by hand, or by a streamworker before
    appends were all or nothing), each with the problem. Both are skipped, never replayed."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise StreamworkerError(f"dead-letter file {self.path} not found")
        self.torn: int | None = None
        self.bad: list[str] = []

    def __iter__(self) -> Iterator[Item]:
        self.torn, self.bad = None, []
        lines = self.path.read_bytes().decode("utf-8", "replace").split("\n")
        last = len(lines)  # after a final newline the last piece is empty; otherwise it is torn
        for n, line in enumerate(lines, 1):
            if n == last and line:
                self.torn = n
                return
            if line.strip():
                try:
                    yield _decode(line, f"{self.path}:{n}")
                except StreamworkerError as exc:
                    self.bad.append(str(exc))


def from_sqs(client: Any, queue: str) -> Iterator[Item]:
    url = queue_url(client, queue)
    while True:
        msgs = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not msgs:
            return
        for m in msgs:
            yield _decode(m["Body"], f"SQS message {m['MessageId']}", (url, m["ReceiptHandle"]))


class KinesisTarget:
    def __init__(self, client: Any, stream: str) -> None:
        self.client, self.stream = client, stream

    def put(self, items: list[Item]) -> None:
        try:
            put_all(self.client, self.stream, [{"Data": i.data or b"", "PartitionKey": i.partition_key} for i in items])
        except RuntimeError as exc:
            raise StreamworkerError(str(exc)) from None


class KafkaTarget:
    def __init__(self, conf: dict[str, Any], topic: str) -> None:
        from streamworker.kafka import factory

        self.producer, self.topic = factory.producer({**conf, "acks": "all", "enable.idempotence": True}), topic

    def put(self, items: list[Item]) -> None:
        failures: list[str] = []
        for i in items:
            self.producer.produce(self.topic, value=i.data, key=i.key if i.key is not None else i.partition_key.encode(),
                                  on_delivery=lambda err, _m: failures.append(str(err)) if err else None)
        if self.producer.flush(30) or failures:
            raise StreamworkerError(f"Kafka topic {self.topic}: {failures[:1] or 'not acknowledged in 30 s'}")


def replay(source: str, to: str, *, kafka_conf: dict[str, Any], dry_run: bool, out: TextIO,
           make_client: Any, err: TextIO | None = None) -> int:
    """Replay every record of ``source`` (PATH, file:PATH or sqs:QUEUE) to ``to`` (kinesis:STREAM or kafka:TOPIC)."""
    kind, _, target = to.partition(":")
    if kind not in ("kinesis", "kafka") or not target:
        raise ConfigError(f"--to {to!r}: expected kinesis:STREAM or kafka:TOPIC")
    sqs = make_client("sqs") if source.startswith("sqs:") else None
    file = FileItems(source.removeprefix("file:")) if sqs is None else None
    items: Iterator[Item] | FileItems = from_sqs(sqs, source[4:]) if file is None else file
    if dry_run:
        if sqs is not None:
            out.write("dry run: an SQS queue is not read without replaying (receiving hides its messages)\n")
        else:
            out.write(f"would replay {sum(1 for _ in items)} record(s) from {source} to {to}\n")
            return _report_torn(file, err or sys.stderr)
        return 0
    if kind == "kafka" and "bootstrap.servers" not in kafka_conf:
        raise ConfigError("--to kafka:TOPIC needs --bootstrap-servers")
    sink: KinesisTarget | KafkaTarget = (KinesisTarget(make_client("kinesis"), target) if kind == "kinesis"
                                         else KafkaTarget(kafka_conf, target))
    done = 0
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) == (10 if sqs is not None else 500):
            done += _flush(sink, batch, sqs)
    done += _flush(sink, batch, sqs)
    out.write(f"replayed {done} record(s) from {source} to {to}\n")
    return _report_torn(file, err or sys.stderr)


def _report_torn(file: FileItems | None, err: TextIO) -> int:
    """Say (on stderr) what was skipped; 1 when a line was not an envelope (someone should look)."""
    if file is None:
        return 0
    if file.torn is not None:
        err.write(f"skipped line {file.torn} of {file.path}: cut short (a crash during its append); its records "
                  f"were never acknowledged, so the worker dead-letters them again\n")
    for problem in file.bad:
        err.write(f"streamworker: error: skipped {problem}\n")
    return 1 if file.bad else 0


def _flush(sink: KinesisTarget | KafkaTarget, batch: list[Item], sqs: Any) -> int:
    if not batch:
        return 0
    sink.put(batch)
    if sqs is not None:  # acknowledged by the target: now the queue may forget them
        url = batch[0].ack[0]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "ReceiptHandle": i.ack[1]}
                                                        for n, i in enumerate(batch)])
    n = len(batch)
    batch.clear()
    return n
