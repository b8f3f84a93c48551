"""Per-key parallelism: records per second of a processor whose every record waits 10 ms (I/O),
on a 4-shard stream, at parallelism 1, 4 and 10 per shard, beside a raw boto3 loop doing the same
work (one thread per shard, records one after another: what N = 1 is).

Each streamworker run is ``streamworker run`` as its own process (the user's path) reading the
same backlog from TRIM_HORIZON into a fresh lease table; records/s is measured from the first
record processed to the last. Runs are interleaved; medians are reported. moto serves Kinesis
and DynamoDB (in this process).

    .venv/bin/python benchmarks/parallelism.py [--records 4000] [--keys 64] [--repeats 3]

Writes benchmarks/results/parallelism.json. The target: N = 10 at least 8x N = 1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import backlog, read_events, write_results  # noqa: E402

from streamworker.local import MotoServer  # noqa: E402

APP = Path(__file__).resolve().parent / "parallelism_apps" / "io_processor.py"
SHARDS = 4
WAIT = 0.01


def rate(events: list[dict[str, Any]], records: int) -> float:
    ts = sorted(e["t"] for e in events)
    return round((records - 1) / (ts[-1] - ts[0]), 1) if len(ts) >= 2 else 0.0


def run_streamworker(stream: str, endpoint: str, parallelism: int, records: int, tmp: Path) -> dict[str, Any]:
    log = tmp / f"sw-{parallelism}-{uuid.uuid4().hex[:6]}.jsonl"
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "RECORD_LOG": str(log), "RECORD_WAIT": str(WAIT),
           "STREAMWORKER_LOG_FORMAT": "json"}
    app = f"par-{parallelism}-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen([sys.executable, "-m", "streamworker", "run", f"{APP}:IoProcessor", "--stream", stream,
                             "--application-name", app, "--initial-position", "TRIM_HORIZON",
                             "--parallelism", str(parallelism), "--idle-time-between-reads", "0.2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / f"{app}.stderr", "w"))
    try:
        deadline = time.monotonic() + 600
        while len(read_events(log, "rec")) < records:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"parallelism {parallelism}: {len(read_events(log, 'rec'))} of {records} records")
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.wait(60)
    events = read_events(log, "rec")
    return {"records_per_second": rate(events, records), "records": len(events)}


def run_raw(stream: str, endpoint: str, records: int) -> dict[str, Any]:
    """One thread per shard: GetRecords, then each record's 10 ms wait in turn."""
    client = boto3.client("kinesis", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    times: list[float] = []
    lock = threading.Lock()

    def shard(shard_id: str) -> None:
        it = client.get_shard_iterator(StreamName=stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            resp = client.get_records(ShardIterator=it, Limit=10000)
            if not resp["Records"]:
                return
            for _ in resp["Records"]:
                time.sleep(WAIT)
                with lock:
                    times.append(time.time())
            it = resp.get("NextShardIterator")

    threads = [threading.Thread(target=shard, args=(s["ShardId"],))
               for s in client.list_shards(StreamName=stream)["Shards"]]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"records_per_second": rate([{"t": t} for t in times], len(times)), "records": len(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=4000)
    ap.add_argument("--keys", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--levels", default="1,4,10")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "parallelism.json"))
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    variants = ["raw", *(f"N={n}" for n in levels)]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp, MotoServer() as moto:
        _, stream = backlog(moto.endpoint, "par", SHARDS, args.records, lambda n: str(n).encode(),
                            lambda n: f"k{n % args.keys}")
        for r in range(args.repeats):
            for v in variants if r % 2 == 0 else list(reversed(variants)):
                if v == "raw":
                    res = run_raw(stream, moto.endpoint, args.records)
                else:
                    res = run_streamworker(stream, moto.endpoint, int(v[2:]), args.records, Path(tmp))
                print(f"run {r + 1} {v}: {res}", flush=True)
                runs[v].append(res)
    summary = {v: statistics.median(x["records_per_second"] for x in runs[v]) for v in variants}
    base = summary[f"N={levels[0]}"]
    print(f"\nmedians of {args.repeats} interleaved runs, {args.records} records over {args.keys} keys on {SHARDS} "
          f"shards, {WAIT * 1000:.0f} ms per record (moto):")
    for v, rps in summary.items():
        print(f"  {v:>6}: {rps:8.1f} records/s  ({rps / base:.2f}x N={levels[0]})")
    write_results(args.out, {"records": args.records, "keys": args.keys, "shards": SHARDS, "wait_seconds": WAIT,
                             "repeats": args.repeats, "records_per_second": summary, "runs": runs})


if __name__ == "__main__":
    main()
