"""DynamoDB Streams as a source (``--source dynamodb-streams --table T`` or a stream ARN).

Built the way AWS's dynamodb-streams-kinesis-adapter fits the KCL: ``StreamsAsKinesis`` answers
the Kinesis calls the polling reader makes (ListShards, DescribeStreamSummary, GetShardIterator,
GetRecords) from the DynamoDB Streams API, so the Kinesis reader's retries, expired-iterator
recovery and end-of-shard checks, the lease table, lineage (a child shard starts once its parents
reached SHARD_END: DynamoDB Streams rolls its shards over every few hours) and the checkpoints
work unchanged, in KCL's lease table format (what a KCL + adapter application wrote is continued).

Each stream record becomes a ``StreamRecord``: ``data`` is the stream record as JSON (the
adapter's format: eventID, eventName, eventSource, awsRegion, dynamodb{Keys, NewImage, OldImage,
SequenceNumber, ...} in DynamoDB JSON), the partition key is the item's key (so per-key
parallelism keeps one item's changes in order), and ``event_name``, ``keys``, ``new_image`` and
``old_image`` read it back, the images deserialized to Python values (``boto3``'s
TypeDeserializer: numbers as Decimal, sets as sets, binary as Binary).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import botocore.exceptions

from streamworker.errors import ConfigError, SourceError
from streamworker.records import Record

#: GetRecords returns at most this many records a call on DynamoDB Streams.
MAX_RECORDS = 1000
_STATUS = {"ENABLED": "ACTIVE", "ENABLING": "CREATING", "DISABLING": "ACTIVE", "DISABLED": "ACTIVE"}
_ITERATOR_TYPES = {"TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"}


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return int(value.timestamp())  # the adapter's JSON: epoch seconds
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


class StreamRecord(Record):
    """A Record of a DynamoDB stream, with the change it describes read from ``data``."""

    @cached_property
    def change(self) -> dict[str, Any]:
        """The stream record, as DynamoDB Streams gave it (DynamoDB JSON attribute values)."""
        parsed: dict[str, Any] = json.loads(self.data)
        return parsed

    @property
    def event_name(self) -> str:
        """INSERT, MODIFY or REMOVE."""
        return str(self.change.get("eventName", ""))

    @property
    def keys(self) -> dict[str, Any]:
        return _deserialized(self.change.get("dynamodb", {}).get("Keys"))

    @property
    def new_image(self) -> dict[str, Any] | None:
        """The item after the change (stream view NEW_IMAGE or NEW_AND_OLD_IMAGES; None otherwise)."""
        image = self.change.get("dynamodb", {}).get("NewImage")
        return None if image is None else _deserialized(image)

    @property
    def old_image(self) -> dict[str, Any] | None:
        """The item before the change (OLD_IMAGE or NEW_AND_OLD_IMAGES; None otherwise)."""
        image = self.change.get("dynamodb", {}).get("OldImage")
        return None if image is None else _deserialized(image)


def _deserialized(image: dict[str, Any] | None) -> dict[str, Any]:
    if not image:
        return {}
    from boto3.dynamodb.types import TypeDeserializer

    d = TypeDeserializer()
    return {name: d.deserialize(value) for name, value in image.items()}


@dataclass
class StreamsAsKinesis:
    """The Kinesis calls of streamworker's polling reader, answered by DynamoDB Streams."""

    streams: Any  # a boto3 dynamodbstreams client

    @property
    def meta(self) -> Any:
        return self.streams.meta

    def _arn(self, kw: dict[str, Any]) -> str:
        return str(kw.get("StreamARN") or kw.get("StreamName"))

    def describe_stream_summary(self, **kw: Any) -> dict[str, Any]:
        desc = self.streams.describe_stream(StreamArn=self._arn(kw), Limit=1)["StreamDescription"]
        return {"StreamDescriptionSummary": {
            "StreamName": desc.get("TableName", ""), "StreamARN": desc["StreamArn"],
            "StreamStatus": _STATUS.get(desc.get("StreamStatus", ""), desc.get("StreamStatus")),
            "StreamCreationTimestamp": desc.get("CreationRequestDateTime"), "OpenShardCount": 0}}

    def list_shards(self, **kw: Any) -> dict[str, Any]:
        if "NextToken" in kw:  # ours: the stream and the last shard listed
            arn, last = str(kw["NextToken"]).rsplit("|", 1)
            args: dict[str, Any] = {"StreamArn": arn, "ExclusiveStartShardId": last}
        else:
            arn = self._arn(kw)
            args = {"StreamArn": arn}
        desc = self.streams.describe_stream(**args)["StreamDescription"]
        shards = [{"ShardId": s["ShardId"], "ParentShardId": s.get("ParentShardId"),
                   "SequenceNumberRange": s.get("SequenceNumberRange", {})} for s in desc.get("Shards", [])]
        for s in shards:
            if s["ParentShardId"] is None:
                del s["ParentShardId"]
        out: dict[str, Any] = {"Shards": shards}
        if desc.get("LastEvaluatedShardId"):
            out["NextToken"] = f"{arn}|{desc['LastEvaluatedShardId']}"
        return out

    def get_shard_iterator(self, **kw: Any) -> dict[str, Any]:
        kind = kw["ShardIteratorType"]
        if kind not in _ITERATOR_TYPES:
            raise ConfigError(f"DynamoDB Streams cannot start a shard at {kind} (TRIM_HORIZON or LATEST only)")
        args: dict[str, Any] = {"StreamArn": self._arn(kw), "ShardId": kw["ShardId"], "ShardIteratorType": kind}
        if "StartingSequenceNumber" in kw:
            args["SequenceNumber"] = kw["StartingSequenceNumber"]
        try:
            return {"ShardIterator": self.streams.get_shard_iterator(**args)["ShardIterator"]}
        except botocore.exceptions.ClientError as exc:
            # a sequence number past the stream's 24 hours: what Kinesis calls trimmed away
            if exc.response.get("Error", {}).get("Code") == "TrimmedDataAccessException":
                exc.response["Error"]["Code"] = "ResourceNotFoundException"
            raise

    def get_records(self, ShardIterator: str, Limit: int = MAX_RECORDS) -> dict[str, Any]:  # noqa: N803 - Kinesis's names
        resp = self.streams.get_records(ShardIterator=ShardIterator, Limit=min(Limit, MAX_RECORDS))
        out: dict[str, Any] = {"Records": [_as_kinesis(r) for r in resp.get("Records", [])]}
        if resp.get("NextShardIterator"):
            out["NextShardIterator"] = resp["NextShardIterator"]
        return out


def _as_kinesis(r: dict[str, Any]) -> dict[str, Any]:
    ddb = r.get("dynamodb", {})
    return {"SequenceNumber": ddb["SequenceNumber"],
            "Data": json.dumps(r, default=_json_default, separators=(",", ":")).encode(),
            "PartitionKey": json.dumps(ddb.get("Keys", {}), sort_keys=True, separators=(",", ":")),
            "ApproximateArrivalTimestamp": ddb.get("ApproximateCreationDateTime")}


def stream_arn(dynamodb: Any, streams: Any, table_or_arn: str) -> str:
    """The stream to read: an ARN as given, else the table's latest stream."""
    if table_or_arn.startswith("arn:") and "/stream/" in table_or_arn:
        return table_or_arn
    try:
        table = dynamodb.describe_table(TableName=table_or_arn)["Table"]
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise SourceError(f"DynamoDB table {table_or_arn!r} not found") from None
        raise
    arn = table.get("LatestStreamArn")
    if not arn or not table.get("StreamSpecification", {}).get("StreamEnabled", True):
        raise SourceError(f"DynamoDB table {table_or_arn!r} has no stream: enable one (StreamSpecification, "
                          f"NEW_AND_OLD_IMAGES for both images)")
    return str(arn)
