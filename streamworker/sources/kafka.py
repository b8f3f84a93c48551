"""Apache Kafka source: a shard is a topic-partition, a sequence number an offset.

One confluent-kafka Consumer per worker runs on a poll thread that calls ``consume(n)`` and
demultiplexes messages into a bounded buffer per partition. A partition whose buffer is full is
paused (the poll loop keeps running, so ``max.poll.interval.ms`` is never exceeded) and resumed
with a seek to the next offset once its processor has caught up.

Partitions are assigned either by the consumer-group protocol (``KafkaGroupCoordinator``
drives ``subscribe``) or explicitly by ``open_reader`` (``assign``, for the DynamoDB coordinator).
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import queue
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

import structlog

from ..clock import Clock, SystemClock
from ..coordinators.keys import kafka_key, parse_kafka_key
from ..errors import ConfigError, SourceError
from ..records import ExtendedSequenceNumber, Record, StartPosition
from .base import Batch, ShardInfo, StopReading

log = structlog.get_logger("streamworker.kafka")
T = TypeVar("T")


shard_key = kafka_key


def parse_shard(shard_id: str) -> tuple[str, int]:
    parsed = parse_kafka_key(shard_id)
    if parsed is None:
        raise ValueError(f"not a Kafka partition key: {shard_id!r}")
    return parsed


@dataclass(eq=False)
class PartitionBuffer:
    """Messages fetched for one partition and not yet handed to its reader."""

    topic: str
    partition: int
    #: Pause above this many bytes of buffered values; resume below half of it.
    capacity: int
    #: Messages in the chunks consume() returned them in (no per-message queue operations),
    #: each with its values' bytes.
    chunks: deque[tuple[list[Any], int]] = field(default_factory=deque)
    #: Bytes accounted for the buffered messages (values + a fixed overhead each).
    size: int = 0

    @property
    def messages(self) -> list[Any]:
        """The buffered messages, oldest first (for inspection)."""
        return [m for chunk, _ in self.chunks for m in chunk]
    cond: threading.Condition = field(default_factory=threading.Condition)
    #: Offset of the next message the buffer expects (duplicates after a resume are dropped).
    next_offset: int | None = None
    paused: bool = False
    closed: bool = False


class _ToStructlog(logging.Handler):
    """librdkafka's own log lines, at DEBUG: what matters surfaces as consume() errors and as
    streamworker's own messages, and a refused connection must not flood stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        log.debug("librdkafka", message=record.getMessage())


def librdkafka_logger() -> logging.Logger:
    logger = logging.getLogger("streamworker.librdkafka")
    if not logger.handlers:
        logger.addHandler(_ToStructlog())
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
    return logger


