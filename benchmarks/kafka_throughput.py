"""Kafka consume throughput: streamworker against the raw client (and arroyo, quixstreams).

On one local broker (Apache Kafka from Maven Central where Java and Maven exist, else the tansu
stand-in; ``--broker`` chooses) and one topic (4 partitions, N records of 100 bytes) each variant
reads the whole topic in its own consumer group, in its own process, committing as it goes:

  raw           confluent-kafka ``consume(1000)`` loop, one synchronous commit per batch
  streamworker  a no-op RecordProcessor that checkpoints (synchronous commit) every batch, the
                Worker in the benchmark's process
  raw-async     the user's setting, raw: ``consume(1000)``, a few bytes to a file and one
                asynchronous commit per batch
  cli           the user's setting: ``streamworker run`` as its own process, with a processor that
                writes a few bytes to a file and checkpoints after every batch, as the README shows
  arroyo        RunTask -> CommitOffsets (its idiomatic pipeline), in a venv of its own
  quixstreams   an Application with a no-op ``update``, in a venv of its own

Time runs from a variant's first message to its last (group joins excluded for all alike).
Prints msg/s, ratios to raw and peak RSS; writes benchmarks/results/kafka_throughput.json.
Targets: streamworker >= 0.5x raw; cli >= 0.6x raw-async (aim 0.8x) with peak RSS <= 1.5x;
streamworker >= 3x arroyo and quixstreams.
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
from _common import peak_rss_mb, run_variant, write_results  # noqa: E402

CACHE = Path(os.environ.get("STREAMWORKER_CACHE", Path.home() / ".cache" / "streamworker")) / "bench-venvs"
COMPETITORS = {"arroyo": ["sentry-arroyo"], "quixstreams": ["quixstreams>=3"]}
GROUP_TIMING = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000, "fetch.queue.backoff.ms": 10}


class Clock:
    """First and last message times of one variant."""

    def __init__(self, target: int) -> None:
        self.target, self.n, self.t0 = target, 0, 0.0
        self.lock = threading.Lock()
        self.done = threading.Event()

    def add(self, k: int) -> bool:
        with self.lock:
            if self.n == 0:
                self.t0 = time.perf_counter()
            self.n += k
            if self.n >= self.target and not self.done.is_set():
                self.t1 = time.perf_counter()
                self.done.set()
        return self.done.is_set()


def raw_loop(args: argparse.Namespace, clock: Clock, *, asynchronous: bool) -> None:
    """``consume(1000)``, touch every payload, commit per batch; the asynchronous variant also
    writes a few bytes per batch, as the user's processor does."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, **GROUP_TIMING})
    c.subscribe([args.topic])
    with open(os.devnull, "w") as out:
        while not clock.done.is_set():
            msgs = c.consume(1000, 1.0)
            good = [m for m in msgs if m.error() is None]
            for m in good:
                m.value()
            if good:
                if asynchronous:
                    out.write(f"{len(good)}\n")
                c.commit(asynchronous=asynchronous)
                clock.add(len(good))
    c.close()


def run_raw(args: argparse.Namespace, clock: Clock) -> None:
    raw_loop(args, clock, asynchronous=False)


def run_raw_async(args: argparse.Namespace, clock: Clock) -> None:
    raw_loop(args, clock, asynchronous=True)


CLI_PROCESSOR = """
import os, time
from streamworker import RecordProcessor

class Counting(RecordProcessor):
    def initialize(self, i):
        self.out = open(os.environ["BATCH_LOG"], "a", buffering=1)

    def process_records(self, p):
        for r in p.records:
            r.data
        p.checkpointer.checkpoint()
        self.out.write(f"{time.time()} {len(p.records)}\\n")
"""


def run_cli(args: argparse.Namespace, clock: Clock) -> None:
    """``streamworker run`` in a process of its own; the processor logs each batch's time and size."""
    import signal
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        app, log = Path(tmp) / "counting.py", Path(tmp) / "batches.log"
        app.write_text(CLI_PROCESSOR)
        log.touch()
        props = [f"-X{k}={v}" for k, v in GROUP_TIMING.items()]
        cmd = [sys.executable, "-m", "streamworker", "run", f"{app}:Counting", "--source", "kafka",
               "--topic", args.topic, "--bootstrap-servers", args.bootstrap, "--application-name", args.group,
               "--initial-position", "TRIM_HORIZON", "--log-level", "WARNING", *props]
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "BATCH_LOG": str(log)})
        first = last = 0.0
        total = 0
        try:
            with open(log) as f:
                while total < args.records:
                    line = f.readline()
                    if not line:
                        if proc.poll() is not None:
                            raise RuntimeError(f"streamworker run exited with {proc.returncode}")
                        time.sleep(0.01)
                        continue
                    t, n = line.split()
                    first = first or float(t)
                    last, total = float(t), total + int(n)
            hwm = next((int(x.split()[1]) for x in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                        if x.startswith("VmHWM:")), 0)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        # the first batch's own records count from the moment its batch was handed over
        clock.n, clock.t0, clock.t1 = total, first, last
        clock.rss_mb = round(hwm / 1024, 1)


