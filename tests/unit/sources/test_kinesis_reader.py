from __future__ import annotations

from typing import Any, cast

import botocore.exceptions
import pytest
from botocore.exceptions import ClientError

from streamworker.clock import FakeClock
from streamworker.records import ExtendedSequenceNumber as ESN
from streamworker.records import StartPosition
from streamworker.sources.base import SourceAccessDenied
from streamworker.sources.kinesis.aggregation import UserRecord, aggregate
from streamworker.sources.kinesis.reader import KinesisShardReader, KinesisSource


def client_error(code: str, status: int = 400) -> ClientError:
    reply: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(reply, "Op")


class ScriptedKinesis:
    """Answers GetRecords from a script of responses and exceptions."""

    def __init__(self, script: Any, iterator_errors: Any=(), listed: Any=None) -> None:
        self.script = list(script)
        self.iterator_requests: list[Any] = []
        self.iterator_errors = list(iterator_errors)
        #: What ListShards answers: shard ids, or an exception (the stream is gone too).
        self.listed = listed if listed is not None else ["shard-1"]

    def get_shard_iterator(self, **kw: Any) -> dict[str, str]:
        self.iterator_requests.append(kw)
        if self.iterator_errors:
            raise self.iterator_errors.pop(0)
        return {"ShardIterator": f"it-{len(self.iterator_requests)}"}

    def list_shards(self, **kw: Any) -> dict[str, Any]:
        if isinstance(self.listed, Exception):
            raise self.listed
        return {"Shards": [{"ShardId": s} for s in self.listed]}

    def get_records(self, ShardIterator: Any, Limit: Any) -> Any:
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def raw(seq: int, data: bytes = b"x", pk: str = "k") -> dict[str, Any]:
    return {"SequenceNumber": str(seq), "Data": data, "PartitionKey": pk}


def resp(records: list[Any], behind: int = 0, next_it: str | None = "next") -> dict[str, Any]:
    return {"Records": records, "MillisBehindLatest": behind, "NextShardIterator": next_it}


def reader(client: Any, position: StartPosition | None = None, clock: FakeClock | None = None) -> KinesisShardReader:
    position = position or StartPosition("TRIM_HORIZON")
    return KinesisShardReader(client, "stream", "shard-1", position, max_records=100, idle_time=1.0,
                              clock=clock or FakeClock())


def test_aggregated_records_are_split_with_sub_sequence_numbers() -> None:
    agg = aggregate([UserRecord("a", None, b"1"), UserRecord("b", None, b"2"), UserRecord("c", None, b"3")])
    r = reader(ScriptedKinesis([resp([raw(10), raw(11, agg)])]))
    batch = r.read()
    assert [(x.sequence_number, x.sub_sequence_number, x.data, x.partition_key) for x in batch.records] == [
        ("10", 0, b"x", "k"), ("11", 0, b"1", "a"), ("11", 1, b"2", "b"), ("11", 2, b"3", "c")]
    assert [x.aggregated for x in batch.records] == [False, True, True, True]


def test_resuming_inside_an_aggregate_skips_what_was_checkpointed() -> None:
    agg = aggregate([UserRecord("a", None, b"1"), UserRecord("b", None, b"2"), UserRecord("c", None, b"3")])
    client = ScriptedKinesis([resp([raw(11, agg), raw(12)])])
    r = reader(client, StartPosition("AT_SEQUENCE_NUMBER", sequence=ESN("11", 1)))
    batch = r.read()
    assert client.iterator_requests[0]["ShardIteratorType"] == "AT_SEQUENCE_NUMBER"
    assert client.iterator_requests[0]["StartingSequenceNumber"] == "11"
    assert [(x.sequence_number, x.sub_sequence_number) for x in batch.records] == [("11", 2), ("12", 0)]


def test_expired_iterator_resumes_at_the_last_delivered_record() -> None:
    client = ScriptedKinesis([resp([raw(1), raw(2)], behind=100), client_error("ExpiredIteratorException"),
                              resp([raw(2), raw(3)])])
    r = reader(client)
    assert [x.sequence_number for x in r.read().records] == ["1", "2"]
    assert [x.sequence_number for x in r.read().records] == ["3"]  # "2" is not delivered twice
    assert client.iterator_requests[-1]["ShardIteratorType"] == "AT_SEQUENCE_NUMBER"
    assert client.iterator_requests[-1]["StartingSequenceNumber"] == "2"
    assert r.stats.expired_iterators == 1


@pytest.mark.parametrize("error", [client_error("ProvisionedThroughputExceededException"),
                                   client_error("InternalFailure", 500),
                                   botocore.exceptions.EndpointConnectionError(endpoint_url="http://x")])
def test_throttling_and_5xx_are_retried_with_backoff(error: Any) -> None:
    clock = FakeClock()
    client = ScriptedKinesis([error, error, resp([raw(1)])])
    r = reader(client, clock=clock)
    t0 = clock.monotonic()
    assert [x.sequence_number for x in r.read().records] == ["1"]
    assert r.stats.retries == 2
    assert clock.monotonic() - t0 >= 0.4  # at least the 200 ms floor per retry


def test_permanent_errors_are_raised() -> None:
    r = reader(ScriptedKinesis([client_error("ValidationException")]))
    with pytest.raises(botocore.exceptions.ClientError):
        r.read()


def test_a_refused_permission_is_raised_naming_the_action_and_the_stream() -> None:
    r = reader(ScriptedKinesis([client_error("AccessDeniedException")]))
    with pytest.raises(SourceAccessDenied, match=r"not allowed to perform kinesis:GetRecords on stream/"):
        r.read()


