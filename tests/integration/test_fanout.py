"""Enhanced fan-out on kinesis-mock (with the initial-response shim, streamworker/local/fanout_shim.py)."""

from __future__ import annotations

import time
from typing import Any, cast

import boto3

from streamworker.local import KinesisMock, MotoServer, fanout_shim
from streamworker.records import StartPosition
from streamworker.sources.kinesis.fanout import FanoutSource

from .conftest import make_stream, produce, wait_for
from .inprocess import Collected, start_worker


def test_fanout_reader_resubscribes_without_gaps(aws_env: dict[str, str], kinesis_mock: KinesisMock, names: dict[str, str]) -> None:
    kinesis = boto3.client("kinesis", endpoint_url=kinesis_mock.endpoint)
    fanout_shim.install(kinesis)
    stream = names["stream"]
    make_stream(kinesis, stream, 1)
    source = FanoutSource(kinesis, stream, names["app"])
    arn = source.consumer_arn()
    assert FanoutSource(kinesis, stream, names["app"]).consumer_arn() == arn  # registered once, then reused
    produce(kinesis, stream, 0, 50)
    reader = source.open_reader("shardId-000000000000", StartPosition("TRIM_HORIZON"))
    reader.resubscribe_after = 1.0  # instead of ~5 minutes
    got: list[int] = []
    deadline = time.monotonic() + 30
    subscriptions = 0
    while len(got) < 150 and time.monotonic() < deadline:
        batch = reader.read()
        got += [int(r.data) for r in batch.records]
        if len(got) >= 50 and subscriptions == 0:
            subscriptions = source.stats.get_records_calls
            produce(kinesis, stream, 50, 100)
    assert got == list(range(150))  # in order, nothing twice, nothing missed across re-subscriptions
    assert source.stats.get_records_calls > subscriptions >= 1
    reader.close()


def test_workers_read_through_fanout(aws_env: dict[str, str], kinesis_mock: KinesisMock, moto_server: MotoServer, names: dict[str, str]) -> None:
    kinesis = boto3.client("kinesis", endpoint_url=kinesis_mock.endpoint)
    fanout_shim.install(kinesis)
    ddb = boto3.client("dynamodb", endpoint_url=moto_server.endpoint)
    stream = names["stream"]
    make_stream(kinesis, stream, 4)
    out = Collected()
    workers = [start_worker(n, stream, names["app"], out, kinesis, ddb, retrieval="fanout") for n in ("A", "B")]
    try:
        produce(kinesis, stream, 0, 400)
        wait_for(lambda: len(out.data()) >= 400, 60, "400 records through SubscribeToShard")
        assert sorted(int(d) for d in out.data()) == list(range(400))
        consumers = kinesis.list_stream_consumers(
            StreamARN=kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamARN"])
        assert [c["ConsumerName"] for c in consumers["Consumers"]] == [names["app"]]
    finally:
        for w in workers:
            w.shutdown()


def test_one_worker_reads_two_streams_through_fanout(aws_env: dict[str, str], kinesis_mock: KinesisMock, moto_server: MotoServer, names: dict[str, str]) -> None:
    kinesis = boto3.client("kinesis", endpoint_url=kinesis_mock.endpoint)
    fanout_shim.install(kinesis)
    ddb = boto3.client("dynamodb", endpoint_url=moto_server.endpoint)
    s1, s2 = f"{names['stream']}-1", f"{names['stream']}-2"
    make_stream(kinesis, s1, 2)
    make_stream(kinesis, s2, 1)
    out = Collected()
    w = start_worker("A", s1, names["app"], out, kinesis, ddb, retrieval="fanout", streams=[s2])
    try:
        produce(kinesis, s1, 0, 60)
        produce(kinesis, s2, 100, 40)
        wait_for(lambda: len(out.data()) >= 100, 60, "both streams through SubscribeToShard")
        assert sorted(int(d) for d in out.data()) == [*range(60), *range(100, 140)]
        for s in (s1, s2):  # a consumer named after the application on each stream
            arn = kinesis.describe_stream_summary(StreamName=s)["StreamDescriptionSummary"]["StreamARN"]
            assert [c["ConsumerName"] for c in kinesis.list_stream_consumers(StreamARN=arn)["Consumers"]] == [
                names["app"]]
    finally:
        w.shutdown()


def test_a_re_created_stream_is_read_through_a_consumer_of_its_own(aws_env: dict[str, str], kinesis_mock: KinesisMock, moto_server: MotoServer, names: dict[str, str]) -> None:
    kinesis = boto3.client("kinesis", endpoint_url=kinesis_mock.endpoint)
    fanout_shim.install(kinesis)
    ddb = boto3.client("dynamodb", endpoint_url=moto_server.endpoint)
    stream = f"{names['stream']}-a"
    make_stream(kinesis, stream, 1)
    out = Collected()
    # no periodic shard sync: set_streams([]) asks for one (the pattern lists the streams)
    w = start_worker("A", None, names["app"], out, kinesis, ddb, retrieval="fanout",
                     stream_pattern=f"{names['stream']}-.*", shard_sync_interval=600)

    def creation(s: Any) -> Any:
        return kinesis.describe_stream_summary(StreamName=s)["StreamDescriptionSummary"]["StreamCreationTimestamp"]

    try:
        produce(kinesis, stream, 0, 20)
        wait_for(lambda: len(out.data()) >= 20, 60, "the first incarnation read")
        first = creation(stream).timestamp()
        kinesis.delete_stream(StreamName=stream, EnforceConsumerDeletion=True)
        kinesis.get_waiter("stream_not_exists").wait(StreamName=stream, WaiterConfig=cast(Any, {"Delay": 0.2}))
        wait_for(lambda: time.time() >= first + 1, 5, "a new creation second")  # KCL keys hold seconds
        make_stream(kinesis, stream, 1)
        w.set_streams([])
        produce(kinesis, stream, 100, 20)
        wait_for(lambda: len(out.data()) >= 40, 60, "the re-created stream read")
        assert sorted(int(d) for d in out.data()) == [*range(20), *range(100, 120)]
    finally:
        w.shutdown()
