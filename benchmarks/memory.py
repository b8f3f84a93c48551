"""Peak RSS of one worker holding 100 Kinesis shards, and of one holding 100 Kafka partitions,
each beside the raw client doing the same reads in the same run. Target: <= 200 MB per worker.

Each variant runs in a child process of its own (the servers run in this one), reads every
record, then keeps its leases a few seconds more; its ru_maxrss is reported. Writes
benchmarks/results/memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, write_results  # noqa: E402

SHARDS = 100


def child(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    n = args.records
    if args.variant == "raw-kinesis":
        import boto3

        k = boto3.client("kinesis")
        got = 0
        for s in k.list_shards(StreamName=args.target)["Shards"]:
            it = k.get_shard_iterator(StreamName=args.target, ShardId=s["ShardId"],
                                      ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            got += len(k.get_records(ShardIterator=it, Limit=10000)["Records"])
        assert got == n, got
    elif args.variant == "raw-kafka":
        from confluent_kafka import Consumer

        c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"raw-{uuid.uuid4().hex[:6]}",
                      "auto.offset.reset": "earliest", "session.timeout.ms": 6000, "heartbeat.interval.ms": 1000})
        c.subscribe([args.target])
        got = 0
        while got < n:
            got += sum(1 for m in c.consume(1000, 1.0) if m.error() is None)
        c.close()
    else:
        from streamworker import RecordProcessor, Worker, WorkerConfig

        count = [0]
        lock = threading.Lock()
        done = threading.Event()

        class Count(RecordProcessor):
            def process_records(self, p):  # type: ignore[no-untyped-def]
                with lock:
                    count[0] += len(p.records)
                    if count[0] >= n:
                        done.set()
                p.checkpointer.checkpoint()

        common = {"application_name": f"mem-{uuid.uuid4().hex[:6]}", "initial_position": "TRIM_HORIZON",
                  "log_level": "WARNING", "log_format": "console"}
        if args.variant == "streamworker-kinesis":
            cfg = WorkerConfig.load({"stream": args.target, **common})
        else:
            cfg = WorkerConfig.load({"source": "kafka", "topics": [args.target], "bootstrap_servers": args.bootstrap,
                                     "kafka_properties": ["session.timeout.ms=6000", "heartbeat.interval.ms=1000"],
                                     **common})
        w = Worker(cfg, Count)
        w.start()
        assert done.wait(300), count[0]
        time.sleep(3)  # hold the leases a little longer: steady-state memory, not just the read
        held = len(w.coordinator.held_keys())
        w.shutdown(60)
        assert held == SHARDS, held
    print(json.dumps({"variant": args.variant, "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "memory.json"))
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--target", help=argparse.SUPPRESS)
    ap.add_argument("--bootstrap", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        child(args)
        return
    sys.path.insert(0, str(ROOT))
    import boto3
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    from streamworker.local import KafkaBroker, MotoServer

    results: dict[str, float] = {}
    with MotoServer() as moto, KafkaBroker() as broker:
        env = {**os.environ, "AWS_ENDPOINT_URL": moto.endpoint, "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
        os.environ.update(env)
        stream = f"mem-{uuid.uuid4().hex[:6]}"
        k = boto3.client("kinesis")
        k.create_stream(StreamName=stream, ShardCount=SHARDS)
        k.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
        hash_keys = [int(s["HashKeyRange"]["StartingHashKey"]) for s in k.list_shards(StreamName=stream)["Shards"]]
        for i in range(0, args.records, 500):
            k.put_records(StreamName=stream, Records=[
                {"Data": b"x" * 100, "PartitionKey": "p", "ExplicitHashKey": str(hash_keys[j % SHARDS])}
                for j in range(i, min(i + 500, args.records))])
        topic = f"mem-{uuid.uuid4().hex[:6]}"
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        admin.create_topics([NewTopic(topic, num_partitions=SHARDS, replication_factor=1)])[topic].result(30)
        p = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20})
        for i in range(args.records):
            p.produce(topic, value=b"x" * 100, partition=i % SHARDS)
        p.flush(60)
        for variant, target in (("raw-kinesis", stream), ("streamworker-kinesis", stream),
                                ("raw-kafka", topic), ("streamworker-kafka", topic)):
            r = subprocess.run([sys.executable, __file__, "--variant", variant, "--target", target, "--bootstrap",
                                broker.bootstrap, "--records", str(args.records)],
                               env=env, capture_output=True, text=True, timeout=600)
            line = next((ln for ln in reversed(r.stdout.splitlines()) if ln.startswith("{")), None)
            if r.returncode != 0 or line is None:
                print(f"{variant}: failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
                continue
            results[variant] = json.loads(line)["peak_rss_mb"]
            print(f"{variant:<22} peak RSS {results[variant]:>7} MB")
    summary: dict[str, object] = {"shards_or_partitions": SHARDS, "records": args.records, "peak_rss_mb": results,
                                  "target_mb": 200}
    for src in ("kinesis", "kafka"):
        if f"raw-{src}" in results and f"streamworker-{src}" in results:
            summary[f"{src}_ratio_to_raw"] = round(results[f"streamworker-{src}"] / results[f"raw-{src}"], 2)
    write_results(args.out, summary)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
