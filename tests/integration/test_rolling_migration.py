"""A rolling migration under load: KCL Java workers replaced by streamworker workers one at a time,
both kinds on one lease table at once (issue 12). Nothing may be lost, records processed twice only
where a lease changed hands by a steal (KCL 2 knows no graceful handoff), no lease ping-pong, and
the fleet converges to an even spread."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest

from streamworker.local import KinesisMock, MotoServer

from ..kcl import harness
from .conftest import RecordLog, WorkerProcess, lease_owners, make_stream, running_shards, wait_for

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not harness.available(), reason="needs Java (javac) and Maven")]

SHARDS = 4
FAILOVER = 5  # seconds, the same for both kinds, as a migrating team would keep it


class Producer:
    """Numbered records at a steady rate on a thread until stopped."""

    def __init__(self, kinesis: Any, stream: Any, rate: Any=100) -> None:
        self.kinesis, self.stream, self.rate = kinesis, stream, rate
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            batch = range(self.sent, self.sent + self.rate // 10)
            reply = self.kinesis.put_records(StreamName=self.stream, Records=[
                {"Data": str(i).encode(), "PartitionKey": f"key-{i % 16}"} for i in batch])
            assert reply.get("FailedRecordCount", 0) == 0
            self.sent += len(batch)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(10)
        return self.sent


def spread(table: str) -> list[int]:
    return sorted(Counter(lease_owners(table).values()).values())


@pytest.mark.parametrize("kcl_version", [
    pytest.param((harness.KCL_VERSION, None), id=f"kcl-{harness.KCL_VERSION}"),
    pytest.param((harness.KCL3_VERSION, "COMPATIBLE_WITH_2X"), id=f"kcl-{harness.KCL3_VERSION}-compat2x",
                 marks=pytest.mark.slow)])
def test_kcl_java_fleet_replaced_by_streamworker_one_worker_at_a_time(
        aws_env: dict[str, str], kinesis_mock: KinesisMock, moto_server: MotoServer, names: dict[str, str], tmp_path: Path, kcl_version: Any) -> None:
    kinesis = boto3.client("kinesis", endpoint_url=kinesis_mock.endpoint)
    make_stream(kinesis, names["stream"], SHARDS)
    env = {**aws_env, "AWS_ENDPOINT_URL_KINESIS": kinesis_mock.endpoint,
           "AWS_ENDPOINT_URL_DYNAMODB": moto_server.endpoint}
    log = RecordLog(tmp_path / "records.jsonl")
    home = harness.install(kcl_version[0])
    procs: list[Any] = []

    def kcl_worker(name: str) -> harness.KclWorker:
        k = harness.KclWorker(home, names["stream"], names["app"], name, log.path, kinesis_mock.endpoint,
                              moto_server.endpoint, tmp_path / f"{name}.stderr", failover_ms=FAILOVER * 1000,
                              client_version=kcl_version[1])
        procs.append(k)
        return k

    def sw_worker(name: str) -> WorkerProcess:
        w = WorkerProcess(name, names, env, log, tmp_path, failover=FAILOVER)
        procs.append(w)
        return w

    def processed() -> list[int]:
        return [int(e["data"]) for e in log.events("rec")]

    def fleet_runs_everything(workers: set[str]) -> bool:
        try:
            owners = lease_owners(names["app"])
        except boto3.client("dynamodb").exceptions.ResourceNotFoundException:
            return False  # KCL has not created the table yet
        return (len(owners) == SHARDS and set(owners.values()) <= set(workers)
                and sum(len(running_shards(log, w)) for w in workers) == SHARDS)

    producer = Producer(kinesis, names["stream"])
    try:
        kcl_worker("kcl-1"), kcl_worker("kcl-2")
        wait_for(lambda: fleet_runs_everything({"kcl-1", "kcl-2"}) and spread(names["app"]) == [2, 2], 180,
                 "two KCL workers to share the four shards")
        live = {"kcl-1", "kcl-2"}
        for name, kcl in [("sw-1", procs[0]), ("sw-2", procs[1])]:  # start one of ours, then stop one of KCL's
            sw_worker(name)
            live.add(name)
            seen = len(processed())
            def took_a_share(name: str = name, seen: int = seen) -> bool:
                return bool(running_shards(log, name)) and len(processed()) > seen + 200

            wait_for(took_a_share, 90, f"{name} to take a share while records flow")
            assert kcl.stop() == 0, kcl.stderr()[-3000:]
            live.discard(kcl.worker_id)
            wait_for(lambda: fleet_runs_everything(live), 90, f"{sorted(live)} to run every shard")
        wait_for(lambda: spread(names["app"]) == [2, 2] and fleet_runs_everything({"sw-1", "sw-2"}), 60,
                 "the streamworker fleet to converge to two shards each")
        settled_inits = len(log.events("init"))
        sent = producer.stop()
        wait_for(lambda: set(processed()) >= set(range(sent)), 90, f"all {sent} records")
        assert len(log.events("init")) == settled_inits, "leases moved after the fleet converged"
    finally:
        producer.stop()
        for p in procs:
            p.stop()

    counts = Counter(processed())
    assert set(counts) == set(range(sent))  # nothing lost, nothing invented
    twice = sorted(n for n, c in counts.items() if c > 1)
    # Records run twice only where their first worker lost the lease hard afterwards: a steal from
    # (or by) a KCL worker, which knows no graceful handoff, refuses its in-flight checkpoint. A KCL
    # worker stopped gracefully, or a lease handed between streamworker workers, repeats nothing.
    first: dict[Any, Any] = {}
    for e in log.events("rec"):
        first.setdefault(int(e["data"]), e)
    lost = [e for e in log.events("lease_lost")]
    for n in twice:
        f = first[n]
        assert any(e["w"] == f["w"] and e["shard"] == f["shard"] and e["t"] >= f["t"] for e in lost), (
            f"record {n} processed twice without a lease lost by {f['w']}")
    inits = Counter(e["shard"] for e in log.events("init"))
    moves = sum(inits.values()) - SHARDS
    assert moves <= 4 * SHARDS, f"lease ping-pong: {inits}"  # each fleet change moves a shard at most once
    for p in procs:
        if isinstance(p, harness.KclWorker):
            assert not harness.complaints(p.stderr()), harness.complaints(p.stderr())[:10]
        else:
            assert "Traceback" not in p.stderr(), p.stderr()[-3000:]
    print(f"rolling migration: {sent} records, {len(twice)} twice, {moves} lease moves {dict(inits)}")
