"""One worker over several Kinesis streams in one lease table (KCL multi-stream keys)."""

from __future__ import annotations

import functools
import time
from typing import Any, cast

import boto3
import pytest

from streamworker import Worker, WorkerConfig
from streamworker.errors import SourceError
from streamworker.leases.dynamodb.table import LeaseTable

from .conftest import make_stream, produce, wait_for
from .inprocess import Collected, CollectingProcessor


class OtherProcessor(CollectingProcessor):
    """A second processor class, for one stream only."""

    def initialize(self, i: Any) -> None:
        super().initialize(i)
        with self.out.lock:
            self.out.events.append(("other-init", self.worker, self.shard, i.stream))

    def process_records(self, p: Any) -> None:
        with self.out.lock:
            self.out.events.append(("other", self.worker, self.shard, str(len(p.records))))
        super().process_records(p)


def test_one_worker_many_streams_added_and_removed_while_running(aws_env: dict[str, str], names: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    kinesis, ddb = boto3.client("kinesis"), boto3.client("dynamodb")
    s1, s2, s3 = (f"{names['stream']}-{i}" for i in (1, 2, 3))
    for s in (s1, s2, s3):
        make_stream(kinesis, s, 2)
    out = Collected()
    cfg = WorkerConfig.load({"stream": s1, "streams": [s2], "application_name": names["app"], "worker_id": "W",
                             "initial_position": "TRIM_HORIZON", "failover_time": 3.0,
                             "idle_time_between_reads": 0.2, "take_interval": 0.5, "shard_sync_interval": 1.0})
    assert cfg.multi_stream
    w = Worker(cfg, lambda: CollectingProcessor("W", out), kinesis_client=kinesis, dynamodb_client=ddb,
               processor_factories={s2: lambda: OtherProcessor("W", out)})
    w.start()
    try:
        produce(kinesis, s1, 0, 50)
        produce(kinesis, s2, 1000, 50)
        wait_for(lambda: len(out.data()) == 100, 30, "both streams read")
        assert {r[1] for r in out.records} == {"shardId-000000000000", "shardId-000000000001"}
        # s2's shards ran the per-stream class, s1's the default one
        other = [e for e in out.events if e[0] == "other"]
        assert sum(int(e[3]) for e in other) == 50
        # processors are told their stream, and metrics keep the streams' same-named shards apart
        assert {e[3] for e in out.events if e[0] == "other-init"} == {s2}
        labels = {m.labels["shard"] for fam in w.metrics.records.collect() for m in fam.samples}
        assert {f"{s}/shardId-00000000000{n}" for s in (s1, s2) for n in (0, 1)} <= labels
        # KCL multi-stream lease keys and attributes
        items = ddb.scan(TableName=names["app"])["Items"]
        assert len(items) == 4
        for item in items:
            account, stream, epoch, shard = item["leaseKey"]["S"].split(":")
            assert stream in (s1, s2) and account.isdigit() and epoch.isdigit()
            assert item["streamName"]["S"] == f"{account}:{stream}:{epoch}" and item["shardId"]["S"] == shard

        # a stream added while running
        w.set_streams([s1, s2, s3])
        produce(kinesis, s3, 2000, 30)
        wait_for(lambda: len(out.data()) == 130, 30, "the added stream read")

        # a stream removed while running: its shards checkpoint and release, and are not read on
        w.set_streams([s1, s3])
        table = LeaseTable(ddb, names["app"])

        def s2_released() -> Any:  # in the table, and then no longer held here (right after the write)
            s2_leases = [le for le in table.list_leases(consistent=True) if f":{s2}:" in le.lease_key]
            return (len(s2_leases) == 2 and all(le.lease_owner is None for le in s2_leases)
                    and not any(f":{s2}:" in k for k in w.coordinator.held_keys()))

        wait_for(s2_released, 30, "the removed stream's leases released")
        produce(kinesis, s2, 3000, 20)
        produce(kinesis, s1, 4000, 20)
        wait_for(lambda: len(out.data()) == 150, 30, "the remaining streams read")
        assert not any(int(d) >= 3000 and int(d) < 4000 for d in out.data())
        # the removed stream's checkpoints stay: re-adding it resumes where it stopped
        w.set_streams([s1, s2, s3])
        wait_for(lambda: len(out.data()) == 170, 30, "the re-added stream resumed")
        assert sorted(int(d) for d in out.data()) == sorted(
            [*range(50), *range(1000, 1050), *range(2000, 2030), *range(3000, 3020), *range(4000, 4020)])
    finally:
        w.shutdown()


def test_a_named_stream_missing_at_start_is_an_error(aws_env: dict[str, str], names: dict[str, str]) -> None:
    kinesis, ddb = boto3.client("kinesis"), boto3.client("dynamodb")
    make_stream(kinesis, f"{names['stream']}-1", 1)
    cfg = WorkerConfig.load({"stream": f"{names['stream']}-1", "streams": [f"{names['stream']}-missing"],
                             "application_name": names["app"]})
    w = Worker(cfg, lambda: CollectingProcessor("W", Collected()), kinesis_client=kinesis, dynamodb_client=ddb)
    with pytest.raises(SourceError, match="missing"):
        w.start()


def test_a_stream_pattern_follows_streams_as_they_appear_and_two_workers_share_them(aws_env: dict[str, str], names: dict[str, str]) -> None:
    kinesis, ddb = boto3.client("kinesis"), boto3.client("dynamodb")
    prefix = names["stream"]
    make_stream(kinesis, f"{prefix}-a", 3)
    make_stream(kinesis, f"{names['app']}-unrelated", 1)
    out = Collected()
    workers = []
    for wid in ("A", "B"):
        cfg = WorkerConfig.load({"stream_pattern": f"{prefix}-.*", "application_name": names["app"],
                                 "worker_id": wid, "initial_position": "TRIM_HORIZON", "failover_time": 3.0,
                                 "idle_time_between_reads": 0.2, "take_interval": 0.5,
                                 "shard_sync_interval": 1.0})
        w = Worker(cfg, functools.partial(CollectingProcessor, wid, out), kinesis_client=kinesis, dynamodb_client=ddb)
        w.start()
        workers.append(w)
    try:
        make_stream(kinesis, f"{prefix}-b", 3)  # appears while running: found by the next shard sync
        produce(kinesis, f"{prefix}-a", 0, 40)
        produce(kinesis, f"{prefix}-b", 100, 40)
        wait_for(lambda: len(out.data()) == 80, 30, "both matching streams read")
        keys = [i["leaseKey"]["S"] for i in ddb.scan(TableName=names["app"])["Items"]]
        assert len(keys) == 6 and not any("unrelated" in k for k in keys)
        # one table, six leases of two streams, split evenly over the two workers
        wait_for(lambda: sorted(len(w.coordinator.held_keys()) for w in workers) == [3, 3], 20, "an even split")
        assert sorted(int(d) for d in out.data()) == [*range(40), *range(100, 140)]
    finally:
        for w in workers:
            w.shutdown()


def test_deleted_and_recreated_streams_are_retired_and_their_leases_deleted(aws_env: dict[str, str], names: dict[str, str]) -> None:
    kinesis, ddb = boto3.client("kinesis"), boto3.client("dynamodb")
    s1, s2 = f"{names['stream']}-1", f"{names['stream']}-2"
    make_stream(kinesis, s1, 1)
    make_stream(kinesis, s2, 2)
    out = Collected()
    # No periodic shard sync: each set_streams([]) asks for one (the pattern lists the streams).
    cfg = WorkerConfig.load({"stream_pattern": f"{names['stream']}-.*", "application_name": names["app"],
                             "worker_id": "W", "initial_position": "TRIM_HORIZON", "failover_time": 2.0,
                             "idle_time_between_reads": 0.2, "take_interval": 0.5, "shard_sync_interval": 600,
                             "delete_former_stream_leases_after": 0})
    w = Worker(cfg, lambda: CollectingProcessor("W", out), kinesis_client=kinesis, dynamodb_client=ddb)
    w.start()
    table = LeaseTable(ddb, names["app"])

    def epoch(stream: Any) -> Any:
        return int(kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
                   ["StreamCreationTimestamp"].timestamp())

    def s2_lease_epochs() -> Any:
        w.set_streams([])
        return {int(le.lease_key.split(":")[2]) for le in table.list_leases(consistent=True)
                if le.lease_key.split(":")[1] == s2}

    try:
        produce(kinesis, s1, 0, 20)
        produce(kinesis, s2, 100, 20)
        wait_for(lambda: len(out.data()) == 40, 30, "both streams read")
        first = epoch(s2)

        # deleted and re-created between two shard syncs: a new stream under the old name
        kinesis.delete_stream(StreamName=s2)
        kinesis.get_waiter("stream_not_exists").wait(StreamName=s2, WaiterConfig=cast(Any, {"Delay": 0.2}))
        wait_for(lambda: time.time() >= first + 1, 5, "a new creation second")  # KCL keys hold seconds
        make_stream(kinesis, s2, 1)
        second = epoch(s2)
        assert second != first
        # the old incarnation is retired and, its counters standing still a failover time, deleted
        wait_for(lambda: s2_lease_epochs() == {second}, 30, "only the new incarnation's leases")
        produce(kinesis, s2, 200, 20)
        wait_for(lambda: len(out.data()) == 60, 30, "the re-created stream read")
        assert sorted(int(d) for d in out.data()) == [*range(20), *range(100, 120), *range(200, 220)]

        # deleted for good: dropped from the pattern's listing, its leases go, s1 goes on
        kinesis.delete_stream(StreamName=s2)
        kinesis.get_waiter("stream_not_exists").wait(StreamName=s2, WaiterConfig=cast(Any, {"Delay": 0.2}))
        wait_for(lambda: s2_lease_epochs() == set(), 30, "the deleted stream's leases gone")
        assert not any(f":{s2}:" in k for k in w.coordinator.held_keys())
        produce(kinesis, s1, 20, 20)
        wait_for(lambda: len(out.data()) == 80, 30, "the remaining stream still read")
    finally:
        w.shutdown()
