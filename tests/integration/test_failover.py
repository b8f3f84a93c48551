"""Several `streamworker run` processes sharing one stream through the lease table."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.integration.conftest import RecordLog, Workers

from .conftest import lease_owners, make_stream, owner_counts, produce, settled, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def stream4(aws_env: dict[str, str], names: dict[str, str]) -> Any:
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 4)
    return kinesis


def all_processed(log: RecordLog, total: int) -> Callable[[], bool]:
    return lambda: set(log.data()) >= set(range(total))


def test_two_workers_split_four_shards_and_kill9_loses_nothing(stream4: Any, names: dict[str, str], workers: Workers) -> None:
    log = workers.log
    a, _ = workers("A"), workers("B")
    produce(stream4, names["stream"], 0, 400)
    wait_for(lambda: settled(names["app"], log, {"A": 2, "B": 2}), 30, "a 2/2 split")
    wait_for(all_processed(log, 400), 30, "first 400 records")
    a_shards = sorted(s for s, o in lease_owners(names["app"]).items() if o == "A")
    # more records after the split, so A processes and checkpoints its own shards: resuming from
    # A's checkpoints is what this test checks
    produce(stream4, names["stream"], 400, 200)
    wait_for(lambda: {e["shard"] for e in log.events("checkpointed") if e["w"] == "A"} >= set(a_shards), 30,
             "A's checkpoints")

    a.proc.kill()  # kill -9
    killed, killed_wall = time.monotonic(), time.time()
    a.proc.wait(5)
    produce(stream4, names["stream"], 600, 200)
    wait_for(lambda: owner_counts(names["app"]) == {"B": 4}, 30, "B to take A's shards")
    wait_for(all_processed(log, 800), 30, "all 800 records")
    took = time.monotonic() - killed
    assert took < 3.0 + 10, f"failover took {took:.1f}s"

    # B resumed A's shards from A's checkpoints: only records A processed after its last
    # checkpoint on that shard may be processed twice.
    recs = log.events("rec")
    last_cp: dict[Any, Any] = {}
    for e in log.events("checkpointed"):
        if e["w"] == "A":
            last_cp[e["shard"]] = max(last_cp.get(e["shard"], 0), int(e["seq"]))
    seen: dict[Any, Any] = {}
    for e in recs:
        seen.setdefault(int(e["data"]), []).append(e)
    for hits in seen.values():
        if len(hits) > 1:
            first = hits[0]
            assert first["w"] == "A" and first["shard"] in a_shards, f"unexpected duplicate {hits}"
            assert int(first["seq"]) > last_cp.get(first["shard"], -1), f"checkpointed record redone: {hits}"
    inits = [e for e in log.events("init") if e["w"] == "B" and e["t"] > killed_wall]
    assert sorted(e["shard"] for e in inits) == a_shards
    assert all(e["checkpoint"] != "TRIM_HORIZON" for e in inits), inits


def test_sigterm_hands_shards_over_gracefully_with_nothing_processed_twice(stream4: Any, names: dict[str, str], workers: Workers) -> None:
    log = workers.log
    a, _ = workers("A"), workers("B")
    produce(stream4, names["stream"], 0, 300)
    wait_for(lambda: settled(names["app"], log, {"A": 2, "B": 2}), 30, "a 2/2 split")
    wait_for(all_processed(log, 300), 30, "first 300 records")

    a.signal(signal.SIGTERM)
    assert a.proc.wait(15) == 0
    assert "graceful shutdown requested" in a.stderr()
    stopped = time.monotonic()
    produce(stream4, names["stream"], 300, 300)
    wait_for(lambda: owner_counts(names["app"]) == {"B": 4}, 10, "B to own every shard")
    assert time.monotonic() - stopped < 5
    wait_for(all_processed(log, 600), 30, "all 600 records")
    data = log.data()
    assert len(data) == len(set(data)), "a record was processed twice after a graceful handoff"
    # every processor A ran (including those handed to B when B joined) ended gracefully
    a_inits = sum(1 for e in log.events("init") if e["w"] == "A")
    assert sum(1 for e in log.events("shutdown_requested") if e["w"] == "A") == a_inits >= 2
    assert not [e for e in log.events("lease_lost")]


def test_sigstopped_worker_is_fenced_and_gets_lease_lost(stream4: Any, names: dict[str, str], workers: Workers, tmp_path: Path) -> None:
    log = workers.log
    hold = tmp_path / "hold"
    a = workers("A", hold_file=hold)
    wait_for(lambda: settled(names["app"], log, {"A": 4}), 30, "A to own every shard")
    workers("B")
    wait_for(lambda: settled(names["app"], log, {"A": 2, "B": 2}), 30, "a 2/2 split")
    hold.touch()
    produce(stream4, names["stream"], 0, 200)
    wait_for(lambda: any(e["w"] == "A" for e in log.events("holding")), 30, "A to be mid-batch")

    a.signal(signal.SIGSTOP)
    wait_for(lambda: owner_counts(names["app"]) == {"B": 4}, 30, "B to take the paused worker's shards")
    hold.unlink()
    a.signal(signal.SIGCONT)
    wait_for(lambda: any(e["w"] == "A" for e in log.events("checkpoint_refused")), 15, "A's refused checkpoint")
    wait_for(lambda: any(e["w"] == "A" for e in log.events("lease_lost")), 15, "A's lease_lost")
    wait_for(all_processed(log, 200), 30, "all 200 records")
    # The refused checkpoint left B's progress alone: every shard's checkpoint in the table is
    # B's latest for it, not the (older) position A was holding when it was frozen.
    refused_shard = next(e["shard"] for e in log.events("checkpoint_refused") if e["w"] == "A")
    ddb = boto3.client("dynamodb")

    def b_checkpoints() -> list[int]:
        return [int(e["seq"]) for e in log.events("checkpointed") if e["w"] == "B" and e["shard"] == refused_shard]

    # "all 200" may count A's recorded (frozen) batch before B redid and checkpointed it: wait for
    # B's checkpoint; read B's before the row (a checkpoint event follows its write, and they only grow)
    b_cps = wait_for(b_checkpoints, 30, "B's checkpoint on the refused shard")
    item = ddb.get_item(TableName=names["app"], Key={"leaseKey": {"S": refused_shard}}, ConsistentRead=True)
    assert int(item["Item"]["checkpoint"]["S"]) >= max(b_cps)
    # A rejoins as a fresh worker and the fleet re-balances by graceful handoff.
    wait_for(lambda: settled(names["app"], log, {"A": 2, "B": 2}), 30, "a 2/2 split again")
    a.signal(signal.SIGTERM)
    assert a.proc.wait(15) == 0