def run_streamworker(args: argparse.Namespace, clock: Clock) -> None:
    sys.path.insert(0, str(ROOT))
    from streamworker import RecordProcessor, Worker, WorkerConfig

    class Noop(RecordProcessor):
        def process_records(self, p):  # type: ignore[no-untyped-def]
            for r in p.records:
                r.data  # noqa: B018 - touch the payload like the raw loop does
            p.checkpointer.checkpoint()
            clock.add(len(p.records))

    cfg = WorkerConfig.load({"source": "kafka", "topics": [args.topic], "bootstrap_servers": args.bootstrap,
                             "application_name": args.group, "initial_position": "TRIM_HORIZON",
                             "log_level": "WARNING", "log_format": "console",
                             "kafka_properties": {k: str(v) for k, v in GROUP_TIMING.items()}})
    w = Worker(cfg, Noop)
    w.start()
    clock.done.wait()
    w.shutdown(30)


def run_arroyo(args: argparse.Namespace, clock: Clock) -> None:
    from arroyo.backends.kafka import KafkaConsumer
    from arroyo.backends.kafka.configuration import build_kafka_consumer_configuration
    from arroyo.processing import StreamProcessor
    from arroyo.processing.strategies import CommitOffsets, RunTask
    from arroyo.processing.strategies.abstract import ProcessingStrategyFactory
    from arroyo.types import Topic

    holder: dict[str, StreamProcessor] = {}

    def task(message):  # type: ignore[no-untyped-def]
        message.payload.value  # noqa: B018
        if clock.add(1):
            holder["p"].signal_shutdown()
        return message.payload

    class Factory(ProcessingStrategyFactory):  # type: ignore[type-arg]
        def create_with_partitions(self, commit, partitions):  # type: ignore[no-untyped-def]
            return RunTask(task, CommitOffsets(commit))

    conf = build_kafka_consumer_configuration(dict(GROUP_TIMING), bootstrap_servers=[args.bootstrap],
                                              auto_offset_reset="earliest", group_id=args.group)
    holder["p"] = StreamProcessor(KafkaConsumer(conf), Topic(args.topic), Factory())
    holder["p"].run()


def run_quix(args: argparse.Namespace, clock: Clock) -> None:
    from quixstreams import Application

    app = Application(broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
                      consumer_extra_config=dict(GROUP_TIMING), auto_create_topics=False)
    sdf = app.dataframe(app.topic(args.topic, value_deserializer="bytes"))

    def count(_value):  # type: ignore[no-untyped-def]
        if clock.add(1):
            app.stop()

    sdf = sdf.update(count)
    app.run()


VARIANTS = {"raw": run_raw, "streamworker": run_streamworker, "raw-async": run_raw_async, "cli": run_cli,
            "arroyo": run_arroyo, "quixstreams": run_quix}
#: Interleaved and repeated; the others run once.
REPEATED = ("raw", "streamworker", "raw-async", "cli")


def child(args: argparse.Namespace) -> None:
    clock = Clock(args.records)
    VARIANTS[args.variant](args, clock)
    seconds = clock.t1 - clock.t0
    rss = getattr(clock, "rss_mb", None) or peak_rss_mb()
    print(json.dumps({"variant": args.variant, "records": clock.n, "seconds": round(seconds, 3),
                      "msg_per_s": round(clock.n / seconds), "peak_rss_mb": rss}))


def competitor_python(name: str) -> str | None:
    venv = CACHE / name
    py = venv / "bin" / "python"
    if not py.exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(py), "-m", "pip", "install", "-q", *COMPETITORS[name]], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        except (subprocess.SubprocessError, OSError) as exc:
            print(f"{name}: could not be installed ({exc}); skipped")
            return None
    return str(py)


