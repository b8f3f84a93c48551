"""FanoutShardReader against a scripted SubscribeToShard: re-subscription, retries, end of shard."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import botocore.exceptions
import pytest
from botocore.exceptions import ClientError

from streamworker.clock import FakeClock
from streamworker.records import ExtendedSequenceNumber as ESN
from streamworker.records import StartPosition
from streamworker.sources.base import StopReading
from streamworker.sources.kinesis.fanout import END_CHECK_INTERVAL, FanoutShardReader


def client_error(code: str, status: int = 400) -> ClientError:
    reply: Any = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return botocore.exceptions.ClientError(reply, "Op")


def raw(seq: int, data: bytes = b"x") -> dict[str, Any]:
    return {"SequenceNumber": str(seq), "Data": data, "PartitionKey": "k"}


def event(records: list[Any], continuation: str | None = "c", behind: int = 0, children: list[dict[str, Sequence[str]]] | None = None) -> dict[str, Any]:
    body = {"Records": records, "MillisBehindLatest": behind}
    if continuation is not None:
        body["ContinuationSequenceNumber"] = continuation
    if children is not None:
        body["ChildShards"] = children
    return {"SubscribeToShardEvent": body}


class EventStream:
    def __init__(self, items: Any) -> None:
        self.items = list(items)
        self.closed = False

    def __iter__(self) -> Iterator[None]:
        for item in self.items:
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.closed = True


class ScriptedFanout:
    """Each SubscribeToShard call takes the next script step: an exception, or a list of events
    (and exceptions raised mid-stream). GetRecords answers from ``get_records_script``."""

    def __init__(self, subscriptions: Any, get_records_script: Any=()) -> None:
        self.subscriptions = list(subscriptions)
        self.requests: list[Any] = []
        self.get_records_script = list(get_records_script)
        self.iterator_requests: list[Any] = []

    def subscribe_to_shard(self, **kw: Any) -> dict[str, EventStream]:
        self.requests.append(kw)
        step = self.subscriptions.pop(0)
        if isinstance(step, BaseException):
            raise step
        return {"EventStream": EventStream(step)}

    listed = ("shard-1",)

    def list_shards(self, **kw: Any) -> dict[str, list[dict[str, str]]]:
        return {"Shards": [{"ShardId": s} for s in self.listed]}

    def get_shard_iterator(self, **kw: Any) -> dict[str, str]:
        self.iterator_requests.append(kw)
        return {"ShardIterator": "it"}

    def get_records(self, ShardIterator: Any, Limit: Any) -> Any:
        step = self.get_records_script.pop(0)
        if isinstance(step, BaseException):
            raise step
        return step


def reader(client: Any, position: StartPosition | None = None, clock: FakeClock | None = None, closed: bool = False) -> FanoutShardReader:
    return FanoutShardReader(client, "consumer-arn", "shard-1", position or StartPosition("TRIM_HORIZON"),
                             clock=clock or FakeClock(), stream="s", is_closed=lambda: closed)


def test_end_of_shard_is_the_event_without_continuation_and_names_the_children() -> None:
    children = [{"ShardId": "shard-2", "ParentShards": ["shard-1"]}, {"ShardId": "shard-3", "ParentShards": ["shard-1"]}]
    client = ScriptedFanout([[event([raw(1), raw(2)], "2"), event([raw(3)], None, children=children)]])
    r = reader(client)
    assert [x.sequence_number for x in r.read().records] == ["1", "2"]
    last = r.read()
    assert [x.sequence_number for x in last.records] == ["3"] and last.shard_end
    assert [(c.shard_id, c.parent_shard_ids) for c in last.child_shards] == [("shard-2", ("shard-1",)),
                                                                              ("shard-3", ("shard-1",))]
    assert r.read().shard_end and len(client.requests) == 1  # no further subscription


def test_resubscribes_at_the_continuation_before_the_five_minute_limit() -> None:
    clock = FakeClock()
    client = ScriptedFanout([[event([raw(1)], "5"), event([raw(2)], "6")], [event([raw(7)], "7")]])
    r = reader(client, clock=clock)
    r.resubscribe_after = 10.0
    assert [x.sequence_number for x in r.read().records] == ["1"]
    clock.advance(10.0)
    assert [x.sequence_number for x in r.read().records] == ["7"]
    assert client.requests[0]["StartingPosition"] == {"Type": "TRIM_HORIZON"}
    assert client.requests[1]["StartingPosition"] == {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "5"}


def test_a_resumed_reader_subscribes_at_its_checkpoint_and_drops_it() -> None:
    client = ScriptedFanout([[event([raw(10), raw(11)], "11")]])
    r = reader(client, StartPosition("AT_SEQUENCE_NUMBER", sequence=ESN("10", 0)))
    assert [x.sequence_number for x in r.read().records] == ["11"]
    assert client.requests[0]["StartingPosition"] == {"Type": "AT_SEQUENCE_NUMBER", "SequenceNumber": "10"}


@pytest.mark.parametrize("fault", [client_error("ResourceInUseException"), client_error("LimitExceededException"),
                                   client_error("InternalFailure", 500),
                                   botocore.exceptions.ReadTimeoutError(endpoint_url="x")])
def test_subscribe_faults_are_retried_with_backoff(fault: Any) -> None:
    clock = FakeClock()
    client = ScriptedFanout([fault, [event([raw(1)], "1")]])
    r = reader(client, clock=clock)
    start = clock.monotonic()
    assert [x.sequence_number for x in r.read().records] == ["1"]
    assert r.stats.retries == 1 and clock.monotonic() > start
    assert r.stats.throttles == (1 if "LimitExceeded" in str(fault) else 0)  # counted as a read throttle


@pytest.mark.parametrize("fault", [botocore.exceptions.ConnectionClosedError(endpoint_url="x"),
                                   botocore.exceptions.ReadTimeoutError(endpoint_url="x")])  # a stalled stream
def test_a_broken_or_stalled_subscription_continues_after_the_last_event(fault: Any) -> None:
    client = ScriptedFanout([[event([raw(1)], "1"), fault], [event([raw(2)], "2")]])
    r = reader(client)
    assert [x.sequence_number for x in r.read().records] == ["1"]
    assert [x.sequence_number for x in r.read().records] == ["2"]
    assert client.requests[1]["StartingPosition"] == {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "1"}


def test_a_close_during_subscribe_leaves_no_subscription_open() -> None:
    client = ScriptedFanout([[event([raw(1)], "1")]])
    r = reader(client)
    opened = []
    subscribe = client.subscribe_to_shard

    def closing_subscribe(**kw: Any) -> Any:  # the lease is handed off while SubscribeToShard is in flight
        resp = subscribe(**kw)
        opened.append(resp["EventStream"])
        r.close()
        return resp

    client.subscribe_to_shard = closing_subscribe  # type: ignore[method-assign]
    with pytest.raises(StopReading):
        r.read()
    assert opened[0].closed


def test_permanent_subscribe_errors_are_raised() -> None:
    r = reader(ScriptedFanout([client_error("ResourceNotFoundException")]))  # the shard is listed: not trimmed
    with pytest.raises(botocore.exceptions.ClientError):
        r.read()


def test_a_shard_trimmed_past_retention_ends_on_subscribe() -> None:
    client = ScriptedFanout([client_error("ResourceNotFoundException")])
    client.listed = ("shard-2",)
    r = reader(client)
    assert r.read().shard_end and r.read().shard_end


def test_closed_shard_read_up_to_date_is_confirmed_ended_by_get_records() -> None:
    # kinesis-mock (and LocalStack) keep sending empty events with a continuation after a closed
    # shard's last record; one GetRecords after the continuation settles it.
    children = [{"ShardId": "shard-2", "ParentShards": ["shard-1"]}]
    client = ScriptedFanout([[event([raw(1)], "1"), event([], "1")]],
                            [{"Records": [], "NextShardIterator": None, "ChildShards": children}])
    r = reader(client, closed=True)
    assert [x.sequence_number for x in r.read().records] == ["1"]
    end = r.read()
    assert end.shard_end and [c.shard_id for c in end.child_shards] == ["shard-2"]
    assert client.iterator_requests == [{"StreamName": "s", "ShardId": "shard-1",
                                         "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                                         "StartingSequenceNumber": "1"}]


def test_no_end_check_on_an_open_shard_or_while_behind_and_at_most_one_per_interval() -> None:
    clock = FakeClock()
    open_client = ScriptedFanout([[event([], "1"), event([], "1")]])
    r = reader(open_client, clock=clock, closed=False)
    assert not r.read().shard_end and not r.read().shard_end
    assert open_client.iterator_requests == []

    closed_client = ScriptedFanout(
        [[event([], "1", behind=500), event([], "1"), event([], "1"), event([], "1")]],
        [{"Records": [raw(2)], "NextShardIterator": "more"}, {"Records": [], "NextShardIterator": None}])
    r = reader(closed_client, clock=clock, closed=True)
    assert not r.read().shard_end  # behind: not checked
    assert not r.read().shard_end  # checked: a record is still there
    assert not r.read().shard_end  # within the interval: not checked again
    assert len(closed_client.iterator_requests) == 1
    clock.advance(END_CHECK_INTERVAL)
    assert r.read().shard_end
    assert len(closed_client.iterator_requests) == 2


def test_a_failing_end_check_is_retried_later_and_never_raises() -> None:
    clock = FakeClock()
    client = ScriptedFanout([[event([], "1"), event([], "1")]],
                            [client_error("ProvisionedThroughputExceededException")])
    r = reader(client, clock=clock, closed=True)
    assert not r.read().shard_end
    clock.advance(END_CHECK_INTERVAL)
    client.get_records_script.append({"Records": [], "NextShardIterator": None})
    assert r.read().shard_end


def test_a_garbled_event_or_an_unconfirmed_end_resubscribes_at_the_last_continuation() -> None:
    """Issue 11, defect 1 (fan-out): botocore parses a garbled event payload into an event with
    neither Records nor a continuation, which used to end the shard."""
    client = ScriptedFanout([
        [event([raw(1), raw(2)], continuation="2"), {"SubscribeToShardEvent": {}}],
        [event([raw(3)], continuation=None)],  # no children, and the listing shows the shard open
        [event([raw(3), raw(4)], continuation="4")],
    ])
    r = reader(client, clock=FakeClock())
    assert [x.sequence_number for x in r.read().records] == ["1", "2"]
    batch = r.read()
    assert [x.sequence_number for x in batch.records] == ["3", "4"] and not batch.shard_end
    assert [q["StartingPosition"] for q in client.requests[1:]] == [
        {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": "2"}] * 2
    assert r.stats.malformed_replies == 2


def test_an_end_without_children_is_believed_when_the_listing_shows_the_shard_closed() -> None:
    client = ScriptedFanout([[event([raw(1)], continuation=None)]])
    client.list_shards = lambda **kw: {"Shards": [  # type: ignore[method-assign]
        {"ShardId": "shard-1", "SequenceNumberRange": {"StartingSequenceNumber": "0", "EndingSequenceNumber": "9"}}]}
    r = reader(client, clock=FakeClock())
    batch = r.read()
    assert batch.shard_end and [x.sequence_number for x in batch.records] == ["1"]
