"""Offset commits for the shard threads, sent by the poll thread.

A confluent-kafka Consumer is not to be called from two threads at once, and a synchronous
commit from any thread but the poll thread waits until the poll thread leaves ``consume()``.
So a shard thread's checkpoint queues its offsets here and waits on a future; the poll thread
sends everything queued during one pass as one asynchronous request and goes on fetching; the
answer arrives through librdkafka's ``on_commit`` callback (served by a later ``consume``) and
completes the futures. A checkpoint that returns is therefore durable. Inside a rebalance
callback no ``consume`` can serve the answer, so the pass is sent synchronously there.
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
from typing import Any

#: One shard thread's request: its offsets (TopicPartitions) and the future it waits on.
Request = tuple[list[Any], "concurrent.futures.Future[None]"]


class CommitQueue:
    """Commit requests of the shard threads, coalesced per poll pass and matched to their answers."""

    def __init__(self) -> None:
        self._queued: list[Request] = []
        self._lock = threading.Lock()
        #: Requests sent and not yet answered, oldest first: the offsets sent (by partition) and
        #: the callers waiting. Only the poll thread touches it.
        self._in_flight: collections.deque[tuple[dict[tuple[str, int], int], list[Request]]] = collections.deque()

    def ask(self, offsets: list[Any]) -> concurrent.futures.Future[None]:
        """Queue offsets for the next pass (any thread); the future completes with the answer."""
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        with self._lock:
            self._queued.append((offsets, fut))
        return fut

    @property
    def pending(self) -> bool:
        """Something is queued or unanswered (the poll loop then polls with a short timeout)."""
        with self._lock:
            return bool(self._queued) or bool(self._in_flight)

    def flush(self, consumer: Any, *, sync: bool = False) -> None:
        """Send what was queued during this pass as one request (the poll thread only)."""
        with self._lock:
            pending, self._queued = self._queued, []
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
                consumer.commit(offsets=list(merged.values()), asynchronous=True)
            except BaseException as exc:
                self._in_flight.pop()
                for _, fut in pending:
                    fut.set_exception(exc)
            return
        try:
            consumer.commit(offsets=list(merged.values()), asynchronous=False)
        except BaseException as exc:
            if len(pending) == 1:
                pending[0][1].set_exception(exc)
                return
            # One bad partition must not fail the others: fall back to one request each.
            for offsets, fut in pending:
                try:
                    consumer.commit(offsets=offsets, asynchronous=False)
                    fut.set_result(None)
                except BaseException as one:
                    fut.set_exception(one)
            return
        for _, fut in pending:
            fut.set_result(None)

    def on_commit(self, err: Any, partitions: list[Any]) -> None:
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
