"""Kinesis enhanced fan-out: a registered stream consumer and SubscribeToShard readers.

Each shard reader holds one HTTP/2-style event-stream subscription (boto3's EventStream). A
subscription lasts at most 5 minutes; the reader re-subscribes before that, at the continuation
sequence number of the last event, so nothing is skipped or repeated. ResourceInUse (the previous
subscription of this consumer and shard is still closing), throttling, read timeouts and a stalled
subscription are retried with backoff. The end of a closed shard is an event whose continuation
sequence number is absent, with the child shards. Some emulators (kinesis-mock, hence LocalStack)
never send that event: once a shard the last listing showed closed has been read up to date, one
GetRecords call after the continuation point confirms the end and names the children.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import botocore.eventstream
import botocore.exceptions
import structlog

from streamworker.aws.errors import THROTTLE_CODES, describe, error_code, is_transient
from streamworker.backoff import Backoff
from streamworker.clock import Clock, SystemClock
from streamworker.errors import SourceError
from streamworker.records import ChildShard, StartPosition
from streamworker.sources.base import Batch, ShardInfo, StopReading
from streamworker.sources.kinesis.calls import (
    MalformedReply,
    ReaderStats,
    refused,
    shard_closed,
    stream_args,
    trimmed_away,
)
from streamworker.sources.kinesis.reader import KinesisShardReader, KinesisSource

if TYPE_CHECKING:
    from mypy_boto3_kinesis.client import KinesisClient
    from mypy_boto3_kinesis.type_defs import StartingPositionTypeDef

log = structlog.get_logger("streamworker.fanout")

#: Kinesis ends a subscription after 5 minutes; re-subscribing a little earlier avoids the gap.
RESUBSCRIBE_AFTER = 290.0
RETRY_CODES = frozenset({"ResourceInUseException", "LimitExceededException"})
#: At most one end-of-shard confirmation (GetShardIterator + GetRecords) per closed shard this often.
END_CHECK_INTERVAL = 5.0


def register_consumer(client: KinesisClient, stream_arn: str, name: str, clock: Clock, timeout: float = 120.0) -> str:
    """Register (or reuse) the stream consumer named after the application; wait until ACTIVE;
    return its ARN."""
    try:
        client.register_stream_consumer(StreamARN=stream_arn, ConsumerName=name)
        log.info("registered an enhanced fan-out consumer", consumer=name, stream=stream_arn)
    except botocore.exceptions.ClientError as exc:
        if denied := refused(exc, "RegisterStreamConsumer", stream_arn):
            raise denied from None
        if error_code(exc) != "ResourceInUseException":  # it exists already: reuse it
            raise SourceError(f"cannot register fan-out consumer {name!r}: {exc}") from None
    deadline = clock.monotonic() + timeout
    backoff = Backoff(base=0.2, cap=2.0)
    while True:
        try:
            desc = client.describe_stream_consumer(StreamARN=stream_arn, ConsumerName=name)["ConsumerDescription"]
        except botocore.exceptions.ClientError as exc:
            if denied := refused(exc, "DescribeStreamConsumer", f"{stream_arn}/consumer/{name}"):
                raise denied from None
            raise
        if desc["ConsumerStatus"] == "ACTIVE":
            return str(desc["ConsumerARN"])
        if clock.monotonic() > deadline:
            raise SourceError(f"fan-out consumer {name!r} not ACTIVE after {timeout:.0f} s ({desc['ConsumerStatus']})")
        clock.sleep(backoff.next_delay())


@dataclass
class FanoutShardReader:
    """Reads one shard through SubscribeToShard. See ``ShardReader`` for the contract."""

    client: KinesisClient
    consumer_arn: str
    shard_id: str
    position: StartPosition
    clock: Clock = field(default_factory=SystemClock)
    stats: ReaderStats = field(default_factory=ReaderStats)
    resubscribe_after: float = RESUBSCRIBE_AFTER
    #: The stream's name or ARN, for the end-of-shard confirmation.
    stream: str = ""
    #: Whether the latest shard listing showed this shard closed (by a split or merge).
    is_closed: Callable[[], bool] = lambda: False

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        # close() runs on another thread than read(): a subscription never outlives a close.
        self._lock = threading.Lock()
        self._events: Iterator[dict[str, Any]] | None = None
        self._stream: Any = None
        self._subscribed_at = 0.0
        self._continuation: str | None = None
        self._ended = False
        self._next_end_check = 0.0
        self._backoff = Backoff(base=0.2, cap=5.0, floor=0.2)
        # Record conversion and the resume filter are the polling reader's: share them.
        self._filter = KinesisShardReader(self.client, "", self.shard_id, self.position, stats=self.stats)

    def close(self) -> None:
        self._stop.set()
        self._end_subscription()

    def _end_subscription(self) -> None:
        with self._lock:
            stream, self._stream, self._events = self._stream, None, None
        if stream is not None:
            try:
                stream.close()
            except Exception:  # closing a broken stream must not fail the reader
                pass

    def _starting_position(self) -> StartingPositionTypeDef:
        if self._continuation is not None:
            return {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self._continuation}
        resume = self._filter.resume_point()
        if resume is not None:
            return {"Type": "AT_SEQUENCE_NUMBER", "SequenceNumber": resume.sequence_number}
        if self.position.kind == "AT_TIMESTAMP" and self.position.timestamp is not None:
            return {"Type": "AT_TIMESTAMP", "Timestamp": self.position.timestamp}
        if self.position.kind == "TRIM_HORIZON":
            return {"Type": "TRIM_HORIZON"}
        if self.position.kind == "LATEST":
            return {"Type": "LATEST"}
        raise ValueError(f"no subscription start for {self.position}")  # a sequence is always resumed above

    def _subscribe(self) -> bool:
        """Open a subscription; False if the shard was trimmed away (its end)."""
        while True:
            if self._stop.is_set():
                raise StopReading()
            try:
                resp = self.client.subscribe_to_shard(ConsumerARN=self.consumer_arn, ShardId=self.shard_id,
                                                      StartingPosition=self._starting_position())
            except Exception as exc:
                if denied := refused(exc, "SubscribeToShard", self.consumer_arn):
                    raise denied from None
                if trimmed_away(exc, self.client, self.stream, self.shard_id):
                    return False
                if error_code(exc) not in RETRY_CODES and not is_transient(exc):
                    raise
                self._retry_wait(exc)
                continue
            with self._lock:
                if self._stop.is_set():  # closed while subscribing: leave no subscription open
                    resp["EventStream"].close()
                    raise StopReading()
                self._stream = resp["EventStream"]
                self._events = iter(self._stream)
            self._subscribed_at = self.clock.monotonic()
            self.stats.get_records_calls += 1
            return True

    def _retry_wait(self, exc: BaseException) -> None:
        code = describe(exc)
        if code in THROTTLE_CODES:
            self.stats.throttles += 1
        self.stats.retries += 1
        delay = self._backoff.next_delay()
        log.warning("SubscribeToShard retried", error=code, detail=str(exc)[:200], shard_id=self.shard_id,
                    retry_in=round(delay, 3))
        if self.clock.sleep(delay, self._stop):
            raise StopReading()

    def read(self) -> Batch:
        if self._ended:
            return Batch(records=[], shard_end=True)
        while True:
            if self._stop.is_set():
                raise StopReading()
            if self._events is not None and self.clock.monotonic() - self._subscribed_at >= self.resubscribe_after:
                log.debug("re-subscribing before the subscription expires", shard_id=self.shard_id)
                self._end_subscription()
            if self._events is None and not self._subscribe():
                self._ended = True
                return Batch(records=[], shard_end=True)
            assert self._events is not None
            try:
                event = next(self._events)
            except StopIteration:  # the service ended the subscription (5 minutes): continue it
                self._end_subscription()
                continue
            except (botocore.exceptions.ClientError, botocore.exceptions.EventStreamError) as exc:
                self._end_subscription()
                if denied := refused(exc, "SubscribeToShard", self.consumer_arn):
                    raise denied from None
                if error_code(exc) not in RETRY_CODES and not is_transient(exc) and not isinstance(
                        exc, botocore.exceptions.EventStreamError):
                    raise
                self._retry_wait(exc)
                continue
            except (botocore.exceptions.BotoCoreError, botocore.eventstream.ParserError, OSError) as exc:
                # a broken connection, a cut or corrupt event (its CRC failed), credentials
                if self._stop.is_set():
                    raise StopReading() from None
                self._end_subscription()
                self._retry_wait(exc)
                continue
            body = event.get("SubscribeToShardEvent")
            if body is None:
                continue
            try:
                batch = self._to_batch(body)
            except MalformedReply as exc:
                # continue from the last good event's continuation: nothing skipped or repeated
                self.stats.malformed_replies += 1
                self._end_subscription()
                self._retry_wait(exc)
                continue
            self._backoff.reset()
            if not batch.records and not batch.shard_end and body.get("MillisBehindLatest") == 0:
                return self._confirm_end() or batch
            return batch

    def _confirm_end(self) -> Batch | None:
        """The end-of-shard batch if this closed shard has nothing after the continuation point."""
        now = self.clock.monotonic()
        if self._continuation is None or now < self._next_end_check or not self.is_closed():
            return None
        self._next_end_check = now + END_CHECK_INTERVAL
        try:
            iterator = self.client.get_shard_iterator(
                **stream_args(self.stream), ShardId=self.shard_id, ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                StartingSequenceNumber=self._continuation)["ShardIterator"]
            resp = self.client.get_records(ShardIterator=iterator, Limit=1)
        except Exception as exc:
            if denied := refused(exc, "GetRecords", self.stream):  # GetShardIterator's name is in the message
                raise denied from None
            log.debug("end-of-shard check failed; will retry", shard_id=self.shard_id, error=describe(exc))
            return None
        if not isinstance(resp.get("Records"), list) or resp["Records"] or resp.get("NextShardIterator") is not None:
            return None
        log.info("closed shard read to its end (confirmed by GetRecords)", shard_id=self.shard_id)
        return self._to_batch({"Records": [], "ChildShards": resp.get("ChildShards")}, end_confirmed=True)

    def _to_batch(self, body: dict[str, Any], end_confirmed: bool = False) -> Batch:
        """A batch from one event. An event without a continuation ends the shard only if it
        names the children or the shard listing shows the shard closed; an event without Records
        is malformed (both raise MalformedReply: the caller re-subscribes)."""
        raw = body.get("Records")
        if not isinstance(raw, list):
            raise MalformedReply("SubscribeToShard event without Records (garbled?)")
        continuation = body.get("ContinuationSequenceNumber")
        children = tuple(ChildShard(c["ShardId"], tuple(c.get("ParentShards", ())))
                         for c in body.get("ChildShards") or ())
        if continuation is None and not children and not end_confirmed and not shard_closed(self.client, self.stream, self.shard_id):
            raise MalformedReply("SubscribeToShard event without a continuation for a shard the listing shows open")
        records = self._filter.convert(raw)
        self._continuation = continuation
        shard_end = continuation is None
        if shard_end:
            self._ended = True
            self._end_subscription()
        if records:
            self.stats.records += len(records)
        return Batch(records=records, millis_behind_latest=body.get("MillisBehindLatest"), shard_end=shard_end,
                     child_shards=children, size=sum(len(r.data) for r in records))


class FanoutSource(KinesisSource):
    """A Kinesis source whose readers use enhanced fan-out (listing shards is the same)."""

    def __init__(self, client: KinesisClient, stream: str, consumer_name: str, *, clock: Clock | None = None,
                 max_records: int = 10000, idle_time: float = 1.5) -> None:
        super().__init__(client, stream, max_records=max_records, idle_time=idle_time, clock=clock)
        self.consumer_name = consumer_name
        self._consumer_arn: str | None = None
        self._lock = threading.Lock()
        self._closed: frozenset[str] = frozenset()

    def consumer_arn(self) -> str:
        with self._lock:
            if self._consumer_arn is None:
                arn = self._stream if self._stream.startswith("arn:") else self._client.describe_stream_summary(
                    StreamName=self._stream)["StreamDescriptionSummary"]["StreamARN"]
                self._consumer_arn = register_consumer(self._client, arn, self.consumer_name, self._clock)
            return self._consumer_arn

    def list_shards(self) -> list[ShardInfo]:
        shards = super().list_shards()
        self._closed = frozenset(s.shard_id for s in shards if not s.is_open)
        return shards

    def open_reader(self, shard_id: str, position: StartPosition) -> FanoutShardReader:  # type: ignore[override]
        return FanoutShardReader(self._client, self.consumer_arn(), shard_id, position, clock=self._clock,
                                 stats=self.stats, stream=self._stream,
                                 is_closed=lambda: shard_id in self._closed)

