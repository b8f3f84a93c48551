"""The status page as served: its tables are in the HTML, for clients without JavaScript."""

from __future__ import annotations

import re
from typing import Any

from streamworker.ops import page

DOC: dict[str, Any] = {
    "application": "orders", "observer": "worker-1", "time": 1_800_000_000.0, "failover_time": 10.0,
    "workers": [{"worker": "worker-1", "leases": 1, "records_per_second": 12.34, "expired": False},
                {"worker": "<b>w2</b>", "leases": 1, "records_per_second": 0.0, "expired": True}],
    "leases": [
        {"shard": "shardId-000000000000", "owner": "worker-1", "state": "owned", "checkpoint": "4959" + "0" * 50,
         "records_per_second": 12.34, "millis_behind_latest": 250, "lag": None, "handoff_from": None, "halted": None},
        {"shard": "shardId-000000000001", "owner": "<b>w2</b>", "state": "HALTED", "checkpoint": "TRIM_HORIZON",
         "records_per_second": None, "millis_behind_latest": None, "lag": 7, "handoff_from": None,
         "halted": "poison <record>"},
    ],
}


def text(html: str) -> str:
    """What a text browser shows: tags gone, entities decoded."""
    import html as entities

    return entities.unescape(re.sub(r"\s+", " ", re.sub(r"<script.*?</script>|<style.*?</style>|<[^>]+>", " ", html,
                                                        flags=re.S)))


def test_the_tables_are_in_the_html() -> None:
    html = page.render(DOC).decode()
    shown = text(html)
    assert "streamworker · orders" in shown and "seen by worker-1" in shown
    assert "expired = counter still for 10.0 s" in shown
    assert "shardId-000000000000 worker-1 owned …" + "0" * 22 + " 12.3 250 ms" in shown
    assert "shardId-000000000001 <b>w2</b> HALTED poison <record> TRIM_HORIZON – 7 records" in shown
    assert "worker-1 1 12.3 live" in shown and "<b>w2</b> 1 0.0 expired" in shown
    assert "<b>w2</b>" not in html.split("<script>")[0]  # escaped, never markup
    assert "{{" not in html
    assert 'id="error" class="error" hidden' in html


def test_an_error_is_shown_and_a_failing_document_still_gives_a_page() -> None:
    html = page.render({**DOC, "error": "lease table unreachable"}).decode()
    assert '<div id="error" class="error">lease table unreachable</div>' in html

    def broken() -> dict[str, Any]:
        raise RuntimeError("no table")

    html = page.render_or_empty(broken).decode()
    assert "cannot read the status now: no table" in text(html) and "{{" not in html
