"""Enhanced fan-out read path: streamworker against raw boto3 SubscribeToShard.

On kinesis-mock, one stream (4 shards, N records of 100 bytes, 60,000 by default) is read whole by each variant,
in its own process, through a stream consumer of its own:

  raw        one thread per shard iterating boto3's SubscribeToShard event stream, re-subscribing
             at the continuation sequence number; counts records, touches each payload
  fanout     a streamworker Worker (``retrieval = fanout``, leases on moto's DynamoDB) with a
             no-op RecordProcessor that checkpoints every batch
  polling    the same worker reading with GetRecords, for reference

kinesis-mock pushes one event per shard per second (at most 10,000 records), so wall-clock
throughput mostly measures the emulator; the client-side figure is CPU seconds per 100k records
(user + system of the reading process, from its first record to its last). Ratios are to raw, as
medians of interleaved runs. Prints a table and writes benchmarks/results/fanout.json.
Target: fanout CPU per record <= 2x raw (the worker adds record objects, leases and checkpoints).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, run_variant, write_results  # noqa: E402

SHARDS = 4


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Tally:
    """Counts records; notes wall and CPU time at the first and the last."""

    def __init__(self, target: int) -> None:
        self.target, self.n = target, 0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def add(self, k: int) -> None:
        with self.lock:
            if self.n == 0 and k:
                self.t0, self.cpu0 = time.perf_counter(), cpu_seconds()
            self.n += k
            if self.n >= self.target and not self.done.is_set():
                self.t1, self.cpu1 = time.perf_counter(), cpu_seconds()
                self.done.set()


def kinesis_client(endpoint: str) -> Any:
    import boto3
    import botocore.config

    from streamworker.local import fanout_shim

    client = boto3.client("kinesis", endpoint_url=endpoint,
                          config=botocore.config.Config(max_pool_connections=50, read_timeout=30))
    fanout_shim.install(client)
    return client


def run_raw(args: argparse.Namespace, tally: Tally) -> None:
    from streamworker.clock import SystemClock
    from streamworker.sources.kinesis.fanout import register_consumer

    client = kinesis_client(args.kinesis)
    arn = client.describe_stream_summary(StreamName=args.stream)["StreamDescriptionSummary"]["StreamARN"]
    consumer = register_consumer(client, arn, args.app, SystemClock())

    def read(shard_id: str) -> None:
        position: dict[str, Any] = {"Type": "TRIM_HORIZON"}
        while not tally.done.is_set():
            try:
                events = client.subscribe_to_shard(ConsumerARN=consumer, ShardId=shard_id,
                                                   StartingPosition=position)["EventStream"]
            except client.exceptions.ResourceInUseException:
                time.sleep(0.5)
                continue
            for event in events:
                body = event.get("SubscribeToShardEvent")
                if body is None:
                    continue
                for r in body["Records"]:
                    r["Data"]  # noqa: B018 - touch the payload like the worker's processor does
                tally.add(len(body["Records"]))
                position = {"Type": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": body["ContinuationSequenceNumber"]}
                if tally.done.is_set():
                    break
            events.close()

    threads = [threading.Thread(target=read, args=(s["ShardId"],), daemon=True)
               for s in client.list_shards(StreamName=args.stream)["Shards"]]
    for t in threads:
        t.start()
    tally.done.wait()


def run_worker(args: argparse.Namespace, tally: Tally) -> None:
    import boto3

    from streamworker import RecordProcessor, Worker, WorkerConfig

    class Noop(RecordProcessor):
        def process_records(self, p):  # type: ignore[no-untyped-def]
            for r in p.records:
                r.data  # noqa: B018
            p.checkpointer.checkpoint()
            tally.add(len(p.records))

    cfg = WorkerConfig.load({"stream": args.stream, "application_name": args.app, "initial_position": "TRIM_HORIZON",
                             "retrieval": "fanout" if args.variant == "fanout" else "polling",
                             "idle_time_between_reads": 0.2, "log_level": "WARNING", "log_format": "console"})
    w = Worker(cfg, Noop, kinesis_client=kinesis_client(args.kinesis),
               dynamodb_client=boto3.client("dynamodb", endpoint_url=args.dynamodb))
    w.start()
    tally.done.wait()
    w.shutdown(30)


VARIANTS = {"raw": run_raw, "fanout": run_worker, "polling": run_worker}


def child(args: argparse.Namespace) -> None:
    tally = Tally(args.records)
    VARIANTS[args.variant](args, tally)
    seconds, cpu = tally.t1 - tally.t0, tally.cpu1 - tally.cpu0
    print(json.dumps({"variant": args.variant, "records": tally.n, "seconds": round(seconds, 3),
                      "records_per_s": round(tally.n / seconds), "cpu_s_per_100k": round(cpu * 100_000 / tally.n, 3),
                      "peak_rss_mb": peak_rss_mb()}))


def produce(client: Any, stream: str, records: int) -> float:
    client.create_stream(StreamName=stream, ShardCount=SHARDS)
    client.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    payload = b"x" * 100
    t0 = time.perf_counter()
    for start in range(0, records, 500):
        entries = [{"Data": payload, "PartitionKey": f"k{i}"} for i in range(start, min(start + 500, records))]
        resp = client.put_records(StreamName=stream, Records=entries)
        assert resp.get("FailedRecordCount", 0) == 0, resp
    return time.perf_counter() - t0


def median_of(runs: list[dict[str, float]]) -> dict[str, Any]:
    runs = sorted(runs, key=lambda x: x["cpu_s_per_100k"])
    out: dict[str, Any] = dict(runs[len(runs) // 2])
    out["runs_cpu_s_per_100k"] = [x["cpu_s_per_100k"] for x in runs]
    out["runs_records_per_s"] = [x["records_per_s"] for x in runs]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=60_000)
    ap.add_argument("--variants", default="raw,fanout,polling")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fanout.json"))
    for hidden in ("--variant", "--kinesis", "--dynamodb", "--stream", "--app"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        child(args)
        return
    from streamworker.local import KinesisMock, MotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    runs: dict[str, list[dict[str, float]]] = {}
    with KinesisMock() as kinesis, MotoServer() as moto:
        stream = f"bench-{uuid.uuid4().hex[:6]}"
        secs = produce(kinesis_client(kinesis.endpoint), stream, args.records)
        print(f"produced {args.records} records of 100 bytes to {stream} ({SHARDS} shards) in {secs:.1f}s")
        for _ in range(args.repeats):
            for name in args.variants.split(","):
                cmd = [sys.executable, __file__, "--variant", name, "--kinesis", kinesis.endpoint,
                       "--dynamodb", moto.endpoint, "--stream", stream, "--app", f"{name}-{uuid.uuid4().hex[:6]}",
                       "--records", str(args.records)]
                if (figures := run_variant(name, cmd, 600)) is not None:
                    runs.setdefault(name, []).append(figures)
    results = {name: median_of(rs) for name, rs in runs.items()}
    raw = results.get("raw")
    print(f"\n{'variant':<10}{'records/s':>11}{'CPU s/100k':>12}{'CPU x raw':>11}{'peak RSS MB':>13}")
    for name, r in results.items():
        r["cpu_ratio_to_raw"] = round(r["cpu_s_per_100k"] / raw["cpu_s_per_100k"], 2) if raw else None
        r["throughput_ratio_to_raw"] = round(r["records_per_s"] / raw["records_per_s"], 2) if raw else None
        print(f"{name:<10}{r['records_per_s']:>11}{r['cpu_s_per_100k']:>12}"
              f"{r['cpu_ratio_to_raw'] if raw else '-':>11}{r['peak_rss_mb']:>13}")
    summary = {"records": args.records, "shards": SHARDS, "repeats": args.repeats, "results": results,
               "targets": {"fanout_cpu_ratio_to_raw": "<= 2"}}
    write_results(args.out, summary)


if __name__ == "__main__":
    main()
