"""streamworker side by side with the Java KCL, on one stream and the same local servers.

Variants, each a process tree started the way its users start it, each reading the same backlog
of 100-byte records (GetRecords limit 500) from TRIM_HORIZON into a fresh lease table, checkpointing every batch and
appending one line per batch to a file:

- ``kcl35-multilang``: KCL 3.5.1's MultiLangDaemon (what amazon-kclpy 3.x users run today, in
  KCL 3's default mode) with a Python child per shard running AWS's amazon-kclpy 3.2.0 sample app.
  Its artifact is not served by Maven Central here; it is built from AWS's sources beside the
  project (tests/kcl/multilang3.py), so this variant needs them.
- ``kcl-java``: KCL 2.6's Scheduler with a Java no-op processor (tests/kcl/KclHarness.java): the
  cheapest KCL there is (no child processes, no JSON).
- ``sw-native``: ``streamworker run`` with a native RecordProcessor.
- ``sw-multilang3``: ``streamworker run --properties`` with the same amazon-kclpy 3.2.0 child per
  shard as ``kcl35-multilang`` (streamworker plays the MultiLangDaemon).
- history, with ``--variants``: ``kcl-multilang`` (KCL 1.15's MultiLangDaemon, inside its core
  jar, with amazon-kclpy 1.5.1: the only one to be had here before KCL 3.5.1's was built) and
  ``sw-multilang`` (streamworker with that 1.5.1 child, protocol v1).

Per variant: records per CPU-second of the whole process tree (sampled from /proc between the
first batch and the last), peak RSS of the whole tree (sum of VmRSS, sampled every 0.2 s),
DynamoDB operations per lease per minute while processing and while idle (counted by an HTTP
proxy in front of DynamoDB), and for two workers of a kind under a live producer: time from kill -9
of one to its shards processing again on the other, the same after SIGTERM (graceful handoff), and
records processed twice in each (counted against the stream's own sequence numbers). Runs are interleaved; the
table reports medians. Kinesis is kinesis-mock, DynamoDB moto (both stand-ins: KCL needs
kinesis-mock's CBOR-free HTTP/1.1 endpoint, see tests/kcl/harness.py).

    .venv/bin/python benchmarks/vs_kcl.py [--records 40000] [--runs 3]

Writes benchmarks/results/vs_kcl.json.
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
from collections import Counter
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import backlog, read_events, write_results  # noqa: E402

from streamworker.local import MotoServer  # noqa: E402
from streamworker.local.servers import KinesisMock  # noqa: E402
from tests.faultproxy import FaultProxy  # noqa: E402
from tests.kcl import harness, multilang, multilang3  # noqa: E402

APPS = Path(__file__).resolve().parent / "vs_kcl_apps"
SHARDS = 4
FAILOVER = 10  # seconds, both kinds (KCL's default)
#: GetRecords limit, both kinds: small enough that the backlog is many batches (kinesis-mock takes
#: ~minutes to accept a few hundred thousand records, so the backlog cannot be large)
MAX_RECORDS = 500


# -- the process tree, from /proc ---------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    return kids


def tree(pid: int) -> list[int]:
    kids, out, todo = _children(), [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def tree_cpu(pid: int) -> float:
    """utime + stime (+ reaped children's) of every live process in the tree, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in tree(pid):
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in f[11:15])
        except (OSError, IndexError):
            pass
    return total / tick


