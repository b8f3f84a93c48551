"""The worker's one confluent-kafka Consumer and the poll thread that owns it.

The poll thread calls ``consume(n)`` and routes the messages into a bounded buffer per
partition (``buffers.py``), which the partition's shard thread reads itself. A partition whose
buffer is full is paused (the poll loop keeps running, so ``max.poll.interval.ms`` is never
exceeded) and resumed with a seek to the next offset once its processor has caught up. Every
other use of the consumer (assign, pause, resume, seek, commits, metadata) runs on this thread
between two ``consume`` calls, queued through ``call_on_poll_thread`` or the ``CommitQueue``.
"""

from __future__ import annotations

import concurrent.futures
import json
import queue
import threading
from collections.abc import Callable, Iterator
from itertools import repeat
from operator import is_not
from typing import Any, TypeVar

import structlog

from ..clock import Clock, SystemClock
from ..coordinators.keys import kafka_key
from . import factory
from .buffers import PartitionBuffer
from .commits import CommitQueue

log = structlog.get_logger("streamworker.kafka")
T = TypeVar("T")


#: librdkafka's join states in which the group coordinator holds a request until the rebalance
#: completes (JoinGroup waits for every member, SyncGroup for the leader's assignment).
PARKED_JOIN_STATES = frozenset({"wait-join", "wait-sync"})


class Reachability:
    """Whether the cluster answers, from librdkafka's statistics (``stats_cb``, every second on
    the poll thread). Time counts only while requests wait for an answer and none arrives: an idle
    client (nothing to fetch, no group) is not unreachable, and while the poll thread is held up
    (a rebalance callback) no statistics arrive, so no silence is counted either. A JoinGroup or
    SyncGroup the coordinator parks until every member has rejoined is not waited-on silence
    (a long rebalance is the group's state, not an outage), and each broker's replies are counted
    on their own, since librdkafka replaces broker handles (a bootstrap server, re-bootstrap)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rx: dict[str, int] = {}
        self._heard = self._seen = clock.monotonic()
        self._group: tuple[str, float] | None = None  # (state, seconds in it) when not "up"

    def started(self) -> None:
        with self._lock:
            self._heard = self._seen = self._clock.monotonic()

    def on_stats(self, raw: str) -> None:
        try:
            stats = json.loads(raw)
        except ValueError:
            return
        brokers = {str(name): b for name, b in (stats.get("brokers") or {}).items() if isinstance(b, dict)}
        cgrp = stats.get("cgrp") if isinstance(stats.get("cgrp"), dict) else {}
        joining = cgrp.get("join_state") in PARKED_JOIN_STATES
        rx = {name: int(b.get("rx", 0)) for name, b in brokers.items()}
        waiting = sum(int(b.get("waitresp_cnt", 0)) + int(b.get("outbuf_cnt", 0)) for name, b in brokers.items()
                      if not (joining and name == "GroupCoordinator"))
        connected = any(b.get("state") == "UP" for b in brokers.values() if int(b.get("nodeid", -1)) >= 0)
        now = self._clock.monotonic()
        with self._lock:
            if any(n > self._rx.get(name, 0) for name, n in rx.items()) or (waiting == 0 and connected):
                self._heard = now
            self._rx, self._seen = rx, now
            state = str(cgrp.get("state", "up")) if cgrp else "up"
            self._group = None if state == "up" else (state, float(cgrp.get("stateage", 0)) / 1000.0)

    def silent_for(self) -> float:
        """Seconds without an answer while requests waited, as of the last statistics."""
        with self._lock:
            return self._seen - self._heard

    def group_away_for(self) -> tuple[str, float]:
        """The consumer group's state and how long it has not been 'up' (0 when it is)."""
        with self._lock:
            return ("up", 0.0) if self._group is None else self._group


