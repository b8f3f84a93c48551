"""Drive a fleet of worker processes through faults while a producer writes numbered records,
then check what the processors recorded (see ``check``)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
PROCESSOR = f"{HERE.parent / 'integration' / 'recording_processor.py'}:RecordingProcessor"
KEYS = 32


@dataclass
class Fleet:
    base_cmd: list[str]
    env: dict[str, str]
    log: Path
    tmp: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    generation: int = 0
    #: name -> list of (kind, time) faults: kill, stop, cont, term
    faults: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    def start(self) -> str:
        name = f"W{self.generation}"
        self.generation += 1
        env = {**self.env, "RECORD_LOG": str(self.log), "WORKER_NAME": name}
        self.procs[name] = subprocess.Popen([*self.base_cmd, "--worker-id", name], env=env,
                                            stdout=subprocess.DEVNULL,
                                            stderr=open(self.tmp / f"{name}.stderr", "w"))
        self.faults[name] = []
        return name

    def live(self) -> list[str]:
        return [n for n, p in self.procs.items() if p.poll() is None]

    def fault(self, name: str, kind: str) -> None:
        self.faults[name].append((kind, time.time()))
        sig = {"kill": signal.SIGKILL, "stop": signal.SIGSTOP, "cont": signal.SIGCONT, "term": signal.SIGTERM}[kind]
        self.procs[name].send_signal(sig)

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGCONT)
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()


class Producer(threading.Thread):
    def __init__(self, put: Callable[[list[tuple[str, bytes]]], None], rate: float = 100) -> None:
        super().__init__(daemon=True)
        self.put, self.rate, self.n = put, rate, 0
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            batch = [(f"k{i % KEYS}", str(i).encode()) for i in range(self.n, self.n + 20)]
            self.put(batch)
            self.n += len(batch)
            self.stop_event.wait(20 / self.rate)


def events(log: Path) -> list[dict[str, Any]]:
    out = []
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            out.append(json.loads(line))
        except ValueError:
            pass  # cut short by kill -9
    return out


def run_chaos(fleet: Fleet, producer: Producer, *, workers: int, duration: float, failover: float,
              reshard: Callable[[], None] | None, seed: int, group_timeout: float = 0.0) -> list[str]:
    """Start ``workers`` processes, inject faults for ``duration`` seconds, return the action log."""
    rng = random.Random(seed)
    actions: list[str] = []
    for _ in range(workers):
        fleet.start()
    producer.start()
    time.sleep(failover + group_timeout)  # let the fleet settle before the first fault
    end = time.monotonic() + duration
    resharded = reshard is None
    kinds = ["kill", "stop", "term"]
    i = 0
    while time.monotonic() < end:
        if not resharded and time.monotonic() > end - duration / 2:
            reshard()  # type: ignore[misc]
            actions.append("reshard")
            resharded = True
        live = fleet.live()
        kind = kinds[i % 3] if i < 3 else rng.choice(kinds)  # every kind at least once
        i += 1
        victim = rng.choice(live)
        if kind == "stop":
            fleet.fault(victim, "stop")
            time.sleep(failover + group_timeout + 2)  # past the failover time
            fleet.fault(victim, "cont")
            actions.append(f"SIGSTOP {victim} {failover + group_timeout + 2:.0f}s, SIGCONT")
        else:
            fleet.fault(victim, kind)
            fleet.procs[victim].wait(60)
            new = fleet.start()
            actions.append(f"{'kill -9' if kind == 'kill' else 'SIGTERM'} {victim}, start {new}")
        time.sleep(rng.uniform(1.0, 3.0))
    producer.stop_event.set()
    producer.join(10)
    return actions


@dataclass
class Report:
    produced: int
    processed: int
    duplicates: int
    lost: list[int]
    order_violations: list[str]
    unexplained_duplicates: list[str]
    concurrent: list[str]
    actions: list[str]

    def table(self, title: str) -> str:
        rows = [("records produced", self.produced), ("distinct records processed", self.processed),
                ("records processed twice", self.duplicates), ("records lost", len(self.lost)),
                ("order violations (per key)", len(self.order_violations)),
                ("duplicates outside a hard failure's window", len(self.unexplained_duplicates)),
                ("shards processed by two workers at once", len(self.concurrent)),
                ("faults injected", len(self.actions))]
        w = max(len(r[0]) for r in rows)
        lines = [f"== chaos: {title}"] + [f"  {k.ljust(w)}  {v}" for k, v in rows]
        lines += ["  actions: " + "; ".join(self.actions)]
        return "\n".join(lines)


def check(log: Path, produced: int, fleet: Fleet, slack: float = 2.0, settle: float = 0.0) -> Report:
    """``settle``: how long a worker woken from SIGSTOP waits before going on (Kafka); the tail of
    its frozen batch may come that much later after SIGCONT."""
    evs = sorted(events(log), key=lambda e: e["t"])
    recs = [e for e in evs if e["ev"] == "rec"]
    by_number: dict[int, list[dict[str, Any]]] = {}
    for e in recs:
        by_number.setdefault(int(e["data"]), []).append(e)
    lost = [n for n in range(produced) if n not in by_number]
    # first deliveries in production order, per key
    order: list[str] = []
    last_seen: dict[str, int] = {}
    for e in recs:
        n = int(e["data"])
        if by_number[n][0] is not e:
            continue
        key = f"k{n % KEYS}"
        if n < last_seen.get(key, -1):
            order.append(f"{key}: {n} after {last_seen[key]}")
        last_seen[key] = max(last_seen.get(key, -1), n)
    # duplicates: some delivery of the record must lie in a hard-failed worker's un-checkpointed
    # window: made before that worker was killed or frozen (or as the tail of its frozen batch,
    # right after SIGCONT), and never covered by a checkpoint of that worker afterwards
    hard = {w: [t for k, t in fl if k in ("kill", "stop")] for w, fl in fleet.faults.items()}
    resumed = {w: [t for k, t in fl if k == "cont"] for w, fl in fleet.faults.items()}
    # Checkpoints by (worker, shard, session): a checkpoint covers only deliveries of its own
    # session (from one init of the shard on that worker to the next); after a lease loss the
    # same worker may take the shard again and checkpoint further, which says nothing of
    # what it delivered before the loss.
    checkpoints: dict[tuple[str, str, int], list[tuple[float, int]]] = {}
    sessions: dict[tuple[str, str], int] = {}
    for e in evs:
        if e["ev"] == "init":
            sessions[(e["w"], e["shard"])] = sessions.get((e["w"], e["shard"]), 0) + 1
        elif e["ev"] in ("rec", "checkpointed"):
            e["session"] = sessions.get((e["w"], e["shard"]), 0)
            if e["ev"] == "checkpointed":
                checkpoints.setdefault((e["w"], e["shard"], e["session"]), []).append((e["t"], int(e["seq"])))

    def in_failure_window(d: dict[str, Any]) -> bool:
        w = d["w"]
        failed_after = any(t >= d["t"] - slack for t in hard.get(w, []))
        frozen_tail = any(0 <= d["t"] - t <= slack + settle for t in resumed.get(w, []))
        covered = any(seq >= int(d["seq"]) for t, seq in checkpoints.get((w, d["shard"], d["session"]), [])
                      if t >= d["t"])
        return (failed_after or frozen_tail) and not covered

    unexplained: list[str] = []
    dupes = 0
    for n, hits in by_number.items():
        if len(hits) < 2:
            continue
        dupes += 1
        if not any(in_failure_window(d) for d in hits):
            first = hits[0]
            unexplained.append(f"record {n}: first {first['w']} on {first['shard']}, again "
                               f"{[(h['w'], round(h['t'] - first['t'], 2)) for h in hits[1:]]}")
    # never two workers on one shard at once: a worker's records on a shard, within one session,
    # may not straddle another worker's, except the tail of a batch a frozen worker finishes
    # right after SIGCONT (its checkpoint is then refused)
    conts = {w: [t for k, t in fl if k == "cont"] for w, fl in fleet.faults.items()}
    concurrent: list[str] = []
    by_shard: dict[str, list[dict[str, Any]]] = {}
    for e in recs:  # each record's session was set above
        by_shard.setdefault(e["shard"], []).append(e)
    for shard, rs in by_shard.items():
        seen_other_after: dict[tuple[str, int], str] = {}
        open_sessions: dict[tuple[str, int], float] = {}
        for e in rs:
            me = (e["w"], e["session"])
            if me in seen_other_after:
                zombie_tail = any(0 <= e["t"] - t <= slack + settle for t in conts.get(e["w"], []))
                if not zombie_tail:
                    concurrent.append(f"{shard}: {e['w']} processed at {e['t']:.2f} after "
                                      f"{seen_other_after[me]} had started")
                    break
            for other in list(open_sessions):
                if other != me:
                    seen_other_after[other] = e["w"]
            open_sessions[me] = e["t"]
    return Report(produced, len(by_number), dupes, lost, order, unexplained, concurrent, [])
