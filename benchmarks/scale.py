"""A thousand shards: lease spread, takeover and the idle cost of a worker, beside KCL 3.5.1.

Two parts, on stand-ins:

1. **The fleet** (``--fleet-variants``, default streamworker), on kinesalite and dynalite
   (``--fleet-servers node``, where KCL 3.5.1's lease table and owner index are made for it, as
   dynalite refuses the index KCL adds; ``kinesalite-moto``; ``mock``: kinesis-mock and moto,
   which do not serve it on 2 cores):
   one stream of ``--shards`` (1,000) idle shards, ``streamworker run`` workers joining one at a
   time, 1 -> ``--workers`` (4), then one killed with SIGKILL. For each step: seconds until the
   lease table is even (within one lease, no handoff open) and every worker holds what the table
   says it owns (its ``streamworker_leases_held`` metric), each worker's take cycles (from
   ``streamworker_leases_take_cycles_total``; the step's figure is the most any worker ran), and
   lease moves against the minimum. With all workers running and idle: CPU, RSS and threads per
   worker and the fleet's DynamoDB calls per lease per minute (a counting proxy in front of
   DynamoDB: ``count_proxy.js`` for the fleet, ``tests/faultproxy.py`` otherwise).
2. **One worker holding ``--per-worker-shards`` (250) idle shards**, on kinesis-mock (its shard
   limit raised) and moto, each variant alone on a stream of that many shards, after every lease
   is its own: CPU (whole process tree), RSS, threads, processes, DynamoDB calls per minute.
   Variants: ``sw-native`` (``streamworker run``, a Python processor), ``kcl-java`` (KCL 3.5.1's
   Scheduler in its default mode with a Java no-op processor, tests/kcl/KclHarness.java),
   ``kcl-java-count`` (the same with KCL 3.5's ``LEASE_COUNT_BASED`` lease assignment: without a
   CPU metric, off EC2, ECS and EKS, KCL's default balances idle shards not at all),
   ``kcl35-multilang`` (KCL 3.5.1's MultiLangDaemon, a Python child per shard running amazon-kclpy
   3.2.0's sample; needs AWS's daemon sources beside the project, else skipped with the reason).

In the one-worker part every kind reads an idle shard every 1.5 s (KCL's
``idleTimeBetweenReadsInMillis`` default, streamworker's ``idle_time_between_reads``) with a
failover time of ``--failover`` (10 s); the fleet reads every ``--fleet-idle-read-ms`` (10 s:
four workers and the stand-ins on 2 cores do not keep up with 667 reads a second) with a
failover time of ``--fleet-failover`` (10 s). ``--logs DIR`` keeps the workers' logs, at INFO.

    .venv/bin/python benchmarks/scale.py [--shards 1000] [--workers 4] [--per-worker-shards 250]

Writes benchmarks/results/scale.json.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402
from _node_standins import CountingProxy, NodeServer  # noqa: E402
from balance import minimum_moves  # noqa: E402
from vs_kcl import tree, tree_cpu, tree_rss_mb  # noqa: E402

from streamworker.local.servers import KinesisMock, free_port  # noqa: E402
from tests.faultproxy import FaultProxy  # noqa: E402
from tests.kcl import harness, multilang, multilang3  # noqa: E402

APPS = Path(__file__).resolve().parent / "vs_kcl_apps"
IDLE_MS = 1500  # KCL's default wait after an empty read, and streamworker's


#: moto in a process of its own: in the benchmark's process it shares one GIL with the counting
#: proxy and the table polling, and a thousand leases' renewals (150 a second) outran it.
MOTO = """
import sys, time
from streamworker.local import MotoServer
with MotoServer() as moto:
    print(moto.endpoint, flush=True)
    sys.stdin.read()