class KafkaClient:
    """The worker's one Consumer and its poll thread."""

    def __init__(self, conf: dict[str, Any], *, poll_batch: int = 1000, buffer_bytes: int = 4 << 20,
                 consumer_factory: Callable[[dict[str, Any]], Any] | None = None, clock: Clock | None = None,
                 unreachable_after: float = 10.0) -> None:
        self.conf = conf
        self.clock = clock or SystemClock()
        self.commits = CommitQueue()
        #: The broker (or the group coordinator) unanswering this long makes the client unhealthy.
        self.unreachable_after = unreachable_after
        self.reach = Reachability(self.clock)
        extra: dict[str, Any] = {"on_commit": self.commits.on_commit, "stats_cb": self.reach.on_stats}
        if "statistics.interval.ms" not in conf:
            extra["statistics.interval.ms"] = 1000
        self.consumer = (consumer_factory or factory.consumer)({**extra, **conf})
        self.poll_batch = poll_batch
        self.buffer_bytes = buffer_bytes
        self._buffers: dict[tuple[str, int], PartitionBuffer] = {}
        self._lock = threading.Lock()
        self._control: queue.Queue[Callable[[], None]] = queue.Queue()
        self._busy = False
        #: (topic, partition) -> high watermark, refreshed by the poll thread: calling the
        #: consumer from any other thread would wait on the poll loop (see commit_offsets).
        self.high_watermarks: dict[tuple[str, int], int] = {}
        self.low_watermarks: dict[tuple[str, int], int] = {}
        self._watermarks_at = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: int = 0
        #: Called on the poll thread as ``(topic, partition, position)`` when a partition's
        #: position moved past its last buffered message with no message in between (a
        #: transaction's commit marker arrived after its records): the coordinator may commit it.
        self.on_position: Callable[[str, int, int], None] | None = None
        self._positions_at = 0.0

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

    def _here(self) -> bool:
        """The caller may use the consumer directly: it is the poll thread, or none runs."""
        return threading.current_thread() is self._thread or self._thread is None or not self._thread.is_alive()

    def call_on_poll_thread(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` between two ``consume`` calls (assign, pause, resume, seek)."""
        self._control.put(fn)

    def run_on_poll_thread(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run ``fn`` on the poll thread and return its result. A synchronous commit made from any
        other thread would wait until the poll thread leaves ``consume()``; here it does not."""
        if self._here():
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
        self.commits.flush(self.consumer, sync=in_callback)
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
        self.reach.started()
        self._thread = threading.Thread(target=self._run, name="kafka-poll", daemon=True)
        self._thread.start()

    def health(self) -> tuple[bool, str]:
        """False when the poll thread has died while the client should be running, or when the
        cluster or the group coordinator has not answered for ``unreachable_after`` seconds
        (requests were waiting all that time); true again as soon as they answer."""
        if self._thread is not None and not self._thread.is_alive() and not self._stop.is_set():
            return False, "the Kafka poll thread has stopped"
        where = self.conf.get("bootstrap.servers", "the Kafka cluster")
        silent = self.reach.silent_for()
        if silent >= self.unreachable_after:
            return False, f"no reply from Kafka ({where}) for {silent:.0f} s"
        group_state, away = self.reach.group_away_for()
        if away >= self.unreachable_after:
            return False, (f"the group coordinator of {self.conf.get('group.id')!r} unreachable for {away:.0f} s "
                           f"(librdkafka group state {group_state!r})")
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
        timeout = 0.005 if (self._busy or self.commits.pending) else 0.1
        try:
            messages = self.consumer.consume(self.poll_batch, timeout)
        except Exception as exc:
            self.errors += 1
            log.warning("kafka consume failed; retrying", error=str(exc))
            self._stop.wait(0.5)
            return
        self._busy = bool(messages)
        errors = list(map(Message.error, messages))
        # ``is not None``, never ``== None``: confluent-kafka's KafkaError compares itself with a
        # non-number by converting it to an int, and leaves that TypeError set (2.13 and later);
        # the next C call then raised SystemError, the poll loop gave up its pass, and the messages
        # consume() had just returned were never routed (records skipped).
        if any(map(is_not, errors, repeat(None))):  # rare: log what is not a message
            for err in errors:
                if err is not None and err.code() != KafkaError._PARTITION_EOF:
                    self.errors += 1
                    log.warning("kafka error", error=str(err), fatal=err.fatal())
            messages = [m for m, err in zip(messages, errors, strict=True) if err is None]
        for key, batch in self._by_partition(messages):
            self._route(key, batch)
        if len(messages) < self.poll_batch or self.clock.monotonic() - self._positions_at >= 0.1:
            self._track_positions()

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
            buf.position = None
            buf.cond.notify_all()
            full = buf.size >= buf.capacity and not buf.paused
            if full:
                buf.paused = True
        if full:
            self._pause(buf)

    def _track_positions(self) -> None:
        """Read the consumer's position of every buffered partition (one call). librdkafka moves
        it past control records as it hands out what precedes them, in order, so a position past
        a buffer's last message, read right after a pass, has only records nobody is given
        (transaction markers, aborted records) in between."""
        from confluent_kafka import TopicPartition

        self._positions_at = self.clock.monotonic()
        with self._lock:
            bufs = list(self._buffers.values())
        if not bufs:
            return
        try:
            positions = self.consumer.position([TopicPartition(b.topic, b.partition) for b in bufs])
        except Exception:
            return  # a partition just unassigned; read again next pass
        moved: list[tuple[PartitionBuffer, int]] = []
        for buf, tp in zip(bufs, positions, strict=True):
            offset = int(tp.offset)
            with buf.cond:
                ahead = offset >= 0 if buf.next_offset is None else offset > buf.next_offset
                if ahead and offset != buf.position:
                    buf.position = offset
                    moved.append((buf, offset))
        if self.on_position is not None:
            for buf, offset in moved:
                self.on_position(buf.topic, buf.partition, offset)

    def next_offset(self, topic: str, partition: int, last: int) -> int:
        """The offset to commit once the record at offset ``last`` is processed: ``last + 1``, or
        the consumer's position when ``last`` is the last message fetched and only control or
        aborted records follow it, as Kafka's own clients commit (a committed offset on a
        transaction's marker leaves a lag of 1 that never clears). Never past a record that was
        not delivered."""
        buf = self.buffer(topic, partition)
        if buf is not None:
            with buf.cond:
                if buf.next_offset == last + 1 and buf.position is not None and buf.position > last + 1:
                    return buf.position
        return last + 1

    def start_offset(self, topic: str, partition: int) -> int | None:
        """Where a partition with nothing processed stands: its consumer position when only
        undeliverable records were fetched so far, else the offset it was assigned at."""
        buf = self.buffer(topic, partition)
        if buf is None:
            return None
        with buf.cond:
            return buf.position if buf.position is not None else buf.next_offset

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
            log.warning("pause failed", shard_id=kafka_key(buf.topic, buf.partition), error=str(exc))

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
                log.warning("resume failed", shard_id=kafka_key(buf.topic, buf.partition), error=str(exc))

        self.call_on_poll_thread(resume)

    # -- commits -----------------------------------------------------------------------------

    def commit(self, topic: str, partition: int, next_offset: int, *, asynchronous: bool = False) -> None:
        from confluent_kafka import TopicPartition

        self.commit_offsets([TopicPartition(topic, partition, next_offset)], asynchronous=asynchronous)

    def commit_offsets(self, offsets: list[Any], *, asynchronous: bool = False, timeout: float = 30.0) -> None:
        """Commit on the poll thread (see ``CommitQueue``); synchronous commits return once the
        broker answered."""
        if asynchronous:
            self.call_on_poll_thread(lambda: self.consumer.commit(offsets=offsets, asynchronous=True))
            return
        if self._here():
            self.consumer.commit(offsets=offsets, asynchronous=False)
            return
        self.commits.ask(offsets).result(timeout)