def produce(bootstrap: str, topic: str, records: int) -> float:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])[topic].result(15)
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.num.messages": 10000,
                  "queue.buffering.max.messages": 2_000_000})
    payload = b"x" * 100
    t0 = time.perf_counter()
    for i in range(records):
        p.produce(topic, value=payload, partition=i % 4)
        if i % 10000 == 0:
            p.poll(0)
    assert p.flush(120) == 0
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=3_000_000, help="per run (a 1 M window is under a second: too short)")
    ap.add_argument("--variants", default="raw,streamworker,raw-async,cli,arroyo,quixstreams")
    ap.add_argument("--repeats", type=int, default=3,
                    help="interleaved runs of raw and streamworker; medians are reported (the others run once)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "kafka_throughput.json"))
    ap.add_argument("--broker", choices=["apache-kafka", "tansu"], help="default: apache-kafka where Java and Maven exist")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--bootstrap", help=argparse.SUPPRESS)
    ap.add_argument("--topic", help=argparse.SUPPRESS)
    ap.add_argument("--group", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        child(args)
        return
    sys.path.insert(0, str(ROOT))
    from streamworker.local import ApacheKafka, KafkaBroker
    from streamworker.local.apache_kafka import java_and_maven

    kind = args.broker or ("apache-kafka" if java_and_maven() else "tansu")
    print(f"broker: {kind}" + ("" if kind == "apache-kafka" else " (a stand-in)"))
    results: dict[str, dict[str, float]] = {}
    with (ApacheKafka(heap="1g") if kind == "apache-kafka" else KafkaBroker()) as broker:
        topic = f"bench-{uuid.uuid4().hex[:6]}"
        secs = produce(broker.bootstrap, topic, args.records)
        print(f"produced {args.records} records of 100 bytes to {topic} (4 partitions) in {secs:.1f}s")
        names = args.variants.split(",")
        order = [n for _ in range(args.repeats) for n in names if n in REPEATED]
        order += [n for n in names if n not in REPEATED]
        runs: dict[str, list[dict[str, float]]] = {}
        for name in order:
            py = sys.executable if name in REPEATED else competitor_python(name)
            if py is None:
                continue
            cmd = [py, __file__, "--variant", name, "--bootstrap", broker.bootstrap, "--topic", topic,
                   "--group", f"{name}-{uuid.uuid4().hex[:6]}", "--records", str(args.records)]
            if (figures := run_variant(name, cmd, 900)) is not None:
                runs.setdefault(name, []).append(figures)
        for name, rs in runs.items():
            rs.sort(key=lambda x: x["msg_per_s"])
            median = dict(rs[len(rs) // 2])
            median["runs_msg_per_s"] = [x["msg_per_s"] for x in rs]  # type: ignore[assignment]
            results[name] = median
    raw = results.get("raw", {}).get("msg_per_s")
    raw_async = results.get("raw-async", {})
    print(f"\n{'variant':<14}{'msg/s':>10}{'x raw':>8}{'peak RSS MB':>13}   (cli: x raw-async)")
    for name, r in results.items():
        base = raw_async.get("msg_per_s") if name == "cli" else raw
        ratio = round(r["msg_per_s"] / base, 3) if base else None
        r["ratio_to_raw"] = ratio  # type: ignore[assignment]
        print(f"{name:<14}{r['msg_per_s']:>10}{ratio if ratio is not None else '-':>8}{r['peak_rss_mb']:>13}")
    if "cli" in results and raw_async:
        summary_rss = round(results["cli"]["peak_rss_mb"] / raw_async["peak_rss_mb"], 2)
        print(f"cli peak RSS / raw-async: {summary_rss}x")
    sw = results.get("streamworker", {}).get("msg_per_s")
    summary: dict[str, object] = {"broker": kind, "records": args.records, "results": results}
    for other in ("arroyo", "quixstreams"):
        if sw and other in results:
            summary[f"streamworker_vs_{other}"] = round(sw / results[other]["msg_per_s"], 2)
            print(f"streamworker / {other}: {summary[f'streamworker_vs_{other}']}x")
    summary["targets"] = {"ratio_to_raw": ">= 0.5", "cli_ratio_to_raw_async": ">= 0.6 (aim 0.8)",
                          "cli_rss_to_raw_async": "<= 1.5", "vs_arroyo_and_quixstreams": ">= 3"}
    write_results(args.out, summary)


if __name__ == "__main__":
    main()
