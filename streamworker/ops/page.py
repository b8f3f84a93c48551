"""The status page as served: ``status.html`` with its tables already filled from the status
document, so ``curl``, a text browser or a page with scripts off shows the fleet; the page's
script then refreshes the same tables from ``status.json`` every 2 s (and adds sparklines)."""

from __future__ import annotations

import time
from html import escape
from importlib import resources
from typing import Any


def _template() -> str:
    return resources.files("streamworker.ops").joinpath("status.html").read_text("utf-8")


def _behind(lease: dict[str, Any]) -> str:
    if lease.get("millis_behind_latest") is not None:
        return f"{lease['millis_behind_latest']} ms"
    if lease.get("lag") is not None:
        return f"{lease['lag']} records"
    return "–"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _workers(doc: dict[str, Any]) -> str:
    rows = []
    for w in doc.get("workers", []):
        state = "expired" if w.get("expired") else "live"
        rows.append(f'<tr data-worker="{escape(w["worker"])}"><td class="mono">{escape(w["worker"])}</td>'
                    f'<td class="num">{w["leases"]}</td><td class="num">{_rate(w["records_per_second"])}</td>'
                    f'<td><span class="state {"expired" if state == "expired" else "owned"}">{state}</span></td></tr>')
    return "".join(rows)


def _leases(doc: dict[str, Any]) -> str:
    rows = []
    for lease in doc.get("leases", []):
        state = "handoff" if lease.get("handoff_from") else lease["state"]
        owner = (lease.get("owner") or "–") + (f" (from {lease['handoff_from']})" if lease.get("handoff_from") else "")
        checkpoint = lease.get("checkpoint", "")
        short = "…" + checkpoint[-22:] if len(checkpoint) > 24 else checkpoint
        halted = f'<div class="halted">{escape(lease["halted"])}</div>' if lease.get("halted") else ""
        rows.append(
            f'<tr data-shard="{escape(lease["shard"])}" data-owner="{escape(lease.get("owner") or "")}" '
            f'data-state="{escape(lease["state"])}"><td class="mono">{escape(lease["shard"])}</td>'
            f'<td class="mono">{escape(owner)}</td><td><span class="state {escape(state)}">{escape(state)}</span>'
            f'{halted}</td><td class="mono" title="{escape(checkpoint)}">{escape(short)}</td>'
            f'<td class="num">{_rate(lease.get("records_per_second"))}</td><td class="num">{escape(_behind(lease))}</td>'
            "</tr>")
    return "".join(rows)


def render(doc: dict[str, Any]) -> bytes:
    """The page with ``doc`` (a status document: ops/fleet.py, group_report.py) in its tables."""
    labels = doc.get("labels") or {"leases": "leases", "checkpoint": "checkpoint"}
    error = doc.get("error")
    fills = {
        "{{application}}": escape(str(doc.get("application", ""))),
        "{{observer}}": escape(str(doc.get("observer", ""))),
        "{{updated}}": time.strftime("%H:%M:%S", time.localtime(doc["time"])) if doc.get("time") else "never",
        "{{legend}}": escape(doc.get("legend") or f"expired = counter still for {doc.get('failover_time')} s"),
        "{{error_hidden}}": "" if error else " hidden",
        "{{error}}": escape(error or ""),
        "{{label_leases}}": escape(labels["leases"]),
        "{{label_lease_table}}": escape(labels["leases"][:1].upper() + labels["leases"][1:]),
        "{{label_checkpoint}}": escape(labels["checkpoint"]),
        "{{workers}}": _workers(doc),
        "{{leases}}": _leases(doc),
    }
    html = _template()
    for marker, value in fills.items():
        html = html.replace(marker, value)
    return html.encode("utf-8")


def render_or_empty(document: Any) -> bytes:
    """``render(document())``; the empty page (the script fills it) if the document cannot be made."""
    try:
        return render(document())
    except Exception as exc:  # noqa: BLE001 - the page still loads and says why
        return render({"error": f"cannot read the status now: {exc}", "workers": [], "leases": []})
