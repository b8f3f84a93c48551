"""``streamworker leases`` and ``streamworker status``: the lease table for people and scripts."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from typing import Any, TextIO

import botocore.exceptions

from .coordinators.lease import Lease
from .coordinators.lease_table import LeaseTable
from .errors import SourceError


def lease_rows(leases: list[Lease], stale: set[str] | None = None) -> list[dict[str, Any]]:
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
            "state": "finished" if le.is_finished else ("expired?" if stale and le.lease_key in stale
                                                         else ("free" if le.lease_owner is None else "owned")),
        })
    return rows


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


def load(table: LeaseTable) -> list[Lease]:
    try:
        return table.list_leases()
    except botocore.exceptions.ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise SourceError(f"lease table {table.table_name!r} not found") from None
        raise SourceError(f"lease table {table.table_name!r}: {exc}") from None
    except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError):
        raise SourceError(f"cannot reach DynamoDB at {table.client.meta.endpoint_url}") from None


def leases_command(table: LeaseTable, as_json: bool, out: TextIO = sys.stdout) -> int:
    leases = load(table)
    if as_json:
        json.dump({"table": table.table_name, "leases": lease_rows(leases), "workers": shares(leases)}, out, indent=2)
        out.write("\n")
    else:
        render(lease_rows(leases), shares(leases), out)
    return 0


def status_command(table: LeaseTable, interval: float, count: int | None, out: TextIO = sys.stdout) -> int:
    """The lease table refreshed every ``interval`` seconds; a lease whose counter has not moved
    since the previous refresh is marked ``expired?`` (its owner may be gone)."""
    previous: dict[str, int] = {}
    n = 0
    while count is None or n < count:
        leases = load(table)
        stale = {le.lease_key for le in leases if le.lease_owner and previous.get(le.lease_key) == le.lease_counter}
        previous = {le.lease_key: le.lease_counter for le in leases}
        if out.isatty():
            out.write("\x1b[2J\x1b[H")
        out.write(f"lease table {table.table_name!r} at {time.strftime('%H:%M:%S')}\n\n")
        render(lease_rows(leases, stale if n else None), shares(leases), out)
        out.flush()
        n += 1
        if count is None or n < count:
            time.sleep(interval)
    return 0