def tree_rss_mb(pid: int) -> float:
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, tree_rss_mb(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(2)
        return round(self.peak, 1)


# -- variants -------------------------------------------------------------------------------------

class Setting:
    def __init__(self, kinesis_url: str, dynamodb_url: str, stream: str, tmp: Path) -> None:
        self.kinesis_url, self.dynamodb_url, self.stream, self.tmp = kinesis_url, dynamodb_url, stream, tmp
        self.kcl_home = harness.install()
        self.daemon_home = multilang.install()
        self.kclpy1 = multilang.kclpy_sdist(multilang.KCLPY1_VERSION)
        self.daemon3_home = multilang3.install() if multilang3.unavailable() is None else None
        self.kclpy3 = multilang.kclpy_sdist(multilang3.KCLPY3_VERSION)
        self.env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_KINESIS": kinesis_url,
                    "AWS_ENDPOINT_URL_DYNAMODB": dynamodb_url, "STREAMWORKER_LOG_FORMAT": "json"}

    def start(self, variant: str, app: str, worker: str, batch_log: Path) -> subprocess.Popen[bytes]:
        env = {**self.env, "BATCH_LOG": str(batch_log)}
        err = open(self.tmp / f"{app}-{worker}.stderr", "w")
        if variant in ("kcl35-multilang", "sw-multilang3"):  # AWS's kclpy 3.2.0 sample, one line per batch
            env.update(RECORD_LOG=str(batch_log), QUIET="1", WORKER_NAME=worker,
                       PYTHONPATH=multilang.child_pythonpath(self.kclpy3))
            props = multilang3.write_properties(self.tmp / f"{app}-{worker}.properties", self.stream, app,
                                                self.kinesis_url, self.dynamodb_url, worker,
                                                failover_ms=FAILOVER * 1000, max_records=MAX_RECORDS)
            if variant == "kcl35-multilang":
                if self.daemon3_home is None:
                    raise SystemExit(f"kcl35-multilang: {multilang3.unavailable()}")
                d = multilang3.MultiLangDaemon3(self.daemon3_home, props, env, self.tmp / f"{app}-{worker}.stderr",
                                                jvm=("-Xmx512m",))
                return d.proc
            return subprocess.Popen([sys.executable, "-m", "streamworker", "run", "--properties", str(props)],
                                    env=env, stdout=subprocess.DEVNULL, stderr=err)
        if variant in ("kcl-multilang", "sw-multilang"):  # AWS's kclpy 1.5.1 sample, one line per batch
            env.update(RECORD_LOG=str(batch_log), QUIET="1", WORKER_NAME=worker,
                       PYTHONPATH=multilang.child_pythonpath(self.kclpy1))
            props = multilang.write_properties(self.tmp / f"{app}-{worker}.properties", self.stream, app,
                                               self.kinesis_url, self.dynamodb_url, worker,
                                               failover_ms=FAILOVER * 1000, max_records=MAX_RECORDS)
            if variant == "kcl-multilang":
                d = multilang.MultiLangDaemon(self.daemon_home, props, env, self.tmp / f"{app}-{worker}.stderr",
                                              jvm=("-Xmx512m",))
                return d.proc
            cmd = [sys.executable, "-m", "streamworker", "run", "--properties", str(props),
                   "--multilang-protocol", "v1"]
            return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        if variant == "kcl-java":
            k = harness.KclWorker(self.kcl_home, self.stream, app, worker, batch_log, self.kinesis_url,
                                  self.dynamodb_url, self.tmp / f"{app}-{worker}.stderr", quiet=True,
                                  failover_ms=FAILOVER * 1000, jvm=("-Xmx512m",), max_records=MAX_RECORDS)
            return k.proc
        cmd = [sys.executable, "-m", "streamworker", "run", f"{APPS / 'noop_processor.py'}:NoopProcessor",
               "--stream", self.stream, "--initial-position", "TRIM_HORIZON", "--failover-time", str(FAILOVER),
               "--max-records", str(MAX_RECORDS), "--application-name", app, "--worker-id", worker]
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)


def batches(path: Path) -> list[dict[str, Any]]:
    return read_events(path, "batch")


def wait_until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def throughput_run(s: Setting, proxy: FaultProxy, variant: str, records: int, idle: float) -> dict[str, Any]:
    app = f"bench-{variant}-{uuid.uuid4().hex[:6]}"
    log = s.tmp / f"{app}.jsonl"
    proc = s.start(variant, app, "w1", log)
    rss = RssSampler(proc.pid)
    try:
        wait_until(lambda: batches(log), 120, f"{variant}: first batch")
        # the window starts after the first batch (start-up, JVM warm-up and lease taking are
        # outside it) and counts only the records processed inside it
        cpu0, t0, ops0 = tree_cpu(proc.pid), time.monotonic(), sum(proxy.calls.values())
        before = sum(b["n"] for b in batches(log))
        wait_until(lambda: sum(b["n"] for b in batches(log)) >= records, 600, f"{variant}: {records} records")
        cpu1, t1, ops1 = tree_cpu(proc.pid), time.monotonic(), sum(proxy.calls.values())
        time.sleep(idle)  # steady state: renewals and scans only
        ops2 = sum(proxy.calls.values())
    finally:
        peak = rss.stop()
        stop(proc)
    window = records - before
    busy = max(cpu1 - cpu0, 1e-3)
    return {"records": window, "seconds": round(t1 - t0, 2), "cpu_seconds": round(busy, 2),
            "records_per_cpu_second": round(window / busy), "records_per_second": round(window / (t1 - t0)),
            "peak_rss_mb": peak,
            "ddb_ops_per_lease_minute_processing": round((ops1 - ops0) / SHARDS / ((t1 - t0) / 60), 1),
            "ddb_ops_per_lease_minute_idle": round((ops2 - ops1) / SHARDS / (idle / 60), 1)}


