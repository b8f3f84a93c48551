"""``streamworker dead-letters replay``: put dead-lettered records back on a stream or topic, once
their processor is fixed. Reads the JSON envelopes a ``file:`` or ``sqs:`` dead-letter target
holds; each record goes out with its original data and partition key. An SQS message is deleted
only after the target acknowledged its record (at least once: a crash mid-replay may put a record
twice, never lose one); a file is left as it is."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from .dead_letter import put_all, queue_url
from .errors import ConfigError, StreamworkerError

#: A record to replay: data, partition key, and an acknowledgement to make once it is out.
Item = tuple[bytes, str, Any]


def _decode(body: str, where: str) -> tuple[bytes, str]:
    try:
        env = json.loads(body)
        return base64.b64decode(env["data_base64"]), str(env.get("partition_key") or env.get("shard_id") or "replay")
    except (ValueError, KeyError, TypeError) as exc:
        raise StreamworkerError(f"{where}: not a streamworker dead-letter envelope ({exc!r:.120})") from None


def from_file(path: str) -> Iterator[Item]:
    p = Path(path)
    if not p.exists():
        raise StreamworkerError(f"dead-letter file {p} not found")
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if line.strip():
            data, key = _decode(line, f"{p}:{n}")
            yield data, key, None


def from_sqs(client: Any, queue: str) -> Iterator[Item]:
    url = queue_url(client, queue)
    while True:
        msgs = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not msgs:
            return
        for m in msgs:
            data, key = _decode(m["Body"], f"SQS message {m['MessageId']}")
            yield data, key, (url, m["ReceiptHandle"])


class KinesisTarget:
    def __init__(self, client: Any, stream: str) -> None:
        self.client, self.stream = client, stream

    def put(self, items: list[Item]) -> None:
        try:
            put_all(self.client, self.stream, [{"Data": d, "PartitionKey": k} for d, k, _ in items])
        except RuntimeError as exc:
            raise StreamworkerError(str(exc)) from None


class KafkaTarget:
    def __init__(self, conf: dict[str, Any], topic: str) -> None:
        from confluent_kafka import Producer

        self.producer, self.topic = Producer({**conf, "acks": "all", "enable.idempotence": True}), topic

    def put(self, items: list[Item]) -> None:
        failures: list[str] = []
        for d, k, _ in items:
            self.producer.produce(self.topic, value=d, key=k.encode(),
                                  on_delivery=lambda err, _m: failures.append(str(err)) if err else None)
        if self.producer.flush(30) or failures:
            raise StreamworkerError(f"Kafka topic {self.topic}: {failures[:1] or 'not acknowledged in 30 s'}")


def replay(source: str, to: str, *, kafka_conf: dict[str, Any], dry_run: bool, out: TextIO,
           make_client: Any) -> int:
    """Replay every record of ``source`` (PATH, file:PATH or sqs:QUEUE) to ``to`` (kinesis:STREAM or kafka:TOPIC)."""
    kind, _, target = to.partition(":")
    if kind not in ("kinesis", "kafka") or not target:
        raise ConfigError(f"--to {to!r}: expected kinesis:STREAM or kafka:TOPIC")
    sqs = make_client("sqs") if source.startswith("sqs:") else None
    items = from_sqs(sqs, source[4:]) if sqs is not None else from_file(source.removeprefix("file:"))
    if dry_run:
        if sqs is not None:
            out.write("dry run: an SQS queue is not read without replaying (receiving hides its messages)\n")
        else:
            out.write(f"would replay {sum(1 for _ in items)} record(s) from {source} to {to}\n")
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
    return 0


def _flush(sink: KinesisTarget | KafkaTarget, batch: list[Item], sqs: Any) -> int:
    if not batch:
        return 0
    sink.put(batch)
    if sqs is not None:  # acknowledged by the target: now the queue may forget them
        url = batch[0][2][0]
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(n), "ReceiptHandle": ack[1]}
                                                        for n, (_, _, ack) in enumerate(batch)])
    n = len(batch)
    batch.clear()
    return n
