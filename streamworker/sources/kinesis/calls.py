"""What both Kinesis readers (GetRecords polling and enhanced fan-out) share: how a stream is
named in a call, a refused permission, a shard trimmed away, what the shard listing says about a
shard, a reply that cannot be right, and the readers' counters."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

import structlog

from streamworker.aws.errors import denied_message, describe, error_code, is_denied
from streamworker.sources.base import SourceAccessDenied

if TYPE_CHECKING:
    from mypy_boto3_kinesis.client import KinesisClient

log = structlog.get_logger("streamworker.kinesis")


class StreamArgs(TypedDict, total=False):
    StreamName: str
    StreamARN: str


def stream_args(stream: str) -> StreamArgs:
    """StreamName or StreamARN, whichever ``stream`` is."""
    return {"StreamARN": stream} if stream.startswith("arn:") else {"StreamName": stream}


def refused(exc: BaseException, operation: str, stream: str) -> SourceAccessDenied | None:
    """The error to stop with when ``exc`` is a refused permission on ``stream``, else None."""
    if not is_denied(exc):
        return None
    resource = stream if stream.startswith("arn:") else f"stream/{stream}"
    return SourceAccessDenied(denied_message(exc, "kinesis", operation, resource))


def trimmed_away(exc: BaseException, client: KinesisClient, stream: str, shard_id: str) -> bool:
    """After an error on a shard: True (with a warning) if it is ResourceNotFound and the stream
    exists but no longer lists the shard (a closed shard trimmed past the retention period): the
    caller ends the shard so its children can start. False if the shard is still listed, the
    stream is gone too, or the check itself fails: then the error stands."""
    if error_code(exc) != "ResourceNotFoundException":
        return False
    args: dict[str, Any] = dict(stream_args(stream))
    try:
        while True:
            resp = client.list_shards(**args)
            if any(s["ShardId"] == shard_id for s in resp.get("Shards", [])):
                return False
            if not resp.get("NextToken"):
                break
            args = {"NextToken": resp["NextToken"]}
    except Exception as check:  # the check failed: the original error stands (and is judged on its own)
        log.debug("shard listing after an error failed", shard_id=shard_id, error=describe(check))
        return False
    log.warning("shard no longer exists (trimmed past the stream's retention period): ending it so that its "
                "children can start; records trimmed before they were read are lost", shard_id=shard_id,
                stream=stream)
    return True


@dataclass
class ReaderStats:
    get_records_calls: int = 0
    throttles: int = 0
    retries: int = 0
    expired_iterators: int = 0
    records: int = 0
    #: Replies that parsed but were not a whole GetRecords reply (a body cut short or garbled,
    #: an event without records, an end of shard the shard listing contradicts): retried.
    malformed_replies: int = 0

    @classmethod
    def total(cls, stats: Iterable[ReaderStats]) -> ReaderStats:
        out = cls()
        for st in stats:
            for f in dataclasses.fields(cls):
                setattr(out, f.name, getattr(out, f.name) + getattr(st, f.name))
        return out


class MalformedReply(Exception):
    """A 200 reply that is not a whole response: retried, never taken as the end of a shard."""


def shard_closed(client: KinesisClient, stream: str, shard_id: str) -> bool | None:
    """What the shard listing says: True if the shard is closed (has an ending sequence number)
    or no longer listed, False if it is open, None if the listing failed."""
    args: dict[str, Any] = dict(stream_args(stream))
    try:
        while True:
            resp = client.list_shards(**args)
            for s in resp.get("Shards", []):
                if s["ShardId"] == shard_id:
                    return "EndingSequenceNumber" in s.get("SequenceNumberRange", {})
            if not resp.get("NextToken"):
                return True
            args = {"NextToken": resp["NextToken"]}
    except Exception as exc:
        log.debug("shard listing failed", shard_id=shard_id, stream=stream, error=describe(exc))
        return None
