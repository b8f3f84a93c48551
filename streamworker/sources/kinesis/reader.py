"""Kinesis Data Streams source: ListShards and a paced, self-healing GetRecords reader."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import botocore.exceptions
import structlog

from streamworker.aws.errors import (
    THROTTLE_CODES,
    denied_message,
    describe,
    error_code,
    is_denied,
    is_transient,
)
from streamworker.backoff import Backoff
from streamworker.clock import Clock, SystemClock
from streamworker.errors import SourceError
from streamworker.records import ChildShard, ExtendedSequenceNumber, Record, StartPosition
from streamworker.sources.base import Batch, InvalidStartPosition, ShardInfo, SourceAccessDenied, StopReading
from streamworker.sources.kinesis.aggregation import MAGIC, deaggregate
from streamworker.sources.kinesis.calls import (
    MalformedReply,
    ReaderStats,
    refused,
    shard_closed,
    stream_args,
    trimmed_away,
)

if TYPE_CHECKING:
    from mypy_boto3_kinesis.client import KinesisClient


log = structlog.get_logger("streamworker.kinesis")

#: Kinesis allows 5 GetRecords calls per second per shard.
MIN_READ_INTERVAL = 0.2


@dataclass
class KinesisShardReader:
    """Reads one shard with GetRecords. See ``ShardReader`` for the contract.

    Pacing: at most one call per ``MIN_READ_INTERVAL`` while the shard has a backlog, and
    ``idle_time`` after a read that returned nothing or caught up. Transient errors (see
    ``aws_errors.is_transient``) and malformed replies are retried with backoff, forever: a
    reader never gives up on a shard for a passing fault. The shard ends only on a well-formed
    reply without ``NextShardIterator`` that names the child shards or that the shard listing
    confirms (the shard is closed, or gone).
    """

    client: KinesisClient
    stream: str
    shard_id: str
    position: StartPosition
    max_records: int = 10000
    idle_time: float = 1.5
    clock: Clock = field(default_factory=SystemClock)
    stats: ReaderStats = field(default_factory=ReaderStats)
    #: What each record becomes (DynamoDB Streams: a StreamRecord reading its change back).
    record_type: type[Record] = Record

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._iterator: str | None = None
        # Records at or before this point are dropped (resume inside a KPL aggregate).
        self._skip_through: ExtendedSequenceNumber | None = self.position.sequence
        self._last_delivered: ExtendedSequenceNumber | None = None
        self._next_read_at = 0.0
        self._ended = False
        self._backoff = Backoff(base=MIN_READ_INTERVAL, cap=5.0, floor=MIN_READ_INTERVAL)

    def close(self) -> None:
        self._stop.set()

    def _wait_until(self, deadline: float) -> None:
        delay = deadline - self.clock.monotonic()
        if delay > 0 and self.clock.sleep(delay, self._stop):
            raise StopReading()
        if self._stop.is_set():
            raise StopReading()

    def _get_iterator(self) -> str | None:
        """A shard iterator at the resume point; None if the shard was trimmed away."""
        args: dict[str, Any] = {**stream_args(self.stream), "ShardId": self.shard_id}
        resume = self._last_delivered or self._skip_through
        if resume is not None:
            args["ShardIteratorType"] = "AT_SEQUENCE_NUMBER"
            args["StartingSequenceNumber"] = resume.sequence_number
        elif self.position.kind == "AT_TIMESTAMP":
            args["ShardIteratorType"] = "AT_TIMESTAMP"
            args["Timestamp"] = self.position.timestamp
        elif self.position.kind in ("TRIM_HORIZON", "LATEST"):
            args["ShardIteratorType"] = self.position.kind
        else:
            raise ValueError(f"unsupported start position {self.position}")
        while True:
            try:
                iterator = self.client.get_shard_iterator(**args).get("ShardIterator")
                if not isinstance(iterator, str) or not iterator:
                    raise MalformedReply("GetShardIterator reply without ShardIterator")
                return iterator
            except MalformedReply as exc:
                self.stats.malformed_replies += 1
                self._retry_wait(exc, "GetShardIterator")
            except Exception as exc:
                if denied := refused(exc, "GetShardIterator", self.stream):
                    raise denied from None
                if trimmed_away(exc, self.client, self.stream, self.shard_id):
                    return None
                if error_code(exc) in ("InvalidArgumentException", "ValidationException") and resume is not None:
                    raise InvalidStartPosition(
                        f"Kinesis refused to read shard {self.shard_id} at sequence number "
                        f"{resume.sequence_number!r}: {exc}") from None
                if not is_transient(exc):
                    raise
                self._retry_wait(exc, "GetShardIterator")

    def _retry_wait(self, exc: BaseException, call: str) -> None:
        code = describe(exc)
        if code in THROTTLE_CODES:
            self.stats.throttles += 1
        self.stats.retries += 1
        delay = self._backoff.next_delay()
        log.warning("kinesis call retried", call=call, error=code, detail=str(exc)[:200], shard_id=self.shard_id,
                    stream=self.stream, retry_in=round(delay, 3))
        self._wait_until(self.clock.monotonic() + delay)

    def read(self) -> Batch:
        if self._ended:
            return Batch(records=[], shard_end=True)
        while True:
            self._wait_until(self._next_read_at)
            if self._iterator is None:
                self._iterator = self._get_iterator()
                if self._iterator is None:
                    self._ended = True
                    return Batch(records=[], shard_end=True)
            started = self.clock.monotonic()
            try:
                self.stats.get_records_calls += 1
                resp = self.client.get_records(ShardIterator=self._iterator, Limit=self.max_records)
                batch = self._to_batch(resp, started)
            except MalformedReply as exc:
                self.stats.malformed_replies += 1
                self._retry_wait(exc, "GetRecords")  # the same iterator again: records already had are dropped
                continue
            except Exception as exc:
                if denied := refused(exc, "GetRecords", self.stream):
                    raise denied from None
                if trimmed_away(exc, self.client, self.stream, self.shard_id):
                    self._ended = True
                    return Batch(records=[], shard_end=True)
                if error_code(exc) == "ExpiredIteratorException":
                    self.stats.expired_iterators += 1
                    log.info("shard iterator expired; resuming after the last delivered record",
                             shard_id=self.shard_id, stream=self.stream,
                             resume_after=str(self._last_delivered or self._skip_through or "start"))
                    self._iterator = None
                    continue
                if not is_transient(exc):
                    raise
                self._retry_wait(exc, "GetRecords")
                continue
            self._backoff.reset()
            return batch

    def _to_batch(self, resp: Mapping[str, Any], started: float) -> Batch:
        raw = resp.get("Records")
        if not isinstance(raw, list):
            raise MalformedReply("GetRecords reply without Records (a body cut short or garbled?)")
        records = self._convert(raw)
        behind = resp.get("MillisBehindLatest")
        next_iterator = resp.get("NextShardIterator")
        children = tuple(
            ChildShard(c["ShardId"], tuple(c.get("ParentShards", ())))
            for c in resp.get("ChildShards") or ()
        )
        shard_end = next_iterator is None
        if shard_end and not children and not self._end_confirmed():
            # Deliver what the reply holds, then read on from a fresh iterator after it.
            self.stats.malformed_replies += 1
            log.warning("GetRecords reply without NextShardIterator for a shard the listing shows open: "
                        "not the end of the shard; reading on", shard_id=self.shard_id, stream=self.stream)
            shard_end = False
        self._iterator = next_iterator
        self._ended = shard_end
        has_backlog = bool(raw) and (behind is None or behind > 0)
        self._next_read_at = started + (MIN_READ_INTERVAL if has_backlog else self.idle_time)
        if not shard_end and next_iterator is None:
            self._next_read_at = started + MIN_READ_INTERVAL
        if records:
            self._last_delivered = records[-1].extended_sequence_number
            self.stats.records += len(records)
        return Batch(records=records, millis_behind_latest=behind, shard_end=shard_end,
                     child_shards=children, size=sum(len(r.data) for r in records))

    def _end_confirmed(self) -> bool:
        """No children named: believe the end only if the shard listing shows the shard closed
        (or gone). A listing that fails confirms nothing: the read is retried."""
        closed = shard_closed(self.client, self.stream, self.shard_id)
        if closed:
            log.info("shard end confirmed by the shard listing", shard_id=self.shard_id, stream=self.stream)
        return bool(closed)

    def resume_point(self) -> ExtendedSequenceNumber | None:
        """Where a new iterator or subscription must start (AT this, dropping it and before)."""
        return self._last_delivered or self._skip_through

    def convert(self, raw_records: list[dict[str, Any]]) -> list[Record]:
        """Records of a response, past the resume point, remembering the last one delivered."""
        records = self._convert(raw_records)
        if records:
            self._last_delivered = records[-1].extended_sequence_number
        return records

    def _convert(self, raw_records: list[dict[str, Any]]) -> list[Record]:
        # Records come in sequence order, so only the head of a batch can be at or before the
        # resume point: compare until the first record past it, then stop paying for it.
        threshold = self._last_delivered or self._skip_through
        out: list[Record] = []
        shard_id = self.shard_id
        make = self.record_type
        for raw in raw_records:
            seq = raw["SequenceNumber"]
            arrival = raw.get("ApproximateArrivalTimestamp")
            data: bytes = raw["Data"]
            users = deaggregate(data) if data[:4] == MAGIC else None
            if users is None:
                rec = make(data, raw["PartitionKey"], seq, 0, arrival, shard_id, raw.get("ExplicitHashKey"))
                if threshold is None or rec.extended_sequence_number > threshold:
                    out.append(rec)
                    threshold = None
                continue
            for sub, user in enumerate(users):
                rec = Record(user.data, user.partition_key, seq, sub, arrival, shard_id, user.explicit_hash_key,
                             True)
                if threshold is None or rec.extended_sequence_number > threshold:
                    out.append(rec)
                    threshold = None
        return out


class KinesisSource:
    """Lists a stream's shards and opens polling readers on them."""

    def __init__(self, client: KinesisClient, stream: str, *, max_records: int = 10000, idle_time: float = 1.5,
                 clock: Clock | None = None, record_type: type[Record] = Record) -> None:
        self._client = client
        self._stream = stream
        self.record_type = record_type
        self.max_records = max_records
        self.idle_time = idle_time
        self._clock = clock or SystemClock()
        #: Shared by every reader of this source: the worker's read throttles and retries.
        self.stats = ReaderStats()

    @property
    def stream(self) -> str:
        return self._stream

    def describe(self) -> str:
        """Check the stream exists; return its status. Raises SourceError with a clear message."""
        try:
            summary = self._client.describe_stream_summary(**stream_args(self._stream))
        except botocore.exceptions.ClientError as exc:
            if denied := refused(exc, "DescribeStreamSummary", self._stream):
                raise denied from None
            if error_code(exc) == "ResourceNotFoundException":
                raise SourceError(
                    f"Kinesis stream {self._stream!r} not found in region "
                    f"{self._client.meta.region_name} at {self._client.meta.endpoint_url}"
                ) from None
            raise SourceError(f"cannot describe Kinesis stream {self._stream!r}: {exc}") from None
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError):
            raise SourceError(f"cannot reach Kinesis at {self._client.meta.endpoint_url}") from None
        except botocore.exceptions.NoCredentialsError:
            raise SourceError("no AWS credentials found (see boto3's credential settings)") from None
        return str(summary["StreamDescriptionSummary"]["StreamStatus"])

    def stream_identifier(self) -> str:
        """KCL's multi-stream identifier ``account:streamName:creationEpochSeconds``."""
        summary = self._client.describe_stream_summary(**stream_args(self._stream))["StreamDescriptionSummary"]
        account = summary["StreamARN"].split(":")[4]
        return f"{account}:{summary['StreamName']}:{int(summary['StreamCreationTimestamp'].timestamp())}"

    def list_shards(self) -> list[ShardInfo]:
        shards: list[ShardInfo] = []
        args: dict[str, Any] = dict(stream_args(self._stream))
        backoff = Backoff(base=0.2, cap=5.0)
        while True:
            try:
                resp = self._client.list_shards(**args)
            except Exception as exc:
                if denied := refused(exc, "ListShards", self._stream):
                    raise denied from None
                if error_code(exc) == "ResourceNotFoundException":
                    raise SourceError(f"Kinesis stream {self._stream!r} not found") from None
                if not is_transient(exc):
                    raise
                self._clock.sleep(backoff.next_delay())
                continue
            for s in resp.get("Shards", []):
                parents = tuple(p for p in (s.get("ParentShardId"), s.get("AdjacentParentShardId")) if p)
                hk = s.get("HashKeyRange") or {}
                shards.append(ShardInfo(
                    shard_id=s["ShardId"],
                    parent_shard_ids=parents,
                    starting_hash_key=hk.get("StartingHashKey"),
                    ending_hash_key=hk.get("EndingHashKey"),
                    is_open="EndingSequenceNumber" not in s.get("SequenceNumberRange", {}),
                ))
            token = resp.get("NextToken")
            if not token:
                return shards
            # With NextToken, Kinesis rejects StreamName: the token alone names the listing.
            args = {"NextToken": token}

    def open_reader(self, shard_id: str, position: StartPosition) -> KinesisShardReader:
        return KinesisShardReader(self._client, self._stream, shard_id, position,
                                  max_records=self.max_records, idle_time=self.idle_time, clock=self._clock,
                                  stats=self.stats, record_type=self.record_type)


def list_stream_names(client: KinesisClient) -> list[str]:
    """Every stream name of the account and region (NextToken paging where the service gives a
    token, else the older start-name paging)."""
    names: list[str] = []
    args: dict[str, Any] = {}
    while True:
        try:
            page = client.list_streams(**args)
        except botocore.exceptions.ClientError as exc:
            if is_denied(exc):
                raise SourceAccessDenied(denied_message(exc, "kinesis", "ListStreams", "*")) from None
            raise
        listed = page.get("StreamNames", [])
        names += listed
        if not page.get("HasMoreStreams") or not listed:
            return names
        token = page.get("NextToken")
        args = {"NextToken": token} if token else {"ExclusiveStartStreamName": listed[-1]}
