"""Dead-letter sinks: where records go when their processor keeps failing and the error policy
is ``dead-letter``. Each write is complete (flushed, acknowledged) before the shard checkpoints
past the records; a sink that fails halts the shard instead."""

from __future__ import annotations

import base64
import errno
import fcntl
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from streamworker.errors import CheckpointError, ConfigError, LeaseLostError
from streamworker.records import Record

if TYPE_CHECKING:
    from mypy_boto3_kinesis.client import KinesisClient
    from mypy_boto3_kinesis.type_defs import PutRecordsRequestEntryTypeDef

    from streamworker.checkpoint.checkpointer import Checkpointer


def envelope(r: Record, shard_id: str, error: BaseException, stream: str) -> dict[str, Any]:
    """A dead-lettered record as JSON: ``data_base64`` is null for a Kafka tombstone, and a Kafka
    key is kept exactly in ``key_base64`` (``partition_key`` is its UTF-8 reading)."""
    env: dict[str, Any] = {
        "stream": stream, "shard_id": shard_id, "sequence_number": r.sequence_number,
        "sub_sequence_number": r.sub_sequence_number, "partition_key": r.partition_key,
        "data_base64": None if r.tombstone else base64.b64encode(r.data).decode("ascii"),
        "error": f"{type(error).__name__}: {error}", "dead_lettered_at": time.time(),
    }
    if r.key is not None:
        env["key_base64"] = base64.b64encode(r.key).decode("ascii")
    return env


class DeadLetterSink(Protocol):
    def write(self, records: Sequence[Record], shard_id: str, error: BaseException) -> None: ...

    def describe(self) -> str: ...


class JsonlSink:
    """Appends one JSON line per record (data base64-encoded) and fsyncs. An append is all or
    nothing: a write that fails part way (a full disk) is cut back off before the error is
    raised, and a line torn by a crash mid-append (its records were never acknowledged, so they
    come again) is cut off before the next append. Appends from several processes sharing the
    file are serialised with ``flock``."""

    def __init__(self, path: str, stream: str) -> None:
        self.path = Path(path)
        self.stream = stream
        self._lock = threading.Lock()

    def write(self, records: Sequence[Record], shard_id: str, error: BaseException) -> None:
        payload = "".join(json.dumps(envelope(r, shard_id, error, self.stream)) + "\n" for r in records).encode()
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                end = _cut_torn_tail(fd)
                try:
                    view = memoryview(payload)
                    while view:
                        written = os.write(fd, view)
                        if written <= 0:
                            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
                        view = view[written:]
                    os.fsync(fd)
                except BaseException:
                    os.ftruncate(fd, end)  # nothing of this append stays behind
                    raise
            finally:
                os.close(fd)  # and the flock with it

    def describe(self) -> str:
        return f"file {self.path}"


def _cut_torn_tail(fd: int) -> int:
    """Truncate a last line that has no newline (a crash cut its append short) and return the
    file's length."""
    end = os.lseek(fd, 0, os.SEEK_END)
    if end == 0 or os.pread(fd, 1, end - 1) == b"\n":
        return end
    pos = end
    while pos > 0:
        start = max(0, pos - 65536)
        chunk = os.pread(fd, pos - start, start)
        nl = chunk.rfind(b"\n")
        if nl >= 0:
            keep = start + nl + 1
            break
        pos = start
    else:
        keep = 0
    os.ftruncate(fd, keep)
    return keep


def put_all(client: KinesisClient, stream_name: str, entries: list[PutRecordsRequestEntryTypeDef]) -> None:
    """PutRecords in batches of 500, putting again what Kinesis refused (five tries), else raise."""
    for i in range(0, len(entries), 500):
        pending = entries[i:i + 500]
        for _ in range(5):
            resp = client.put_records(StreamName=stream_name, Records=pending)
            if not resp.get("FailedRecordCount"):
                break
            pending = [e for e, res in zip(pending, resp["Records"], strict=True) if "ErrorCode" in res]
            time.sleep(0.2)
        else:
            raise RuntimeError(f"Kinesis stream {stream_name}: {len(pending)} records not accepted after 5 tries")


def queue_url(client: Any, queue: str) -> str:
    """An SQS queue's URL, given its name or its URL."""
    return queue if queue.startswith(("https://", "http://")) else str(client.get_queue_url(QueueName=queue)["QueueUrl"])


