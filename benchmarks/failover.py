"""Failover and read-path benchmark.

1. Hard failover: two `streamworker run` processes share a 4-shard stream on moto while a
   producer writes numbered records; kill -9 one and time until every one of its shards
   processes records again on the other. Counts records processed twice.
2. Graceful handoff: the same with SIGTERM (shutdown_requested, checkpoint, release).
3. Read path: records/s of streamworker (no-op processor) against a raw boto3 GetRecords loop
   reading the same backlog on the same server, as a ratio.

Prints a table and writes benchmarks/results/failover.json. Targets: hard <= failover + 2 s;
graceful <= 2 s with no record processed twice; read ratio >= 0.9.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import read_events, write_results  # noqa: E402

from streamworker import RecordProcessor, Worker, WorkerConfig  # noqa: E402
from streamworker.local import MotoServer  # noqa: E402

PROCESSOR = f"{ROOT / 'tests' / 'integration' / 'recording_processor.py'}:RecordingProcessor"


def owners(ddb, table: str) -> dict[str, str | None]:
    try:
        items = ddb.scan(TableName=table, ConsistentRead=True)["Items"]
    except ddb.exceptions.ResourceNotFoundException:
        return {}
    return {i["leaseKey"]["S"]: ("handoff" if "checkpointOwner" in i else i.get("leaseOwner", {}).get("S"))
            for i in items}


def running(log: Path, worker: str) -> set[str]:
    active: set[str] = set()
    for e in read_events(log):
        if e["w"] == worker:
            if e["ev"] == "init":
                active.add(e["shard"])
            elif e["ev"] in ("shutdown_requested", "lease_lost", "shard_ended"):
                active.discard(e["shard"])
    return active


def settled(ddb, table: str, log: Path, expected: dict[str, int]) -> bool:
    own = owners(ddb, table)
    counts: dict[str | None, int] = {}
    for o in own.values():
        counts[o] = counts.get(o, 0) + 1
    return counts == expected and all(running(log, w) == {k for k, o in own.items() if o == w} for w in expected)


def wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise SystemExit(f"benchmark: timed out waiting for {what}")


def spawn(name: str, stream: str, app: str, env: dict[str, str], log: Path, failover: float, tmp: Path):
    penv = {**os.environ, **env, "RECORD_LOG": str(log), "WORKER_NAME": name}
    return subprocess.Popen(
        [sys.executable, "-m", "streamworker", "run", PROCESSOR, "--stream", stream, "--application-name", app,
         "--worker-id", name, "--failover-time", str(failover), "--initial-position", "TRIM_HORIZON",
         "--idle-time-between-reads", "0.2", "--log-format", "json"],
        env=penv, stdout=subprocess.DEVNULL, stderr=open(tmp / f"{name}.stderr", "w"))


def resumed_after(log: Path, worker: str, shards: set[str], since: float) -> float | None:
    """Wall time by which ``worker`` processed a record on every shard in ``shards`` after ``since``."""
    firsts: dict[str, float] = {}
    for e in read_events(log, "rec"):
        if e["w"] == worker and e["shard"] in shards and e["t"] > since and e["shard"] not in firsts:
            firsts[e["shard"]] = e["t"]
    return max(firsts.values()) if len(firsts) == len(shards) else None


def duplicates_after(log: Path, since: float) -> int:
    seen: dict[str, list[float]] = {}
    for e in read_events(log, "rec"):
        seen.setdefault(e["data"], []).append(e["t"])
    return sum(1 for ts in seen.values() if len(ts) > 1 and max(ts) > since)


def aws_env(endpoint: str) -> dict[str, str]:
    """boto3's settings for the local server, in this process (and given to the workers started)."""
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
           "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(env)
    return env


def failover_runs(endpoint: str, failover: float) -> dict[str, float]:
    env = aws_env(endpoint)
    kinesis, ddb = boto3.client("kinesis"), boto3.client("dynamodb")
    suffix = uuid.uuid4().hex[:6]
    stream, app = f"bench-{suffix}", f"bench-app-{suffix}"
    kinesis.create_stream(StreamName=stream, ShardCount=4)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    tmp = Path(tempfile.mkdtemp(prefix="sw-bench-"))
    log = tmp / "records.jsonl"
    stop = threading.Event()

    def producer() -> None:
        n = 0
        while not stop.is_set():
            kinesis.put_records(StreamName=stream, Records=[
                {"Data": str(i).encode(), "PartitionKey": f"k{i % 32}"} for i in range(n, n + 20)])
            n += 20
            stop.wait(0.05)

    threading.Thread(target=producer, daemon=True).start()
    procs = {name: spawn(name, stream, app, env, log, failover, tmp) for name in ("A", "B")}
    try:
        wait(lambda: settled(ddb, app, log, {"A": 2, "B": 2}), 60, "a 2/2 split")
        a_shards = {k for k, o in owners(ddb, app).items() if o == "A"}
        killed = time.time()
        procs["A"].kill()
        procs["A"].wait()
        wait(lambda: resumed_after(log, "B", a_shards, killed) is not None, failover + 30, "hard failover")
        hard = resumed_after(log, "B", a_shards, killed) - killed  # type: ignore[operator]
        hard_dupes = duplicates_after(log, killed)

        procs["C"] = spawn("C", stream, app, env, log, failover, tmp)
        wait(lambda: settled(ddb, app, log, {"B": 2, "C": 2}), failover + 60, "C to join")
        c_shards = {k for k, o in owners(ddb, app).items() if o == "C"}
        dupes_before = duplicates_after(log, 0)
        termed = time.time()
        procs["C"].send_signal(signal.SIGTERM)
        wait(lambda: resumed_after(log, "B", c_shards, termed) is not None, 30, "graceful handoff")
        graceful = resumed_after(log, "B", c_shards, termed) - termed  # type: ignore[operator]
        assert procs["C"].wait(30) == 0
        time.sleep(1.0)  # let in-flight batches land before counting (a measurement window, not a sync)
        graceful_dupes = duplicates_after(log, 0) - dupes_before
    finally:
        stop.set()
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    return {"hard_failover_s": round(hard, 2), "hard_records_twice": hard_dupes,
            "graceful_handoff_s": round(graceful, 2), "graceful_records_twice": graceful_dupes}