def test_reads_are_paced_at_most_five_per_second_and_idle_when_caught_up() -> None:
    clock = FakeClock()
    client = ScriptedKinesis([resp([raw(1)], behind=5000), resp([raw(2)], behind=0), resp([]), resp([])])
    r = reader(client, clock=clock)
    times = []
    for _ in range(4):
        r.read()
        times.append(clock.monotonic())
    gaps = [round(b - a, 3) for a, b in zip(times, times[1:], strict=False)]
    assert gaps == [0.2, 1.0, 1.0]


def test_shard_end_reports_children() -> None:
    end = resp([raw(9)], next_it=None)
    end["ChildShards"] = [{"ShardId": "shard-2", "ParentShards": ["shard-1"]}]
    r = reader(ScriptedKinesis([end]))
    batch = r.read()
    assert batch.shard_end and batch.child_shards[0].shard_id == "shard-2"
    assert r.read().shard_end and r.read().records == []


@pytest.mark.parametrize("where", ["GetShardIterator", "GetRecords"])
def test_a_shard_trimmed_past_retention_ends_so_its_children_can_start(where: Any) -> None:
    gone = client_error("ResourceNotFoundException")
    client = (ScriptedKinesis([], iterator_errors=[gone], listed=["shard-2", "shard-3"]) if where == "GetShardIterator"
              else ScriptedKinesis([gone], listed=["shard-2", "shard-3"]))
    r = reader(client, StartPosition("AT_SEQUENCE_NUMBER", sequence=ESN("11", 0)))
    batch = r.read()
    assert batch.shard_end and batch.records == []
    assert r.read().shard_end


@pytest.mark.parametrize("listed", [["shard-1"], client_error("ResourceNotFoundException")])
def test_resource_not_found_stands_while_the_shard_is_listed_or_the_stream_is_gone(listed: Any) -> None:
    # a deleted stream (or a shard still listed) is not a trimmed shard: the error halts the shard
    r = reader(ScriptedKinesis([], iterator_errors=[client_error("ResourceNotFoundException")], listed=listed))
    with pytest.raises(botocore.exceptions.ClientError):
        r.read()


def test_list_shards_follows_pages_with_the_token_alone() -> None:
    class Pages:
        calls = []

        def list_shards(self, **kw: Any) -> Any:
            self.calls.append(kw)
            if "NextToken" not in kw:
                return {"Shards": [{"ShardId": "s0", "SequenceNumberRange": {"StartingSequenceNumber": "1",
                                                                               "EndingSequenceNumber": "9"}}],
                        "NextToken": "t1"}
            return {"Shards": [{"ShardId": "s1", "ParentShardId": "s0", "SequenceNumberRange": {},
                                "HashKeyRange": {"StartingHashKey": "0", "EndingHashKey": "5"}}]}

    pages = Pages()
    shards = KinesisSource(cast(Any, pages), "stream").list_shards()
    assert [(s.shard_id, s.is_open, s.parent_shard_ids) for s in shards] == [("s0", False, ()),
                                                                           ("s1", True, ("s0",))]
    assert pages.calls == [{"StreamName": "stream"}, {"NextToken": "t1"}]


def test_at_timestamp_and_after_sequence_number_positions() -> None:
    from datetime import datetime, timezone

    when = datetime(2026, 1, 2, tzinfo=timezone.utc)
    client = ScriptedKinesis([resp([raw(5)])])
    reader(client, StartPosition("AT_TIMESTAMP", timestamp=when)).read()
    assert client.iterator_requests[0]["ShardIteratorType"] == "AT_TIMESTAMP"
    assert client.iterator_requests[0]["Timestamp"] == when
    client = ScriptedKinesis([resp([raw(7), raw(8)])])
    batch = reader(client, StartPosition("AFTER_SEQUENCE_NUMBER", sequence=ESN("7"))).read()
    assert [r.sequence_number for r in batch.records] == ["8"]
    client = ScriptedKinesis([resp([raw(9)])])
    reader(client, StartPosition("LATEST")).read()
    assert client.iterator_requests[0]["ShardIteratorType"] == "LATEST"


def test_a_reply_without_records_is_retried_and_an_unconfirmed_end_reads_on() -> None:
    """Issue 11, defect 1: a reply botocore could not parse has neither Records nor
    NextShardIterator; an end of shard needs the children named or the listing to agree."""
    from botocore.exceptions import CredentialRetrievalError

    client = ScriptedKinesis([
        {"ResponseMetadata": {}},                      # a body cut short: parsed as nothing
        CredentialRetrievalError(provider="process", error_msg="down"),  # credentials, for a moment
        resp([raw(1), raw(2)], next_it=None),          # no iterator, no children, shard listed open
        resp([raw(2), raw(3)], next_it="n"),           # from a fresh iterator AT 2: 2 dropped
    ])
    r = reader(client)
    assert [x.sequence_number for x in r.read().records] == ["1", "2"]
    batch = r.read()
    assert [x.sequence_number for x in batch.records] == ["3"] and not batch.shard_end
    assert client.iterator_requests[-1]["StartingSequenceNumber"] == "2"
    assert r.stats.malformed_replies == 2 and r.stats.retries == 2


def test_an_end_is_believed_with_children_or_when_the_listing_no_longer_shows_the_shard() -> None:
    children = [{"ShardId": "shard-2", "ParentShards": ["shard-1"]}]
    r = reader(ScriptedKinesis([{**resp([raw(1)], next_it=None), "ChildShards": children}]))
    assert r.read().shard_end
    r = reader(ScriptedKinesis([resp([raw(1)], next_it=None)], listed=["shard-2"]))
    assert r.read().shard_end
