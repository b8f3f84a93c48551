"""Lease balancing and DynamoDB cost at scale.

200 leases in one lease table on a local DynamoDB (moto in this process, or ``--server
dynalite``, a Node.js stand-in in a process of its own that answers a write in about a
millisecond, as DynamoDB does). Coordinators (the DynamoDB lease logic of a worker, with a
stand-in for its shard consumers that finishes a handoff 50 ms after it is asked) join one by
one, 1 -> 4, then one leaves gracefully and one is killed (4 -> 2). For each step: seconds until
the split is even (within one lease, no handoff pending), the take cycles it took (the most any
worker ran, and of those the ones that took or stole a lease), lease moves, and whether any
lease moved back. Then, at steady state, DynamoDB operations and
capacity units per lease per minute, next to KCL's (a renewal per lease every failover/3, a full
consistent Scan per worker every 2 x (failover + epsilon)).

Prints a table and writes benchmarks/results/balance.json.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_results  # noqa: E402
from _node_standins import NodeServer  # noqa: E402

from streamworker.leases.base import ShardFigures  # noqa: E402
from streamworker.leases.dynamodb.coordinator import DynamoDBCoordinator  # noqa: E402
from streamworker.leases.dynamodb.table import LeaseTable  # noqa: E402
from streamworker.leases.lease import Lease  # noqa: E402
from streamworker.local import MotoServer  # noqa: E402
from streamworker.records import InitialPosition  # noqa: E402
from streamworker.sources.base import ShardInfo  # noqa: E402


class FakeConsumers:
    """What the worker does on lease events: start a consumer; on a handoff request finish the
    batch (50 ms) and release. Records/s per shard: a few hot shards, the rest cool."""

    def __init__(self, rates: dict[str, float]) -> None:
        self.rates = rates
        self.coordinator: DynamoDBCoordinator | None = None
        self.started: dict[str, float] = {}
        self.history: list[str] = []

    def lease_acquired(self, lease: Lease) -> None:
        self.started[lease.lease_key] = time.monotonic()
        self.history.append(lease.lease_key)

    def lease_lost(self, lease_key: str) -> None:
        self.started.pop(lease_key, None)

    def handoff_requested(self, lease_key: str) -> None:
        def finish() -> None:
            assert self.coordinator is not None
            held = self.coordinator.holding(lease_key)
            if held is not None:
                self.coordinator.release(held)
            self.started.pop(lease_key, None)
        threading.Timer(0.05, finish).start()

    def coordinator_failed(self, error: str) -> None:
        raise SystemExit(f"coordinator failed: {error}")

    def figures_of(self, lease_key: str) -> ShardFigures | None:
        t = self.started.get(lease_key)
        return None if t is None else ShardFigures(records=int((time.monotonic() - t) * self.rates[lease_key]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leases", type=int, default=200)
    ap.add_argument("--failover-time", type=float, default=10.0)
    ap.add_argument("--steady-seconds", type=float, default=None,
                    help="window for the cost figures (default: 30 s or two steady scan periods if longer)")
    ap.add_argument("--steady-take-interval", type=float, default=None,
                    help="the workers' steady scan period (default: the product's, failover_time)")
    ap.add_argument("--server", choices=("moto", "dynalite"), default="moto",
                    help="the local DynamoDB: moto (in this process, one operation at a time) or dynalite "
                         "(a Node.js process of its own, about a millisecond a write)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "balance.json"))
    args = ap.parse_args()
    rng = random.Random(1)
    keys = [f"shardId-{i:012}" for i in range(args.leases)]
    rates = {k: (2000.0 if rng.random() < 0.05 else 100.0) for k in keys}

    with (MotoServer() if args.server == "moto" else NodeServer("dynalite")) as moto:
        session = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1")
        table_name = "balance-bench"
        admin = LeaseTable(session.client("dynamodb", endpoint_url=moto.endpoint), table_name)
        admin.ensure_table()
        fleet: dict[str, tuple[DynamoDBCoordinator, FakeConsumers, LeaseTable]] = {}
        moving: Counter[str] = Counter()  # take cycles that took or stole, per worker
        gone: dict[str, tuple[DynamoDBCoordinator, FakeConsumers, LeaseTable]] = {}  # workers that left

        def join(name: str) -> None:
            consumers = FakeConsumers(rates)
            table = LeaseTable(session.client("dynamodb", endpoint_url=moto.endpoint), table_name)
            c = DynamoDBCoordinator(table, name, consumers, failover_time=args.failover_time,
                                    steady_take_interval=args.steady_take_interval, figures_of=consumers.figures_of)
            consumers.coordinator = c
            cycle = c.taker.cycle

            def counted() -> float:
                """A take cycle, counted as moving leases if it took or asked for one."""
                before = (c.stats.taken, c.stats.stolen)
                due = cycle()
                if (c.stats.taken, c.stats.stolen) != before:
                    moving[name] += 1
                return due

            c.taker.cycle = counted  # type: ignore[method-assign]
            if not fleet:
                c.ensure_leases([ShardInfo(k) for k in keys], InitialPosition.TRIM_HORIZON)
            fleet[name] = (c, consumers, table)
            c.start()

        def owners() -> dict[str, str | None]:
            return {le.lease_key: (None if le.checkpoint_owner else le.lease_owner)
                    for le in admin.list_leases(consistent=True)}

        def even(expected: set[str]) -> bool:
            """Even in the table (within one lease, no handoff open) and every lease running:
            held by the worker the table names."""
            o = owners()
            if any(v is None for v in o.values()):
                return False
            counts = Counter(o.values())
            if set(counts) != expected or max(counts.values()) - min(counts.values()) > 1:
                return False
            return all(set(f[0].held_keys()) == {k for k, w in o.items() if w == n} for n, f in fleet.items())

        def step(label: str, action: Any, expected: set[str], timeout: float) -> dict[str, Any]:
            before = {n: len(f[1].history) for n, f in fleet.items()}
            cycles_before = {n: f[0].stats.take_cycles for n, f in fleet.items()}
            moving_before = Counter(moving)
            calls_before = {n: dict(f[2].calls) for n, f in fleet.items()}
            prev = owners()
            t0 = time.monotonic()
            action()
            while not even(expected):
                if time.monotonic() - t0 > timeout:
                    raise SystemExit(f"{label}: not even after {timeout} s: {Counter(owners().values())}")
                time.sleep(0.05)  # polling the table for the measurement, not synchronisation
            took = time.monotonic() - t0
            after = owners()
            moved = [k for k in keys if after[k] != prev.get(k)]
            acquisitions = sum(len(f[1].history) - before.get(n, 0) for n, f in fleet.items())
            cycles = max(f[0].stats.take_cycles - cycles_before.get(n, 0) for n, f in fleet.items())
            rounds = max(moving[n] - moving_before[n] for n in fleet)
            calls: Counter[str] = Counter()  # the step's DynamoDB calls, the workers that left included
            for n, f in {**gone, **fleet}.items():
                for op, v in f[2].calls.items():
                    calls[op] += v - calls_before.get(n, {}).get(op, 0)
            counts = Counter(after.values())
            load = {w: round(sum(rates[k] for k, o in after.items() if o == w)) for w in counts}
            return {"step": label, "seconds": round(took, 2), "lease_moves": len(moved),
                    "acquisitions": acquisitions, "take_cycles": cycles, "moving_cycles": rounds, "minimum_moves": minimum_moves(prev, expected, len(keys)),
                    "calls": dict(sorted(calls.items())), "split": dict(sorted(counts.items())), "records_per_s": dict(sorted(load.items()))}

        limit = max(60.0, 3 * args.failover_time)  # a step not even by then is reported as a failure
        steps = [step("start A", lambda: join("A"), {"A"}, limit)]
        for name, expect in [("B", {"A", "B"}), ("C", {"A", "B", "C"}), ("D", {"A", "B", "C", "D"})]:
            steps.append(step(f"join {name}", lambda n=name: join(n), expect, limit))

        # steady state: count DynamoDB calls of every worker over a window
        time.sleep(2 * args.failover_time / 3)  # let renewals settle into their rhythm (a measurement window)
        calls0 = {n: dict(f[2].calls) for n, f in fleet.items()}
        window_start = time.monotonic()
        time.sleep(args.steady_seconds or max(30.0, 2 * (args.steady_take_interval or args.failover_time)))
        window = time.monotonic() - window_start
        ops: Counter[str] = Counter()
        for n, f in fleet.items():
            for op, v in f[2].calls.items():
                ops[op] += v - calls0[n].get(op, 0)
        item_bytes = statistics_item_bytes(admin)
        cost = cost_figures(ops, window, len(keys), len(fleet), item_bytes, args.failover_time)
        acquisitions_steady = sum(len(f[1].history) for f in fleet.values())

        def leave_gracefully(name: str) -> None:
            gone[name] = fleet.pop(name)
            c = gone[name][0]
            c.stop_taking()
            for key in c.held_keys():
                held = c.holding(key)
                if held is not None:
                    c.release(held)
            c.stop()

        def kill(name: str) -> None:
            gone[name] = fleet.pop(name)
            gone[name][0].stop()  # no release: its leases expire

        time.sleep(0.5)
        moves_during_steady = sum(len(f[1].history) for f in fleet.values()) - acquisitions_steady
        steps.append(step("D leaves (SIGTERM)", lambda: leave_gracefully("D"), {"A", "B", "C"}, limit))
        steps.append(step("C dies (kill -9)", lambda: kill("C"), {"A", "B"}, limit + 2 * args.failover_time))
        for c, _, _ in fleet.values():
            c.stop()

    results = {"leases": len(keys), "server": args.server, "failover_time_s": args.failover_time,
               "steady_take_interval_s": args.steady_take_interval or args.failover_time, "steps": steps,
               "steady_state": {**cost, "lease_moves": moves_during_steady, "window_s": round(window, 1)}}
    for s in steps:
        print(f"{s['step']:<20} {s['seconds']:>6.2f} s  {s['take_cycles']:>2} take cycles ({s['moving_cycles']} moving)  moves {s['lease_moves']:>3} "
              f"(minimum {s['minimum_moves']:>3})  GetItem {s['calls'].get('GetItem', 0):>3}  split {s['split']}  records/s {s['records_per_s']}")
    print("steady state, per lease per minute:")
    for k, v in cost.items():
        print(f"  {k:<40} {v}")
    print(f"  lease moves while steady: {moves_during_steady}")
    write_results(args.out, results)


def minimum_moves(prev: dict[str, str | None], expected: set[str], n: int) -> int:
    """The fewest leases that must change owner to reach an even split from ``prev``."""
    counts = Counter(v for v in prev.values() if v in expected)
    unowned = n - sum(counts.values())
    base, extra = divmod(n, len(expected))
    # the most loaded keep base+1 where they can; everything above that moves, plus the unowned
    order = sorted(expected, key=lambda w: -counts.get(w, 0))
    share = {w: base + (1 if i < extra else 0) for i, w in enumerate(order)}
    return unowned + sum(max(0, counts.get(w, 0) - share[w]) for w in expected)


def statistics_item_bytes(table: LeaseTable) -> float:
    """Mean DynamoDB item size of the leases (attribute names + values, DynamoDB's rule)."""
    items = table.client.scan(TableName=table.table_name)["Items"]
    sizes = []
    for item in items:
        size = 0
        for name, value in item.items():
            (kind, v), = value.items()
            size += len(name) + (len(v) if kind == "S" else sum(len(x) for x in v) if kind == "SS" else 1 + len(v))
        sizes.append(size)
    return sum(sizes) / len(sizes)


#: DynamoDB on-demand list prices, us-east-1, since 2024-11-01: dollars per million request units.
WRITE_PRICE, READ_PRICE = 0.625, 0.125
MINUTES_PER_MONTH = 30 * 24 * 60


def monthly_dollars(write_units: float, read_units: float, leases: int = 1000) -> float:
    """On-demand cost of a month for ``leases`` leases at these units per lease per minute."""
    return round(leases * MINUTES_PER_MONTH * (write_units * WRITE_PRICE + read_units * READ_PRICE) / 1e6, 2)


def cost_figures(ops: Counter[str], window: float, leases: int, workers: int, item_bytes: float,
                 failover: float) -> dict[str, float]:
    per_min = 60.0 / window
    writes = sum(v for op, v in ops.items() if op not in ("Scan", "GetItem"))
    scans = ops.get("Scan", 0)
    scan_units = math.ceil(leases * item_bytes / 4096) * 0.5  # eventually consistent
    kcl_scans_per_min = workers * 60.0 / (2 * (failover + 0.025))  # KCL 2.x's taker period, epsilon 25 ms
    kcl_scan_units = math.ceil(leases * item_bytes / 4096)  # KCL scans consistently
    write_units = writes * math.ceil(item_bytes / 1024) * per_min / leases
    read_units = scans * scan_units * per_min / leases
    kcl_write_units = 60.0 / (failover / 3) * math.ceil(item_bytes / 1024)
    kcl_read_units = kcl_scans_per_min * kcl_scan_units / leases
    return {
        "writes_per_lease_per_min": round(writes * per_min / leases, 2),
        "scans_per_worker_per_min": round(scans * per_min / workers, 1),
        "read_units_per_lease_per_min": round(read_units, 2),
        "write_units_per_lease_per_min": round(write_units, 2),
        "kcl_writes_per_lease_per_min": round(60.0 / (failover / 3), 2),
        "kcl_read_units_per_lease_per_min": round(kcl_read_units, 2),
        "dollars_per_month_1000_leases": monthly_dollars(write_units, read_units),
        "kcl_dollars_per_month_1000_leases": monthly_dollars(kcl_write_units, kcl_read_units),
        "mean_item_bytes": round(item_bytes),
    }


if __name__ == "__main__":
    main()
