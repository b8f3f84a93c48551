"""``streamworker leases`` and ``streamworker status``: the lease table for people and scripts."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, TextIO

from streamworker.clock import Clock, SystemClock
from streamworker.errors import SourceError
from streamworker.leases.dynamodb.balancing import ExpiryTracker
from streamworker.leases.lease import Lease

if TYPE_CHECKING:  # the row helpers serve Kafka workers' status pages too, which never load the AWS SDK
    from streamworker.leases.dynamodb.table import LeaseTable


def _state(le: Lease, expired: set[str]) -> str:
    if le.is_finished:
        return "finished"
    if le.lease_owner is None:
        return "free"
    if le.lease_key in expired:
        return "expired"
    return "HALTED" if le.halted else "owned"


def lease_rows(leases: list[Lease], expired: set[str] | None = None,
               malformed: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One row per lease; ``expired``: leases whose counter stood still for a failover time on
    this observer's clock; ``malformed``: rows that cannot be read, with the problem."""
    rows = []
    for le in sorted(leases, key=lambda x: x.lease_key):
        rows.append({
            "shard": le.lease_key,
            "owner": le.lease_owner,
            "handoff_from": le.checkpoint_owner,
            "counter": le.lease_counter,
            "checkpoint": str(le.checkpoint),
            "pending": str(le.pending_checkpoint) if le.pending_checkpoint else None,
            "parents": sorted(le.parent_shard_ids),
            "state": _state(le, expired or set()),
            "halted": le.halted,
        })
    for key, problem in sorted((malformed or {}).items()):
        rows.append({"shard": key, "owner": None, "handoff_from": None, "counter": None, "checkpoint": "?",
                     "pending": None, "parents": [], "state": "MALFORMED", "halted": None, "problem": problem})
    return sorted(rows, key=lambda r: str(r["shard"]))


def shares(leases: list[Lease]) -> dict[str, int]:
    return dict(Counter(le.lease_owner or "(none)" for le in leases if not le.is_finished))


def render(rows: list[dict[str, Any]], share: dict[str, int], out: TextIO) -> None:
    headers = ["shard", "owner", "counter", "checkpoint", "parents", "state"]
    table = [[str(r["shard"]), str(r["owner"] or "-") + (f" (from {r['handoff_from']})" if r["handoff_from"] else ""),
              str(r["counter"]), r["checkpoint"] if len(r["checkpoint"]) < 24 else "…" + r["checkpoint"][-22:],
              ",".join(r["parents"]) or "-", r["state"]] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(headers)]
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + "\n")
    for row in table:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + "\n")
    out.write("\nworkers: " + (", ".join(f"{w}={n}" for w, n in sorted(share.items())) or "none") + "\n")
    for r in rows:
        if r.get("halted"):
            out.write(f"halted {r['shard']}: {r['halted']}\n")
        if r.get("problem"):
            out.write(f"malformed {r['shard']}: {r['problem']}\n")


def load(table: LeaseTable) -> list[Lease]:
    import botocore.exceptions

    from streamworker.leases.dynamodb.table import LeaseTableFatal, LeaseTableMissing, LeaseTableUnavailable

    try:
        return table.list_leases()
    except LeaseTableMissing:
        raise SourceError(f"lease table {table.table_name!r} not found") from None
    except (LeaseTableFatal, LeaseTableUnavailable) as exc:
        raise SourceError(str(exc)) from None
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise SourceError(f"lease table {table.table_name!r} not found") from None
        raise SourceError(f"lease table {table.table_name!r}: {exc}") from None
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError):
        raise SourceError(f"cannot reach DynamoDB at {table.client.meta.endpoint_url}") from None


def leases_command(table: LeaseTable, as_json: bool, out: TextIO = sys.stdout) -> int:
    leases = load(table)
    rows = lease_rows(leases, malformed=table.malformed)
    if as_json:
        json.dump({"table": table.table_name, "leases": rows, "workers": shares(leases)}, out, indent=2)
        out.write("\n")
    else:
        render(rows, shares(leases), out)
    return 0


def status_command(table: LeaseTable, interval: float, count: int | None, out: TextIO = sys.stdout, *,
                   failover_time: float = 10.0, clock: Clock | None = None) -> int:
    """The lease table refreshed every ``interval`` seconds. A lease is marked ``expired`` as the
    coordinators judge it: its counter has not moved for ``failover_time`` on this observer's
    clock (a live owner renews every failover_time / 3, so it never flips to expired)."""
    clock = clock or SystemClock()
    tracker = ExpiryTracker(failover_time)
    n = 0
    while count is None or n < count:
        leases = load(table)
        expired = tracker.observe(leases, clock.monotonic())
        if out.isatty():
            out.write("\x1b[2J\x1b[H")
        out.write(f"lease table {table.table_name!r} at {time.strftime('%H:%M:%S')} "
                  f"(expired: counter still for {failover_time:g} s)\n\n")
        render(lease_rows(leases, expired, table.malformed), shares(leases), out)
        out.flush()
        n += 1
        if count is None or n < count:
            clock.sleep(interval)
    return 0


def web_command(table: LeaseTable, application: str, *, port: int = 0, host: str = "127.0.0.1",
                failover_time: float = 10.0, open_browser: bool = True, out: TextIO = sys.stdout) -> int:
    """The live status page for ``application`` from its lease table alone, until Ctrl-C."""
    from streamworker.ops.fleet import FleetView
    from streamworker.ops.web import serve_until_interrupted

    load(table)  # a missing table or a refused read is one line and exit 1, before serving anything
    fleet = FleetView(application, leases=lambda: load(table), malformed=lambda: table.malformed,
                      failover_time=failover_time, observer=f"lease table {table.table_name}")
    return serve_until_interrupted(fleet.document, repr(application), port=port, host=host,
                                   open_browser=open_browser, out=out)