class _Count(RecordProcessor):
    """Counts records; notes when the first batch came and its size (``first``) and sets ``done``
    at the target."""

    def __init__(self, box: list[int], done: threading.Event, target: int,
                 first: list[tuple[float, int]] | None = None) -> None:
        self.box, self.done, self.target, self.first = box, done, target, first if first is not None else []

    def process_records(self, p) -> None:  # type: ignore[no-untyped-def]
        if not self.first:
            self.first.append((time.perf_counter(), len(p.records)))
        self.box[0] += len(p.records)
        if self.box[0] >= self.target:
            self.done.set()


def read_path(endpoint: str, records: int, repeats: int) -> dict[str, float]:
    aws_env(endpoint)
    kinesis = boto3.client("kinesis")
    stream = f"read-{uuid.uuid4().hex[:6]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    payload = b"x" * 100
    for i in range(0, records, 500):
        kinesis.put_records(StreamName=stream, Records=[{"Data": payload, "PartitionKey": str(j)}
                                                        for j in range(i, min(i + 500, records))])
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]

    # Two figures each: end to end (from the start: the raw loop's GetShardIterator, the worker's
    # start-up: stream check, shard sync, lease take, initialize), and the steady read (from the
    # first batch in hand to the last record), which is what the read path costs per record.
    def raw() -> tuple[float, float]:
        t0 = time.perf_counter()
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard,
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        n, first = 0, None
        while n < records:
            resp = kinesis.get_records(ShardIterator=it, Limit=10000)
            if first is None and resp["Records"]:
                first, n_first = time.perf_counter(), len(resp["Records"])
            n += len(resp["Records"])
            it = resp["NextShardIterator"]
        end = time.perf_counter()
        assert first is not None
        return records / (end - t0), (records - n_first) / (end - first)

    def ours(client: object = None) -> tuple[float, float]:
        box, done, first = [0], threading.Event(), []  # type: ignore[var-annotated]
        cfg = WorkerConfig.load({"stream": stream, "application_name": f"read-{uuid.uuid4().hex[:6]}",
                                 "initial_position": "TRIM_HORIZON", "log_level": "WARNING"})
        # client None: the worker's own clients, as `streamworker run` makes them; a client passed
        # in is used as it is (the raw loop's: boto3's defaults, e.g. its timestamp parser)
        w = Worker(cfg, lambda: _Count(box, done, records, first), kinesis_client=client)
        w.table.ensure_table()  # table creation is one-off set-up, not the read path
        t0 = time.perf_counter()
        w.start()
        done.wait(300)
        end = time.perf_counter()
        w.shutdown(20)
        (started, n_first), = first
        return records / (end - t0), (records - n_first) / (end - started)

    # Interleaved, so all three see the same machine load. "ours": the user's path (streamworker's
    # own Kinesis client); "same client": the worker reading through the raw loop's boto3 client,
    # which leaves the framework's own cost per record.
    runs: dict[str, list[tuple[float, float]]] = {"raw": [], "ours": [], "same": []}
    for _ in range(repeats):
        runs["raw"].append(raw())
        runs["ours"].append(ours())
        runs["same"].append(ours(kinesis))
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for k, v in runs.items()}
    (r, rs), (o, os_), (c, cs) = med["raw"], med["ours"], med["same"]
    return {"read_records": records, "raw_boto3_records_per_s": round(r), "streamworker_records_per_s": round(o),
            "read_ratio": round(o / r, 3), "raw_boto3_steady_records_per_s": round(rs),
            "streamworker_steady_records_per_s": round(os_), "steady_read_ratio": round(os_ / rs, 3),
            "same_client_records_per_s": round(c), "same_client_read_ratio": round(c / r, 3),
            "same_client_steady_read_ratio": round(cs / rs, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--failover-time", type=float, default=10.0)
    ap.add_argument("--read-records", type=int, default=100000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--read-only", action="store_true", help="the read path alone (no failover runs)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "failover.json"))
    args = ap.parse_args()
    from streamworker.ops.log import configure_logging

    configure_logging("WARNING", "console")
    with MotoServer() as server:
        results: dict[str, object] = {"failover_time_s": args.failover_time}
        if not args.read_only:
            results.update(failover_runs(server.endpoint, args.failover_time))
        results.update(read_path(server.endpoint, args.read_records, args.repeats))
    results["targets"] = {"hard_failover_s": f"<= {args.failover_time + 2}", "graceful_handoff_s": "<= 2",
                          "graceful_records_twice": "0", "steady_read_ratio": ">= 0.95"}
    width = max(len(k) for k in results)
    for k, v in results.items():
        if k != "targets":
            print(f"{k.ljust(width)}  {v}")
    write_results(args.out, results)


if __name__ == "__main__":
    main()