"""


class MotoProcess:
    def __enter__(self) -> MotoProcess:
        self.proc = subprocess.Popen([sys.executable, "-c", MOTO], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert self.proc.stdout is not None
        self.endpoint = self.proc.stdout.readline().strip()
        if not self.endpoint.startswith("http"):
            raise RuntimeError("moto did not start")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.proc.kill()
        self.proc.wait(10)


class Servers:
    """kinesis-mock, moto and the counting proxy, with the environment every worker gets."""

    def __init__(self, kinesis_url: str, dynamodb_url: str, proxy: FaultProxy | CountingProxy, tmp: Path,
                 failover: float) -> None:
        self.kinesis_url, self.dynamodb_url, self.proxy, self.tmp = kinesis_url, dynamodb_url, proxy, tmp
        self.failover = failover
        self.log_level = "WARNING"
        #: dynalite: KCL 3's lease table is made for it (see precreate_kcl3_lease_table).
        self.precreate_kcl3_tables = False
        self.env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_KINESIS": kinesis_url,
                    "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url, "STREAMWORKER_LOG_FORMAT": "json",
                    "BATCH_LOG": os.devnull}
        self.kinesis = boto3.client("kinesis", endpoint_url=kinesis_url, region_name="us-east-1",
                                    aws_access_key_id="testing", aws_secret_access_key="testing")
        self.ddb = boto3.client("dynamodb", endpoint_url=dynamodb_url, region_name="us-east-1",
                                aws_access_key_id="testing", aws_secret_access_key="testing")

    def stream(self, shards: int) -> str:
        name = f"scale-{uuid.uuid4().hex[:6]}"
        self.kinesis.create_stream(StreamName=name, ShardCount=shards)
        self.kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.5, "MaxAttempts": 240})
        return name

    def owners(self, table: str) -> dict[str, str | None]:
        """Lease key -> owner (None while a handoff is open), read consistently."""
        out: dict[str, str | None] = {}
        args: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        try:
            while True:
                page = self.ddb.scan(**args)
                for i in page["Items"]:
                    if i.get("entityType", {}).get("S", "LEASE") != "LEASE":
                        continue  # KCL 3.5's own rows
                    out[i["leaseKey"]["S"]] = None if "checkpointOwner" in i else i.get("leaseOwner", {}).get("S")
                if "LastEvaluatedKey" not in page:
                    return out
                args["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except self.ddb.exceptions.ResourceNotFoundException:
            return {}


class Worker:
    """One worker process of a variant."""

    def __init__(self, s: Servers, variant: str, stream: str, app: str, name: str, kcl: dict[str, Path],
                 idle_ms: int = IDLE_MS) -> None:
        self.variant, self.name, self.metrics_port = variant, name, None
        self.stderr = s.tmp / f"{app}-{name}.stderr"
        err = open(self.stderr, "w")
        if variant == "sw-native":
            self.metrics_port = free_port()
            cmd = [sys.executable, "-m", "streamworker", "run", f"{APPS / 'noop_processor.py'}:NoopProcessor",
                   "--stream", stream, "--initial-position", "TRIM_HORIZON", "--failover-time", str(s.failover),
                   "--application-name", app, "--worker-id", name, "--metrics-port", str(self.metrics_port),
                   "--metrics-host", "127.0.0.1", "--log-level", s.log_level,
                   "--idle-time-between-reads", str(idle_ms / 1000)]
            self.proc = subprocess.Popen(cmd, env=s.env, stdout=subprocess.DEVNULL, stderr=err)
        elif variant in ("kcl-java", "kcl-java-count"):
            self.proc = harness.KclWorker(kcl["java"], stream, app, name, Path(os.devnull), s.kinesis_url,
                                          s.dynamodb_url, s.tmp / f"{app}-{name}.stderr", quiet=True,
                                          failover_ms=int(s.failover * 1000), client_version="3X",
                                          idle_ms=idle_ms, jvm=("-Xmx512m",),
                                          lease_assignment="LEASE_COUNT_BASED" if variant == "kcl-java-count" else None).proc
        elif variant == "kcl35-multilang":
            env = {**s.env, "RECORD_LOG": os.devnull, "QUIET": "1", "WORKER_NAME": name,
                   "PYTHONPATH": multilang.child_pythonpath(kcl["kclpy3"])}
            props = multilang3.write_properties(s.tmp / f"{app}-{name}.properties", stream, app, s.kinesis_url,
                                                s.dynamodb_url, name, failover_ms=int(s.failover * 1000),
                                                idle_ms=idle_ms, shard_sync_ms=60000)
            self.proc = multilang3.MultiLangDaemon3(kcl["multilang"], props, env, s.tmp / f"{app}-{name}.stderr",
                                                    jvm=("-Xmx512m",)).proc
        else:
            raise SystemExit(f"unknown variant {variant}")

    def metric(self, name: str) -> float | None:
        """A streamworker metric's value (None: no endpoint or not answering yet)."""
        if self.metrics_port is None:
            return None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
        return float(m.group(1)) if m else None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def threads(pid: int) -> int:
    """Threads of a process tree (from /proc)."""
    n = 0
    for p in tree(pid):
        try:
            n += int(next(x.split()[1] for x in Path(f"/proc/{p}/status").read_text().splitlines()
                          if x.startswith("Threads:")))
        except (OSError, StopIteration):
            pass
    return n


