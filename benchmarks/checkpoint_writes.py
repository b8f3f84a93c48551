"""DynamoDB writes per lease per minute under each checkpoint policy, in the user's setting.

A `streamworker run` process reads a 4-shard stream that receives a steady load; its DynamoDB
calls go through a counting proxy in front of the local moto server (Kinesis goes direct). The
variants, interleaved over ``--repeats`` rounds:

    per-batch   the README's processor: checkpoint() at the end of every process_records
    interval    a processor that never checkpoints, --checkpoint-interval 10
    every       a processor that never checkpoints, --checkpoint-every 1000
    none        a processor that never checkpoints, no policy (renewals only: the floor)

UpdateItem calls are lease renewals plus checkpoints; a checkpoint also renews (a lease written
recently is not renewed again), so the figure is the total, and its excess over ``none``. Medians over the rounds; results in benchmarks/results/checkpoint_writes.json.
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

from streamworker.local import MotoServer  # noqa: E402
from tests.faultproxy import FaultProxy  # noqa: E402

PROCESSOR = f"{ROOT / 'tests' / 'integration' / 'recording_processor.py'}:RecordingProcessor"
SHARDS = 4
VARIANTS = {
    "per-batch": ([], False),
    "interval": (["--checkpoint-interval", "10"], True),
    "every": (["--checkpoint-every", "1000"], True),
    "none": ([], True),
}


def run_variant(name: str, moto: str, duration: float, rate: int, tmp: Path) -> dict[str, float]:
    kinesis = boto3.client("kinesis", endpoint_url=moto)
    stream, app = f"bench-{uuid.uuid4().hex[:8]}", f"bench-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=SHARDS)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream)
    extra, quiet = VARIANTS[name]
    log = tmp / f"{app}.jsonl"
    with FaultProxy(moto) as proxy:
        env = {**os.environ, "AWS_ENDPOINT_URL": moto, "AWS_ENDPOINT_URL_DYNAMODB": proxy.endpoint,
               "RECORD_LOG": str(log), "WORKER_NAME": name}
        if quiet:
            env["NO_CHECKPOINT"] = "1"
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamworker", "run", PROCESSOR, "--stream", stream, "--application-name", app,
             "--initial-position", "TRIM_HORIZON", "--log-level", "WARNING", *extra],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop = threading.Event()

        def produce() -> None:
            n = 0
            while not stop.is_set():
                kinesis.put_records(StreamName=stream, Records=[
                    {"Data": str(n + i).encode(), "PartitionKey": f"k{n + i}"} for i in range(rate // 10)])
                n += rate // 10
                stop.wait(0.1)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        deadline = time.monotonic() + 60
        while len({e["shard"] for e in read_events(log, "init")}) < SHARDS:  # every lease taken
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{name}: the worker did not take all {SHARDS} leases")
            time.sleep(0.2)
        before = proxy.calls.copy()
        time.sleep(duration)  # the measured window: steady state, every lease held
        window = proxy.calls - before
        stop.set()
        producer.join()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    minutes = duration / 60
    return {"update_item_per_lease_min": round(window["UpdateItem"] / SHARDS / minutes, 1),
            "all_writes_per_lease_min": round(sum(window[op] for op in ("UpdateItem", "PutItem", "DeleteItem"))
                                             / SHARDS / minutes, 1),
            "records": len(read_events(log, "rec"))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=60.0, help="measured seconds per run (default 60)")
    ap.add_argument("--rate", type=int, default=400, help="records per second produced (default 400)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "checkpoint_writes.json"))
    args = ap.parse_args()
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        os.environ.setdefault(k, v)
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    with MotoServer() as moto, tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name in VARIANTS:  # interleaved: a drift of the machine hits every variant alike
                fig = run_variant(name, moto.endpoint, args.duration, args.rate, Path(tmp))
                runs[name].append(fig)
                print(f"round {r + 1} {name:10} {fig}", flush=True)
    floor = statistics.median(f["update_item_per_lease_min"] for f in runs["none"])
    summary = {}
    print(f"\nDynamoDB UpdateItem per lease per minute (median of {args.repeats}; {args.rate} records/s "
          f"over {SHARDS} shards, default failover_time 10 s, idle_time_between_reads 1.5 s):")
    for name, figs in runs.items():
        med = statistics.median(f["update_item_per_lease_min"] for f in figs)
        summary[name] = {"update_item_per_lease_min": med, "over_renewals_only": round(med - floor, 1),
                         "runs": figs}
        print(f"  {name:10} {med:6.1f}  (+{med - floor:4.1f} over renewals only)")
    write_results(args.out, {"settings": {"duration": args.duration, "rate": args.rate, "shards": SHARDS,
                                          "repeats": args.repeats, "path": "streamworker run process, moto server"},
                             "variants": summary})


if __name__ == "__main__":
    main()
