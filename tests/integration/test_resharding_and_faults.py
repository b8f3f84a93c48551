"""Resharding on kinesis-mock (faithful lineage) and injected read faults on moto."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.awsrequest
import pytest

from streamworker.leases.dynamodb.table import LeaseTable
from streamworker.local import KinesisMock, MotoServer, fanout_shim

from .conftest import make_stream, produce, wait_for
from .inprocess import Collected, start_worker

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("retrieval", ["polling", "fanout"])
def test_split_while_producing_processes_everything_in_order_parent_first(aws_env: dict[str, str], kinesis_mock: KinesisMock, moto_server: MotoServer,
                                                                           names: dict[str, str], retrieval: Any) -> None:
    kinesis = boto3.client("kinesis", endpoint_url=kinesis_mock.endpoint)
    if retrieval == "fanout":
        fanout_shim.install(kinesis)
    ddb = boto3.client("dynamodb", endpoint_url=moto_server.endpoint)
    stream = names["stream"]
    make_stream(kinesis, stream, 2)
    out = Collected()
    # Finished leases kept, to check the parent's row below (their cleanup has its own test).
    workers = [start_worker(n, stream, names["app"], out, kinesis, ddb, shard_sync_interval=1.0,
                            retrieval=retrieval, cleanup_finished_leases=False) for n in ("W1", "W2")]
    try:
        keys = [f"key-{i}" for i in range(20)]
        counters = dict.fromkeys(keys, 0)

        def burst(n: Any) -> None:
            entries: list[Any] = []
            for i in range(n):
                k = keys[i % len(keys)]
                entries.append({"Data": json.dumps([k, counters[k]]).encode(), "PartitionKey": k})
                counters[k] += 1
            for j in range(0, len(entries), 100):
                resp = kinesis.put_records(StreamName=stream, Records=entries[j:j + 100])
                assert resp.get("FailedRecordCount", 0) == 0

        burst(400)
        wait_for(lambda: len(out.data()) >= 200, 30, "processing to start")
        shard0 = kinesis.list_shards(StreamName=stream)["Shards"][0]
        lo, hi = int(shard0["HashKeyRange"]["StartingHashKey"]), int(shard0["HashKeyRange"]["EndingHashKey"])
        kinesis.split_shard(StreamName=stream, ShardToSplit=shard0["ShardId"], NewStartingHashKey=str((lo + hi) // 2))
        wait_for(lambda: kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
                 ["StreamStatus"] == "ACTIVE", 30, "the split")
        burst(400)
        total = sum(counters.values())
        wait_for(lambda: len(set(out.data())) >= total, 60, f"all {total} records")
    finally:
        for w in workers:
            w.shutdown(15)

    shards = {s["ShardId"]: s for s in kinesis.list_shards(StreamName=stream)["Shards"]}
    children = {sid for sid, s in shards.items() if s.get("ParentShardId") == shard0["ShardId"]}
    assert len(children) == 2
    with out.lock:
        records = list(out.records)
        events = list(out.events)
    # every record processed, in order per partition key (first deliveries)
    first_seen: dict[Any, Any] = {}
    for r in records:
        k, n = json.loads(r[5])
        first_seen.setdefault((k, n), r)
    assert {kn for kn in first_seen} == {(k, n) for k in keys for n in range(counters[k])}
    for k in keys:
        order = [json.loads(r[5])[1] for r in records if json.loads(r[5])[0] == k]
        firsts = []
        for n in order:
            if n not in firsts:
                firsts.append(n)
        assert firsts == sorted(firsts), f"{k} out of order: {firsts}"
    # parent before children: nothing from a child was processed before the parent's last record
    parent_done = max(r[6] for r in records if r[1] == shard0["ShardId"])
    child_start = min(r[6] for r in records if r[1] in children)
    assert parent_done <= child_start
    assert ("shard_ended" in {e[0] for e in events if e[2] == shard0["ShardId"]})
    lease = ddb.get_item(TableName=names["app"], Key={"leaseKey": {"S": shard0["ShardId"]}})["Item"]
    assert lease["checkpoint"]["S"] == "SHARD_END"
    assert set(lease["childShardIds"]["SS"]) == children
    for child in children:
        child_lease = ddb.get_item(TableName=names["app"], Key={"leaseKey": {"S": child}})["Item"]
        assert child_lease["parentShardId"]["SS"] == [shard0["ShardId"]]


def test_a_finished_parent_lease_is_deleted_once_its_children_checkpointed(aws_env: dict[str, str], kinesis_mock: KinesisMock, moto_server: MotoServer,
                                                                           names: dict[str, str]) -> None:
    kinesis = boto3.client("kinesis", endpoint_url=kinesis_mock.endpoint)
    ddb = boto3.client("dynamodb", endpoint_url=moto_server.endpoint)
    stream = names["stream"]
    make_stream(kinesis, stream, 1)
    out = Collected()
    w = start_worker("W", stream, names["app"], out, kinesis, ddb, shard_sync_interval=1.0)
    table = LeaseTable(ddb, names["app"])

    def lease_keys() -> Any:
        return sorted(le.lease_key for le in table.list_leases(consistent=True))

    try:
        produce(kinesis, stream, 0, 50)
        wait_for(lambda: len(out.data()) == 50, 30, "the parent read")
        parent = kinesis.list_shards(StreamName=stream)["Shards"][0]
        hk = parent["HashKeyRange"]
        mid = (int(hk["StartingHashKey"]) + int(hk["EndingHashKey"])) // 2
        kinesis.split_shard(StreamName=stream, ShardToSplit=parent["ShardId"], NewStartingHashKey=str(mid))
        wait_for(lambda: kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
                 ["StreamStatus"] == "ACTIVE", 30, "the split")
        children = sorted(s["ShardId"] for s in kinesis.list_shards(StreamName=stream)["Shards"]
                          if s.get("ParentShardId") == parent["ShardId"])
        # one record per key to each child (16 keys spread over both halves of the hash range)
        produce(kinesis, stream, 50, 50)
        wait_for(lambda: len(out.data()) == 100, 30, "the children read")
        wait_for(lambda: lease_keys() == children, 30, "the parent's lease deleted, the children's kept")
        w.sync_shards()  # the parent shard is still listed (closed): its lease is not created again
        assert lease_keys() == children
        assert sorted(int(d) for d in out.data()) == list(range(100))
    finally:
        w.shutdown()


class _Raw:
    def __init__(self, body: Any) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[None]:
        yield self.body


def test_expired_iterators_and_throttling_are_recovered_without_loss_or_duplicates(aws_env: dict[str, str], names: dict[str, str]) -> None:
    kinesis = boto3.client("kinesis")
    ddb = boto3.client("dynamodb")
    stream = names["stream"]
    make_stream(kinesis, stream, 1)
    produce(kinesis, stream, 0, 300)
    calls = {"n": 0, "expired": 0, "throttled": 0}
    lock = threading.Lock()

    def inject(request: Any, **_: Any) -> Any:
        with lock:
            calls["n"] += 1
            n = calls["n"]
        if n % 3 == 0:
            kind = "ExpiredIteratorException"
            calls["expired"] += 1
        elif n % 5 == 0:
            kind = "ProvisionedThroughputExceededException"
            calls["throttled"] += 1
        else:
            return None
        body = json.dumps({"__type": kind, "message": "injected"}).encode()
        headers: Any = {"x-amzn-RequestId": "inj", "Content-Type": "application/x-amz-json-1.1"}
        return botocore.awsrequest.AWSResponse(request.url, 400, headers, _Raw(body))

    kinesis.meta.events.register("before-send.kinesis.GetRecords", inject)
    out = Collected()
    w = start_worker("W1", stream, names["app"], out, kinesis, ddb, max_records=25)
    try:
        wait_for(lambda: len(out.data()) >= 300, 60, "300 records")
        produce(boto3.client("kinesis"), stream, 300, 100)
        wait_for(lambda: len(out.data()) >= 400, 60, "400 records")
    finally:
        w.shutdown(15)
    assert calls["expired"] >= 3 and calls["throttled"] >= 1
    assert sorted(int(x) for x in out.data()) == list(range(400))  # none lost, none twice
    assert [int(x) for x in out.data()] == list(range(400))  # and in order