def wait_until(cond: Any, timeout: float, what: str, fleet: list[Worker]) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        dead = [w for w in fleet if not w.alive()]
        if dead:
            tail = dead[0].stderr.read_text().strip().splitlines()[-3:]
            raise RuntimeError(f"{what}: worker {dead[0].name} exited ({dead[0].proc.returncode}): {tail}")
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(2.0)  # polling the table for the measurement (a consistent scan of it: not often)


def fleet_run(s: Servers, variant: str, shards: int, workers: int, idle: float, kcl: dict[str, Path],
              idle_ms: int, step_timeout: float = 600.0) -> dict[str, Any]:
    stream = s.stream(shards)
    app = f"scale-{variant}-{uuid.uuid4().hex[:6]}"
    fleet: list[Worker] = []
    steps: list[dict[str, Any]] = []
    # streamworker evens out by count (within one lease); KCL 3's leader balances utilisation
    # within a variance and leaves counts apart (487 / 513 of 1,000 idle shards): its steps end
    # within a tenth of a worker's share.
    spread = 1 if variant == "sw-native" else max(1, shards // workers // 10)

    def even() -> bool:
        o = s.owners(app)
        if len(o) < shards or any(v is None for v in o.values()):
            return False
        counts = Counter(o.values())
        if set(counts) != {w.name for w in fleet} or max(counts.values()) - min(counts.values()) > spread:
            return False
        # and running: each streamworker holds what the table says it owns
        return all(w.metric("streamworker_leases_held") in (None, counts[w.name]) for w in fleet
                   if w.metrics_port is not None)

    def step(label: str, action: Any, timeout: float) -> None:
        prev = s.owners(app)
        cycles0 = {w.name: w.metric("streamworker_leases_take_cycles_total") or 0.0 for w in fleet}
        t0 = time.monotonic()
        action()
        wait_until(even, timeout, f"{variant} {label}: an even spread", fleet)
        took = time.monotonic() - t0
        after = s.owners(app)
        cycles = {w.name: int((w.metric("streamworker_leases_take_cycles_total") or 0.0) - cycles0.get(w.name, 0.0))
                  for w in fleet if w.metrics_port is not None}
        res = {"step": label, "seconds": round(took, 1),
               "take_cycles": max(cycles.values()) if cycles else None, "take_cycles_by_worker": cycles,
               "lease_moves": sum(1 for k, v in after.items() if prev.get(k) != v),
               "minimum_moves": minimum_moves(prev, {w.name for w in fleet}, shards),
               "split": dict(sorted(Counter(after.values()).items()))}
        print(f"  {variant} {label}: {res}", flush=True)
        steps.append(res)

    def join() -> None:
        fleet.append(Worker(s, variant, stream, app, f"w{len(fleet) + 1}", kcl, idle_ms))

    if variant != "sw-native" and s.precreate_kcl3_tables:
        precreate_kcl3_lease_table(s.ddb, app)

    try:
        for i in range(workers):
            step("start w1" if i == 0 else f"join w{i + 1}", join, step_timeout)
        time.sleep(2 * s.failover)  # settle into the steady rhythm (outside the window)
        per_worker = idle_figures(s, fleet, idle, shards)
        victim = fleet[-1]

        def kill() -> None:
            victim.stop(signal.SIGKILL)
            fleet.remove(victim)

        step(f"kill -9 {victim.name}", kill, step_timeout)
        return {"variant": variant, "shards": shards, "workers": workers, "idle_read_ms": idle_ms,
                "even_within_leases": spread, "steps": steps,
                "idle": per_worker}
    finally:
        for w in fleet:
            w.stop()


def precreate_kcl3_lease_table(ddb: Any, table: str) -> None:
    """KCL 3's lease table with its owner index, made before KCL starts: KCL adds the index as an
    on-demand GSI (no ProvisionedThroughput), which DynamoDB accepts and dynalite refuses; KCL
    leaves an index that exists as it is. Provisioned, as dynalite's GSIs must be (dynalite
    throttles nothing)."""
    throughput = {"ReadCapacityUnits": 10000, "WriteCapacityUnits": 10000}
    ddb.create_table(
        TableName=table, BillingMode="PROVISIONED", ProvisionedThroughput=throughput,
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"},
                              {"AttributeName": "leaseOwner", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[{"IndexName": "LeaseOwnerToLeaseKeyIndex",
                                 "KeySchema": [{"AttributeName": "leaseOwner", "KeyType": "HASH"},
                                               {"AttributeName": "leaseKey", "KeyType": "RANGE"}],
                                 "Projection": {"ProjectionType": "KEYS_ONLY"},
                                 "ProvisionedThroughput": throughput}])
    ddb.get_waiter("table_exists").wait(TableName=table, WaiterConfig={"Delay": 0.5, "MaxAttempts": 120})


def idle_figures(s: Servers, fleet: list[Worker], idle: float, leases: int) -> dict[str, Any]:
    """CPU, RSS, threads per worker and DynamoDB calls over ``idle`` seconds of idle shards."""
    cpu0 = {w.name: tree_cpu(w.proc.pid) for w in fleet}
    by_op0, t0 = Counter(s.proxy.calls), time.monotonic()
    calls0 = sum(by_op0.values())
    rss_peak = {w.name: 0.0 for w in fleet}
    while time.monotonic() - t0 < idle:
        time.sleep(1.0)
        for w in fleet:
            rss_peak[w.name] = max(rss_peak[w.name], tree_rss_mb(w.proc.pid))
    window = time.monotonic() - t0
    by_op = Counter(s.proxy.calls)
    calls = sum(by_op.values()) - calls0
    by_op.subtract(by_op0)
    return {
        "window_s": round(window, 1),
        "cpu_percent": {w.name: round(100 * (tree_cpu(w.proc.pid) - cpu0[w.name]) / window, 1) for w in fleet},
        "rss_mb": {w.name: round(rss_peak[w.name], 1) for w in fleet},
        "threads": {w.name: threads(w.proc.pid) for w in fleet},
        "processes": {w.name: len(tree(w.proc.pid)) for w in fleet},
        "dynamodb_calls_per_minute": round(calls * 60 / window, 1),
        "dynamodb_calls_per_lease_per_minute": round(calls * 60 / window / leases, 2),
        "dynamodb_calls_by_operation_per_minute": {op: round(n * 60 / window, 1) for op, n in by_op.items() if n},
    }


def per_worker_run(s: Servers, variant: str, shards: int, idle: float, kcl: dict[str, Path]) -> dict[str, Any]:
    stream = s.stream(shards)
    app = f"one-{variant}-{uuid.uuid4().hex[:6]}"
    w = Worker(s, variant, stream, app, "w1", kcl)
    try:
        t0 = time.monotonic()
        wait_until(lambda: Counter(s.owners(app).values()).get("w1", 0) == shards, 900,
                   f"{variant}: one worker holding {shards} shards", [w])
        took = time.monotonic() - t0
        time.sleep(2 * s.failover)  # children started, first reads done (outside the window)
        res = {"variant": variant, "shards": shards, "seconds_to_hold_all": round(took, 1),
               **idle_figures(s, [w], idle, shards)}
        print(f"  {variant} holding {shards}: {res}", flush=True)
        return res
    finally:
        w.stop()


def logs_dir(logs: str | None, tmp: str) -> Path:
    if logs is None:
        return Path(tmp)
    Path(logs).mkdir(parents=True, exist_ok=True)
    return Path(logs)


def run_fleets(s: Servers, fleet_variants: list[str], args: argparse.Namespace, kcl: dict[str, Path],
               results: dict[str, Any]) -> None:
    for v in fleet_variants:
        print(f"fleet of {args.workers} on {args.shards} shards: {v}", flush=True)
        try:
            results["fleet"].append(fleet_run(s, v, args.shards, args.workers, args.idle, kcl,
                                              args.fleet_idle_read_ms, args.step_timeout))
        except (TimeoutError, RuntimeError) as exc:  # reported; the one-worker part still runs
            print(f"  {v}: gave up: {exc}", flush=True)
            results["fleet"].append({"variant": v, "gave_up": str(exc)})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--per-worker-shards", type=int, default=250)
    ap.add_argument("--failover", type=float, default=10.0)
    ap.add_argument("--idle", type=float, default=60.0, help="seconds of the idle window")
    ap.add_argument("--fleet-variants", default="sw-native")
    ap.add_argument("--fleet-servers", choices=("node", "kinesalite-moto", "mock"), default="node",
                    help="the fleet's stand-ins: kinesalite and dynalite (node; KCL 3.5.1's lease table is made for "
                         "it, as dynalite refuses the owner index KCL adds); kinesalite and moto; or kinesis-mock and "
                         "moto (mock), which do not serve a thousand shards on 2 cores")
    ap.add_argument("--fleet-failover", type=float, default=10.0,
                    help="the fleet's failover time (on kinesis-mock and moto, 60 s: a thousand leases renewed "
                         "every 3 s are more than moto answers in time on 2 cores)")
    ap.add_argument("--fleet-idle-read-ms", type=int, default=10000,
                    help="the fleet's wait after an empty read: a thousand shards read every 1.5 s (667 "
                         "GetRecords a second) are more than four workers and the stand-ins get from 2 cores")
    ap.add_argument("--step-timeout", type=float, default=600.0,
                    help="seconds a fleet step may take to even out before the variant is given up")
    ap.add_argument("--variants", default="sw-native,kcl-java,kcl35-multilang",
                    help="the one-worker comparison's variants")
    ap.add_argument("--logs", default=None,
                    help="keep the workers' logs (streamworker's at INFO) in this folder instead of a temporary one")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "scale.json"))
    args = ap.parse_args()
    kcl: dict[str, Path] = {}
    variants = [v for v in args.variants.split(",") if v]
    fleet_variants = [v for v in args.fleet_variants.split(",") if v]
    if {"kcl-java", "kcl-java-count"} & set(variants + fleet_variants):
        kcl["java"] = harness.install(multilang3.KCL3_VERSION)
    if "kcl35-multilang" in variants + fleet_variants:
        why = multilang3.unavailable()
        if why is not None:
            print(f"kcl35-multilang: skipped ({why})")
            variants = [v for v in variants if v != "kcl35-multilang"]
            fleet_variants = [v for v in fleet_variants if v != "kcl35-multilang"]
        else:
            kcl["multilang"] = multilang3.install()
            kcl["kclpy3"] = multilang.kclpy_sdist(multilang3.KCLPY3_VERSION)
    limit = args.shards * len(fleet_variants) + args.per_worker_shards * len(variants) + 10
    results: dict[str, Any] = {"shards": args.shards, "workers": args.workers, "failover_s": args.failover,
                               "fleet_failover_s": args.fleet_failover, "fleet_idle_read_ms": args.fleet_idle_read_ms,
                               "idle_read_ms": IDLE_MS, "servers": "kinesis-mock + moto (stand-ins)",
                               "kcl": multilang3.KCL3_VERSION, "fleet": [], "one_worker": []}
    if fleet_variants and args.fleet_servers != "mock":
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(tempfile.TemporaryDirectory())
            kl = stack.enter_context(NodeServer("kinesalite", shard_limit=limit))
            if args.fleet_servers == "node":
                results["fleet_servers"] = "kinesalite + dynalite (stand-ins)"
                ddb = stack.enter_context(NodeServer("dynalite")).endpoint
            else:
                results["fleet_servers"] = "kinesalite + moto (stand-ins)"
                ddb = stack.enter_context(MotoProcess()).endpoint
            proxy = stack.enter_context(CountingProxy(ddb))
            s = Servers(kl.endpoint, proxy.endpoint, proxy, logs_dir(args.logs, tmp), args.fleet_failover)
            s.log_level = "INFO" if args.logs else "WARNING"
            s.precreate_kcl3_tables = args.fleet_servers == "node"
            run_fleets(s, fleet_variants, args, kcl, results)
    with tempfile.TemporaryDirectory() as tmp, MotoProcess() as moto, KinesisMock(shard_limit=limit) as km, \
            FaultProxy(moto.endpoint) as proxy:
        s = Servers(km.endpoint, proxy.endpoint, proxy, logs_dir(args.logs, tmp), args.fleet_failover)
        if args.fleet_servers == "mock":
            results["fleet_servers"] = results["servers"]
            run_fleets(s, fleet_variants, args, kcl, results)
        s.failover = args.failover
        for v in variants:
            print(f"one worker on {args.per_worker_shards} shards: {v}", flush=True)
            try:
                results["one_worker"].append(per_worker_run(s, v, args.per_worker_shards, args.idle, kcl))
            except (TimeoutError, RuntimeError) as exc:
                print(f"  {v}: gave up: {exc}", flush=True)
    print()
    for f in results["fleet"]:
        if "gave_up" in f:
            print(f"{f['variant']:<12} fleet: gave up ({f['gave_up'][:200]})")
            continue
        for st in f["steps"]:
            print(f"{f['variant']:<12} {st['step']:<12} {st['seconds']:>7.1f} s  {st['take_cycles']} take cycles  "
                  f"moves {st['lease_moves']} (minimum {st['minimum_moves']})  split {st['split']}")
        i = f["idle"]
        print(f"{f['variant']:<12} idle, per worker: CPU % {i['cpu_percent']}  RSS MB {i['rss_mb']}  threads "
              f"{i['threads']}; DynamoDB calls per lease per minute {i['dynamodb_calls_per_lease_per_minute']}")
    for o in results["one_worker"]:
        print(f"{o['variant']:<16} {o['shards']} idle shards: CPU {o['cpu_percent']['w1']} %  RSS {o['rss_mb']['w1']} MB  "
              f"threads {o['threads']['w1']}  processes {o['processes']['w1']}  DynamoDB "
              f"{o['dynamodb_calls_per_minute']} calls/min")
    write_results(args.out, results)


if __name__ == "__main__":
    main()