def twice(kinesis: Any, stream: str, log: Path) -> int:
    """Records processed more than once: every record of the stream (read back from Kinesis) that
    falls inside more than one logged batch's [first, last] range on its shard."""
    import bisect

    ranges: dict[str, list[tuple[int, int]]] = {}
    for b in batches(log):
        ranges.setdefault(b["shard"], []).append((int(b["first"]), int(b["seq"])))
    extra = 0
    for shard, spans in ranges.items():
        seqs: list[int] = []
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard,
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = kinesis.get_records(ShardIterator=it, Limit=10000)
            seqs.extend(int(x["SequenceNumber"]) for x in r["Records"])
            if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
                break
            it = r.get("NextShardIterator")
        seqs.sort()
        seen: Counter[int] = Counter()
        for lo, hi in spans:
            for i in range(bisect.bisect_left(seqs, lo), bisect.bisect_right(seqs, hi)):
                seen[seqs[i]] += 1
        extra += sum(c - 1 for c in seen.values() if c > 1)
    return extra


def failover_run(s: Setting, kinesis: Any, variant: str, how: str) -> dict[str, Any]:
    """Two workers, a live producer; stop the one holding half the shards (``kill`` = kill -9,
    ``term`` = SIGTERM, a graceful handoff); time until each of its shards processes a batch on
    the survivor, and the records processed twice over the whole run."""
    app = f"{how}-{variant}-{uuid.uuid4().hex[:6]}"
    log = s.tmp / f"{app}.jsonl"
    stop_producing = threading.Event()

    def produce() -> None:
        while not stop_producing.wait(0.1):
            kinesis.put_records(StreamName=s.stream, Records=[
                {"Data": b"x" * 100, "PartitionKey": f"k{i}"} for i in range(40)])

    ddb = boto3.client("dynamodb", endpoint_url=s.dynamodb_url, region_name="us-east-1",
                       aws_access_key_id="testing", aws_secret_access_key="testing")

    def owners() -> dict[str, str]:
        try:
            items = ddb.scan(TableName=app, ConsistentRead=True)["Items"]
        except ddb.exceptions.ResourceNotFoundException:
            return {}
        return {i["leaseKey"]["S"]: i.get("leaseOwner", {}).get("S", "") for i in items
                if i.get("entityType", {}).get("S", "LEASE") == "LEASE"}  # not KCL 3.5's own rows

    def split() -> bool:
        counts = Counter(owners().values())
        # KCL 3's leader balances by utilisation, not count: any share each will do there
        even = sorted(counts.values()) == [2, 2] if variant != "kcl35-multilang" else \
            set(counts) == {"w1", "w2"}
        return even and {x["shard"] for x in batches(log)} >= set(owners())

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    a, b = s.start(variant, app, "w1", log), s.start(variant, app, "w2", log)
    try:
        wait_until(split, 240, f"{variant}: two workers sharing the shards")
        time.sleep(3)
        victims = sorted(k for k, o in owners().items() if o == "w1")
        mark = len(batches(log))
        os.kill(a.pid, signal.SIGKILL if how == "kill" else signal.SIGTERM)
        stopped = time.monotonic()
        seen: dict[str, float] = {}

        def resumed() -> bool:
            for x in batches(log)[mark:]:
                if x["shard"] in victims and x["shard"] not in seen and owners().get(x["shard"]) == "w2":
                    seen[x["shard"]] = time.monotonic()
            return set(seen) >= set(victims)

        wait_until(resumed, 180, f"{variant}: takeover after {how}")
        took = round(max(seen.values()) - stopped, 2)
        a.wait(60)
        stop_producing.set()
        producer.join(5)
        stop(b)
        return {f"{how}_takeover_seconds": took, f"{how}_records_twice": twice(kinesis, s.stream, log)}
    finally:
        stop_producing.set()
        producer.join(5)
        for p in (a, b):
            if p.poll() is None:
                p.kill()
                p.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=40000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--idle", type=float, default=30.0, help="seconds of idle after the backlog")
    ap.add_argument("--variants", default="kcl35-multilang,kcl-java,sw-native,sw-multilang3")
    ap.add_argument("--failover-runs", type=int, default=2)
    ap.add_argument("--no-failover", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "vs_kcl.json"))
    args = ap.parse_args()
    variants = args.variants.split(",")
    with tempfile.TemporaryDirectory() as tmp, MotoServer() as moto, KinesisMock() as km, \
            FaultProxy(moto.endpoint) as proxy:
        kinesis, stream = backlog(km.endpoint, "bench", SHARDS, args.records, lambda n: (b"%08d" % n) + b"x" * 92,
                                  lambda n: f"k{n % 64}")
        s = Setting(km.endpoint, proxy.endpoint, stream, Path(tmp))
        runs: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        for r in range(args.runs):
            for v in variants if r % 2 == 0 else reversed(variants):
                res = throughput_run(s, proxy, v, args.records, args.idle)
                print(f"run {r + 1} {v}: {res}", flush=True)
                runs[v].append(res)
        fails: dict[str, list[dict[str, Any]]] = {v: [] for v in variants}
        if not args.no_failover:
            for r in range(args.failover_runs):
                for v in variants if r % 2 == 0 else reversed(variants):
                    try:
                        res = {**failover_run(s, kinesis, v, "kill"), **failover_run(s, kinesis, v, "term")}
                    except TimeoutError as exc:  # reported, and the other runs still count
                        print(f"failover {r + 1} {v}: gave up: {exc}", flush=True)
                        continue
                    print(f"failover {r + 1} {v}: {res}", flush=True)
                    fails[v].append(res)
    summary: dict[str, dict[str, float]] = {}
    for v in variants:
        keys = [k for k in runs[v][0] if k != "records"]
        summary[v] = {k: round(statistics.median(x[k] for x in runs[v]), 2) for k in keys}
        for k in (fails[v][0] if fails[v] else {}):
            summary[v][k] = round(statistics.median(x[k] for x in fails[v]), 2)
    print(f"\nmedians of {args.runs} interleaved runs, {args.records} records of 100 bytes on {SHARDS} shards "
          "(kinesis-mock + moto), checkpoint every batch:")
    cols = ["records_per_cpu_second", "records_per_second", "peak_rss_mb", "ddb_ops_per_lease_minute_processing",
            "ddb_ops_per_lease_minute_idle", "kill_takeover_seconds", "kill_records_twice",
            "term_takeover_seconds", "term_records_twice"]
    print(f"{'':38}" + "".join(f"{v:>14}" for v in summary))
    for c in cols:
        print(f"{c:38}" + "".join(f"{m.get(c, float('nan')):>14}" for m in summary.values()))
    for kcl in ("kcl35-multilang", "kcl-multilang", "kcl-java"):
        base = summary.get(kcl)
        for v, m in summary.items():
            if base and v.startswith("sw-"):
                print(f"{v} against {kcl}: {m['records_per_cpu_second'] / base['records_per_cpu_second']:.2f}x its "
                      f"records per CPU-second, {m['peak_rss_mb'] / base['peak_rss_mb']:.2f}x its RSS")
    write_results(args.out, {"records": args.records, "runs": args.runs, "failover_time": FAILOVER,
                             "servers": "kinesis-mock + moto", "kcl": harness.KCL_VERSION,
                             "kcl_multilang": multilang3.KCL3_VERSION, "kclpy": multilang3.KCLPY3_VERSION,
                             "history": {"kcl_multilang": multilang.KCL1_VERSION, "kclpy": multilang.KCLPY1_VERSION},
                             "max_records": MAX_RECORDS, "shards": SHARDS,
                             "summary": summary, "throughput_runs": runs, "failover_runs": fails})


if __name__ == "__main__":
    main()