class KafkaClient:
    """The worker's one Consumer and its poll thread."""

    def __init__(self, conf: dict[str, Any], *, poll_batch: int = 1000, buffer_bytes: int = 4 << 20,
                 consumer_factory: Callable[[dict[str, Any]], Any] | None = None, clock: Clock | None = None) -> None:
        try:
            from confluent_kafka import Consumer
        except ImportError:
            raise ConfigError("the Kafka source needs confluent-kafka: pip install 'streamworker[kafka]'") from None

        self.conf = conf
        self.clock = clock or SystemClock()
        self.consumer = (consumer_factory or Consumer)({"logger": librdkafka_logger(), "on_commit": self._on_commit,
                                                        **conf})
        self.poll_batch = poll_batch
        self.buffer_bytes = buffer_bytes
        self._buffers: dict[tuple[str, int], PartitionBuffer] = {}
        self._lock = threading.Lock()
        self._control: queue.Queue[Callable[[], None]] = queue.Queue()
        # Synchronous commits waiting for the poll thread, coalesced into one request per pass.
        self._commits: list[tuple[list[Any], concurrent.futures.Future[None]]] = []
        self._commits_lock = threading.Lock()
        #: Asynchronous commit requests sent and not yet answered, oldest first: their offsets
        #: and the callers waiting. Only the poll thread touches it.
        self._in_flight: collections.deque[tuple[dict[tuple[str, int], int], list[tuple[list[Any], Any]]]] = \
            collections.deque()
        self._busy = False
        #: (topic, partition) -> high watermark, refreshed by the poll thread: calling the
        #: consumer from any other thread would wait on the poll loop (see commit_offsets).
        self.high_watermarks: dict[tuple[str, int], int] = {}
        self.low_watermarks: dict[tuple[str, int], int] = {}
        self._watermarks_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: int = 0

    # -- buffers ---------------------------------------------------------------------------

    def open_buffer(self, topic: str, partition: int, next_offset: int | None = None) -> PartitionBuffer:
        with self._lock:
            buf = self._buffers.get((topic, partition))
            if buf is None or buf.closed:
                buf = PartitionBuffer(topic, partition, self.buffer_bytes, next_offset=next_offset)
                self._buffers[(topic, partition)] = buf
            return buf

    def close_buffer(self, topic: str, partition: int) -> None:
        with self._lock:
            buf = self._buffers.pop((topic, partition), None)
        if buf is not None:
            with buf.cond:
                buf.closed = True
                buf.chunks.clear()
                buf.size = 0
                buf.cond.notify_all()

    def buffer(self, topic: str, partition: int) -> PartitionBuffer | None:
        with self._lock:
            return self._buffers.get((topic, partition))

    # -- the poll thread ---------------------------------------------------------------------

    def call_on_poll_thread(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` between two ``consume`` calls (assign, pause, resume, seek)."""
        self._control.put(fn)

    def run_on_poll_thread(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn`` on the poll thread and return its result. A synchronous commit made from any
        other thread would wait until the poll thread leaves ``consume()``; here it does not."""
        if threading.current_thread() is self._thread or self._thread is None or not self._thread.is_alive():
            return fn()
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn())
                except BaseException as exc:
                    fut.set_exception(exc)

        self._control.put(run)
        return fut.result(timeout)

    def drain_control(self, *, in_callback: bool = False) -> None:
        """Run queued control operations now: the poll loop, and waits inside rebalance callbacks
        (``in_callback``: commits are made synchronously there, as no poll can serve their replies)."""
        self._flush_commits(sync=in_callback)
        while True:
            try:
                op = self._control.get_nowait()
            except queue.Empty:
                return
            try:
                op()
            except Exception:
                log.exception("kafka control operation failed")

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kafka-poll", daemon=True)
        self._thread.start()

    def health(self) -> tuple[bool, str]:
        """False when the poll thread has died while the client should be running."""
        if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            return False, "the Kafka poll thread has stopped"
        return True, "ok"

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        try:
            self.consumer.close()
        except Exception as exc:  # closing a consumer whose broker is gone must not hang shutdown
            log.warning("kafka consumer close failed", error=str(exc))
        with self._lock:
            buffers = list(self._buffers.values())
        for buf in buffers:
            self.close_buffer(buf.topic, buf.partition)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll_once()
            except Exception:  # the poll thread must never die silently: that stalls every shard
                self.errors += 1
                log.exception("kafka poll loop failed; continuing")
                self._stop.wait(0.5)

    def _poll_once(self) -> None:
        from confluent_kafka import KafkaError, Message

        self.drain_control()
        self._refresh_watermarks()
        # consume() waits its whole timeout unless a full batch is ready, and commits queued for
        # this thread wait with it: short while data flows or commits wait, longer when idle.
        with self._commits_lock:
            waiting = bool(self._commits)
        timeout = 0.005 if (waiting or self._busy or self._in_flight) else 0.1
        try:
            messages = self.consumer.consume(self.poll_batch, timeout)
        except Exception as exc:
            self.errors += 1
            log.warning("kafka consume failed; retrying", error=str(exc))
            self._stop.wait(0.5)
            return
        self._busy = bool(messages)
        errors = list(map(Message.error, messages))
        if errors.count(None) != len(errors):  # rare: log what is not a message
            for err in errors:
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    self.errors += 1
                    log.warning("kafka error", error=str(err), fatal=err.fatal())
            messages = [m for m, err in zip(messages, errors, strict=True) if err is None]
        for key, batch in self._by_partition(messages):
            self._route(key, batch)

    def _by_partition(self, messages: list[Any]) -> Iterator[tuple[tuple[str, int], list[Any]]]:
        """Messages grouped per partition, each group in consume() order.

        consume() returns runs per partition, often one run a call: find the run boundaries from
        one list of partition numbers, pairing them with topics only when several came. Each pass
        over the messages maps a C method (~20 ns a message; itertools.groupby with a
        methodcaller took ~100)."""
        from confluent_kafka import Message

        if not messages:
            return
        parts: list[Any] = list(map(Message.partition, messages))
        topics: set[Any] = set(map(Message.topic, messages))
        one_topic = len(topics) == 1
        if one_topic and parts.count(parts[0]) == len(parts):
            yield (topics.pop(), parts[0]), messages
            return
        keys: list[Any] = parts if one_topic else [(m.topic(), p) for m, p in zip(messages, parts, strict=True)]
        groups: dict[Any, list[Any]] = {}
        start = 0
        for i in [i for i in range(1, len(keys)) if keys[i] != keys[i - 1]] + [len(keys)]:
            run = messages[start:i]
            if keys[start] in groups:
                groups[keys[start]].extend(run)
            else:
                groups[keys[start]] = run
            start = i
        for key, batch in groups.items():
            yield ((batch[0].topic(), key) if one_topic else key), batch

    def _route(self, key: tuple[str, int], batch: list[Any]) -> None:
        """Hand one partition's messages to its buffer; pause the partition when the buffer is full."""
        buf = self.buffer(*key)
        if buf is None:
            return  # a partition no longer ours: its new owner reads from the commit
        with buf.cond:
            nxt = buf.next_offset
            if nxt is not None and batch[0].offset() < nxt:
                batch = [m for m in batch if m.offset() >= nxt]  # re-fetched after a resume
                if not batch:
                    return
            size = sum(map(len, batch))  # len(Message): its value's length
            buf.chunks.append((batch, size))
            buf.size += size + 64 * len(batch)
            buf.next_offset = batch[-1].offset() + 1
            buf.cond.notify_all()
            full = buf.size >= buf.capacity and not buf.paused
            if full:
                buf.paused = True
        if full:
            self._pause(buf)

    def _refresh_watermarks(self) -> None:
        now = self.clock.monotonic()
        if now - self._watermarks_at < 1.0:
            return
        self._watermarks_at = now
        from confluent_kafka import TopicPartition

        with self._lock:
            keys = list(self._buffers)
        for topic, partition in keys:
            try:
                _low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), cached=True)
            except Exception:
                continue
            if high is not None and high >= 0:
                self.high_watermarks[(topic, partition)] = int(high)
                if _low is not None and _low >= 0:
                    self.low_watermarks[(topic, partition)] = int(_low)

    def _pause(self, buf: PartitionBuffer) -> None:
        from confluent_kafka import TopicPartition

        try:
            self.consumer.pause([TopicPartition(buf.topic, buf.partition)])
        except Exception as exc:
            log.warning("pause failed", shard_id=shard_key(buf.topic, buf.partition), error=str(exc))

    def request_resume(self, buf: PartitionBuffer) -> None:
        from confluent_kafka import TopicPartition

        def resume() -> None:
            with buf.cond:
                if not buf.paused or buf.closed:
                    return
                buf.paused = False
                nxt = buf.next_offset
            tp = TopicPartition(buf.topic, buf.partition)
            try:
                self.consumer.resume([tp])
                if nxt is not None:
                    # Fetching restarts exactly after the last buffered message.
                    self.consumer.seek(TopicPartition(buf.topic, buf.partition, nxt))
            except Exception as exc:
                log.warning("resume failed", shard_id=shard_key(buf.topic, buf.partition), error=str(exc))

        self.call_on_poll_thread(resume)

    # -- commits -----------------------------------------------------------------------------

    def commit(self, topic: str, partition: int, next_offset: int, *, asynchronous: bool = False) -> None:
        from confluent_kafka import TopicPartition

        self.commit_offsets([TopicPartition(topic, partition, next_offset)], asynchronous=asynchronous)

    def commit_offsets(self, offsets: list[Any], *, asynchronous: bool = False, timeout: float = 30.0) -> None:
        """Commit on the poll thread; synchronous commits return once the broker answered. The
        commits that shard threads ask for during one poll pass go out as one request."""
        if asynchronous:
            self.call_on_poll_thread(lambda: self.consumer.commit(offsets=offsets, asynchronous=True))
            return
        if threading.current_thread() is self._thread or self._thread is None or not self._thread.is_alive():
            self.consumer.commit(offsets=offsets, asynchronous=False)
            return
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._commits_lock:
            self._commits.append((offsets, fut))
        fut.result(timeout)

    def _flush_commits(self, *, sync: bool = False) -> None:
        """Send the commits the shard threads asked for during this pass as one request. From the
        poll loop it is asynchronous: the poll thread goes on fetching while the broker answers,
        and ``_on_commit`` (served by the next ``consume``) tells the waiting shard threads."""
        with self._commits_lock:
            pending, self._commits = self._commits, []
        if not pending:
            return
        merged: dict[tuple[str, int], Any] = {}
        for offsets, _ in pending:
            for tp in offsets:
                key = (tp.topic, tp.partition)
                if key not in merged or tp.offset >= merged[key].offset:
                    merged[key] = tp
        if not sync:
            self._in_flight.append(({k: tp.offset for k, tp in merged.items()}, pending))
            try:
                self.consumer.commit(offsets=list(merged.values()), asynchronous=True)
            except BaseException as exc:
                self._in_flight.pop()
                for _, fut in pending:
                    fut.set_exception(exc)
            return
        try:
            self.consumer.commit(offsets=list(merged.values()), asynchronous=False)
        except BaseException as exc:
            if len(pending) == 1:
                pending[0][1].set_exception(exc)
                return
            # One bad partition must not fail the others: fall back to one request each.
            for offsets, fut in pending:
                try:
                    self.consumer.commit(offsets=offsets, asynchronous=False)
                    fut.set_result(None)
                except BaseException as one:
                    fut.set_exception(one)
            return
        for _, fut in pending:
            fut.set_result(None)

    def _on_commit(self, err: Any, partitions: list[Any]) -> None:
        """librdkafka's answer to a commit request (on the poll thread). Matched to the request
        by its offsets; an answer to another commit (a synchronous one, a mirror) matches none.
        Requests sent before the matched one that got no answer are failed."""
        from confluent_kafka import KafkaException

        got = {(tp.topic, tp.partition): tp.offset for tp in partitions}
        index = next((i for i, (want, _) in enumerate(self._in_flight) if want == got), None)
        if index is None:
            return
        for _ in range(index):
            _, lost = self._in_flight.popleft()
            for _, fut in lost:
                fut.set_exception(KafkaException(err) if err is not None else
                                  RuntimeError("the commit request got no answer"))
        _, pending = self._in_flight.popleft()
        failed = {(tp.topic, tp.partition): tp.error for tp in partitions if getattr(tp, "error", None)}
        for offsets, fut in pending:
            if err is not None:
                fut.set_exception(KafkaException(err))
                continue
            bad = next((failed[(tp.topic, tp.partition)] for tp in offsets if (tp.topic, tp.partition) in failed),
                       None)
            if bad is not None:
                fut.set_exception(KafkaException(bad))
            else:
                fut.set_result(None)


class KafkaRecord(Record):
    """A Record over a confluent-kafka Message, decoded only when a field is read.

    Building every field eagerly costs ~3 us a message, 150 times what reading the value does;
    a processor that reads only ``data`` pays for nothing else."""

    __slots__ = ("_m",)
    _m: Any

    def __init__(self, message: Any) -> None:
        object.__setattr__(self, "_m", message)

    @property
    def data(self) -> bytes:
        return self._m.value() or b""

    @property
    def key(self) -> bytes | None:
        k: bytes | None = self._m.key()
        return k

    @property
    def partition_key(self) -> str:
        k = self._m.key()
        return k.decode("utf-8", "replace") if k is not None else ""

    @property
    def sequence_number(self) -> str:
        return str(self._m.offset())

    @property
    def offset(self) -> int:
        return int(self._m.offset())

    @property
    def approximate_arrival_timestamp(self) -> datetime | None:
        ts_type, ts = self._m.timestamp()
        return datetime.fromtimestamp(ts / 1000, timezone.utc) if ts_type else None

    @property
    def shard_id(self) -> str:
        return f"{self._m.topic()}:{self._m.partition()}"

    @property
    def headers(self) -> tuple[tuple[str, bytes | None], ...]:
        return tuple(self._m.headers() or ())

    @property
    def topic(self) -> str | None:
        t: str | None = self._m.topic()
        return t

    @property
    def partition(self) -> int | None:
        p: int | None = self._m.partition()
        return p


_new_record = object.__new__
_set_message = KafkaRecord._m.__set__  # the slot descriptor


def to_records(messages: list[Any]) -> list[Record]:
    """Wrap messages without a Python call per record (two C calls each)."""
    out: list[Record] = []
    append = out.append
    for m in messages:
        r = _new_record(KafkaRecord)
        _set_message(r, m)
        append(r)
    return out


def to_record(m: Any) -> Record:
    return to_records([m])[0]


class KafkaPartitionReader:
    """Reads one partition's buffer. See ``ShardReader`` for the contract."""

    def __init__(self, client: KafkaClient, buf: PartitionBuffer, *, skip_through: int | None,
                 max_records: int, wait: float, on_close: Callable[[], None] | None = None) -> None:
        self._client = client
        self._buf = buf
        self._skip_through = skip_through
        self._max = max_records
        self._wait = wait
        self._on_close = on_close
        self._closed = threading.Event()

    def read(self) -> Batch:
        buf = self._buf
        with buf.cond:
            if not buf.chunks:
                buf.cond.wait(self._wait)
            if self._closed.is_set() or buf.closed:
                raise StopReading()
            taken: list[Any] = []
            size = 0
            chunks = buf.chunks
            while chunks and len(taken) < self._max:
                chunk, chunk_size = chunks[0]
                room = self._max - len(taken)
                if len(chunk) <= room:
                    taken.extend(chunk)
                    size += chunk_size
                    chunks.popleft()
                else:
                    part = chunk[:room]
                    part_size = sum(map(len, part))
                    taken.extend(part)
                    size += part_size
                    chunks[0] = (chunk[room:], chunk_size - part_size)
            buf.size = buf.size - size - 64 * len(taken) if chunks else 0
            resume = buf.paused and buf.size <= buf.capacity // 2
        if resume:
            self._client.request_resume(buf)
        if self._skip_through is not None:
            taken = [m for m in taken if m.offset() > self._skip_through]
            if taken:
                self._skip_through = None
            size = sum(map(len, taken))
        return Batch(records=to_records(taken), size=size)

    def wake(self) -> None:
        """Cut short a ``read`` that waits for messages (it returns what there is)."""
        with self._buf.cond:
            self._buf.cond.notify_all()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            with self._buf.cond:
                self._buf.cond.notify_all()
            if self._on_close is not None:
                self._on_close()


def start_offset(position: StartPosition, consumer: Any, topic: str, partition: int) -> int:
    """The offset to fetch from for a start position."""
    from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, TopicPartition

    if position.sequence is not None:
        return int(position.sequence.sequence_number) + 1
    if position.kind == "TRIM_HORIZON":
        return int(OFFSET_BEGINNING)
    if position.kind == "LATEST":
        return int(OFFSET_END)
    if position.kind == "AT_TIMESTAMP" and position.timestamp is not None:
        ms = int(position.timestamp.timestamp() * 1000)
        (tp,) = consumer.offsets_for_times([TopicPartition(topic, partition, ms)], timeout=10)
        return int(tp.offset) if tp.offset >= 0 else int(OFFSET_END)
    raise ValueError(f"unsupported start position {position}")


class KafkaSource:
    """Topic-partitions as shards, over one shared KafkaClient."""

    def __init__(self, client: KafkaClient, topics: list[str], topic_pattern: str | None, *,
                 max_records: int = 10000, wait: float = 0.5, assign_on_open: bool = True) -> None:
        self.client = client
        self.topics = list(topics)
        self.topic_pattern = topic_pattern
        self.max_records = max_records
        self.wait = wait
        self.assign_on_open = assign_on_open

    @property
    def stream(self) -> str:
        return ",".join(self.topics) if self.topics else f"/{self.topic_pattern}/"

    def subscription(self) -> list[str]:
        """Topic names, with the pattern as librdkafka's ``^regex`` form."""
        subs = list(self.topics)
        if self.topic_pattern:
            subs.append(self.topic_pattern if self.topic_pattern.startswith("^") else f"^{self.topic_pattern}")
        return subs

    def _matches(self, topic: str) -> bool:
        if topic in self.topics:
            return True
        return bool(self.topic_pattern and re.fullmatch(self.topic_pattern.lstrip("^"), topic))

    def describe(self) -> str:
        """Check the broker answers and the topics exist; SourceError otherwise."""
        try:
            md = self.client.consumer.list_topics(timeout=10)
        except Exception as exc:
            raise SourceError(f"cannot reach Kafka at {self.client.conf.get('bootstrap.servers')}: {exc}") from None
        missing = [t for t in self.topics if t not in md.topics or md.topics[t].error is not None]
        if missing:
            raise SourceError(f"Kafka topic(s) {', '.join(missing)} not found at "
                              f"{self.client.conf.get('bootstrap.servers')}")
        return "ACTIVE"

    def list_shards(self) -> list[ShardInfo]:
        md = self.client.run_on_poll_thread(lambda: self.client.consumer.list_topics(timeout=10))
        shards: list[ShardInfo] = []
        for name, t in sorted(md.topics.items()):
            if t.error is None and not name.startswith("__") and self._matches(name):
                shards.extend(ShardInfo(shard_key(name, p)) for p in sorted(t.partitions))
        return shards

    def open_reader(self, shard_id: str, position: StartPosition) -> KafkaPartitionReader:
        topic, partition = parse_shard(shard_id)
        skip = int(position.sequence.sequence_number) if position.sequence is not None else None
        if not self.assign_on_open:
            buf = self.client.open_buffer(topic, partition)
            return KafkaPartitionReader(self.client, buf, skip_through=skip, max_records=self.max_records,
                                        wait=self.wait)
        from confluent_kafka import TopicPartition

        offset = self.client.run_on_poll_thread(
            lambda: start_offset(position, self.client.consumer, topic, partition))
        buf = self.client.open_buffer(topic, partition, next_offset=offset if offset >= 0 else None)
        self.client.call_on_poll_thread(
            lambda: self.client.consumer.incremental_assign([TopicPartition(topic, partition, offset)]))

        def unassign() -> None:
            self.client.close_buffer(topic, partition)
            self.client.call_on_poll_thread(
                lambda: self.client.consumer.incremental_unassign([TopicPartition(topic, partition)]))

        return KafkaPartitionReader(self.client, buf, skip_through=skip, max_records=self.max_records,
                                    wait=self.wait, on_close=unassign)

    def mirror_checkpoint(self, lease_key: str, checkpoint: ExtendedSequenceNumber) -> None:
        """Copy a lease-table checkpoint to Kafka's committed offsets, for standard lag tools."""
        if checkpoint.is_sentinel:
            return
        topic, partition = parse_shard(lease_key)
        try:
            self.client.commit(topic, partition, int(checkpoint.sequence_number) + 1, asynchronous=True)
        except Exception as exc:  # the lease table holds the truth; the mirror is best effort
            log.warning("mirroring the checkpoint to Kafka failed", shard_id=lease_key, error=str(exc))