class KinesisSink:
    """Puts each failed record, wrapped in its JSON envelope, on another Kinesis stream."""

    def __init__(self, client: KinesisClient, stream_name: str, stream: str) -> None:
        self.client, self.stream_name, self.stream = client, stream_name, stream

    def write(self, records: Sequence[Record], shard_id: str, error: BaseException) -> None:
        put_all(self.client, self.stream_name, [{"Data": json.dumps(envelope(r, shard_id, error, self.stream)).encode(),
                                                 "PartitionKey": r.partition_key or shard_id} for r in records])

    def describe(self) -> str:
        return f"Kinesis stream {self.stream_name}"


class KafkaSink:
    """Produces each failed record (original value and key) to a Kafka topic, with the error and
    its origin in headers; waits for the broker's acknowledgement."""

    def __init__(self, conf: dict[str, Any], topic: str, stream: str) -> None:
        from streamworker.kafka import factory

        self.producer = factory.producer({**factory.connection_conf(conf), "acks": "all", "enable.idempotence": True})
        self.topic, self.stream = topic, stream

    def write(self, records: Sequence[Record], shard_id: str, error: BaseException) -> None:
        failures: list[str] = []

        def report(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        for r in records:
            # a Kafka record keeps its key, null included; a Kinesis record's partition key becomes one
            key = r.key if r.key is not None or r.topic is not None else r.partition_key.encode()
            self.producer.produce(self.topic, value=r.value, key=key, on_delivery=report,
                                  headers=[("streamworker.error", f"{type(error).__name__}: {error}".encode()),
                                           ("streamworker.shard", shard_id.encode()),
                                           ("streamworker.sequence", r.sequence_number.encode())])
        if self.producer.flush(30) or failures:
            raise RuntimeError(f"dead-letter topic {self.topic}: {failures[:1] or 'not acknowledged in 30 s'}")

    def describe(self) -> str:
        return f"Kafka topic {self.topic}"


class SqsSink:
    """Sends each failed record's JSON envelope to an SQS queue (by name or URL), ten per call;
    every message must be accepted (SQS takes at most 256 KiB a message)."""

    def __init__(self, client: Any, queue: str, stream: str) -> None:
        self.client, self.stream = client, stream
        self.queue_url = queue_url(client, queue)

    def write(self, records: Sequence[Record], shard_id: str, error: BaseException) -> None:
        for i in range(0, len(records), 10):
            entries = [{"Id": str(n), "MessageBody": json.dumps(envelope(r, shard_id, error, self.stream))}
                       for n, r in enumerate(records[i:i + 10])]
            resp = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if resp.get("Failed"):
                first = resp["Failed"][0]
                raise RuntimeError(f"dead-letter queue {self.queue_url}: {len(resp['Failed'])} message(s) refused "
                                   f"({first.get('Code')}: {first.get('Message')})")

    def describe(self) -> str:
        return f"SQS queue {self.queue_url}"


def parse_spec(spec: str) -> tuple[str, str]:
    kind, sep, target = spec.partition(":")
    if not sep or kind not in ("file", "kinesis", "kafka", "sqs") or not target:
        raise ConfigError(f"dead_letter {spec!r}: expected file:PATH.jsonl, kinesis:STREAM, kafka:TOPIC or sqs:QUEUE")
    return kind, target


def dead_letter_batch(sink: DeadLetterSink, records: Sequence[Record], shard_id: str, error: BaseException,
                      checkpointer: Checkpointer, counter: Any, log: Any) -> bool:
    """Write a failed batch to the dead-letter sink and checkpoint past it. False (the shard
    halts) when the sink fails or the lease is gone: records are never skipped silently."""
    try:
        sink.write(records, shard_id, error)
    except Exception as exc:
        log.error("dead-letter write failed; shard halted with its checkpoint kept", sink=sink.describe(),
                  error=repr(exc))
        return False
    try:
        checkpointer.checkpoint(records[-1])
    except LeaseLostError:
        return False  # the halt path sees the lease is gone and ends the shard as lost
    except CheckpointError as exc:
        log.warning("checkpoint after dead-lettering failed; the records may be dead-lettered again", error=str(exc))
    if counter is not None:
        counter.inc(len(records))
    log.error("records dead-lettered after the processor kept failing", count=len(records), sink=sink.describe(),
              first=records[0].sequence_number, last=records[-1].sequence_number, error=repr(error))
    return True
