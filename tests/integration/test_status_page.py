"""The live status page, end to end in a real browser (Debian's Chromium, headless, driven by
Playwright): two ``streamworker run`` processes on a 4-shard stream, the page on one worker's
metrics port; the other is killed with SIGKILL and the page shows the takeover. Also
``streamworker status --web``, which serves the page from the lease table alone."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from streamworker.local import free_port

from .conftest import Workers, make_stream, produce, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian package chromium; ./dev installs it)")]
#: What the machine's network and a root user need (see the machine notes): no background calls, no sandbox.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = os.environ.get("STATUS_SCREENSHOT")  # set to a path to keep the picture (the docs' one)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    playwright = pytest.importorskip("playwright.sync_api")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b.new_page(viewport={"width": 1100, "height": 760})
        b.close()


def rows(page: Any) -> dict[str, tuple[str, str]]:
    """shard -> (owner, state) as the page shows them."""
    return {r.get_attribute("data-shard"): (r.get_attribute("data-owner"), r.get_attribute("data-state"))
            for r in page.query_selector_all("#leases tbody tr")}


@pytest.fixture
def producing(names: dict[str, str], aws_env: dict[str, str]) -> Iterator[None]:
    """A 4-shard stream with ~100 records/s flowing into it while the test runs."""
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 4)
    stop = threading.Event()

    def run() -> None:
        n = 0
        while not stop.wait(0.2):
            produce(kinesis, names["stream"], n, 20)
            n += 20

    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield
    stop.set()
    t.join(10)


def test_the_page_shows_a_killed_workers_shards_taken_over(workers: Workers, names: dict[str, str], browser: Any,
                                                           producing: None) -> None:
    port_a, port_b = free_port(), free_port()
    a = workers("A", extra=["--metrics-port", str(port_a), "--metrics-host", "127.0.0.1"])
    workers("B", extra=["--metrics-port", str(port_b), "--metrics-host", "127.0.0.1"])
    page = browser
    wait_for(lambda: _page_ready(page, port_b), 30, "B's status page")
    wait_for(lambda: sorted(o for o, _ in rows(page).values()) == ["A", "A", "B", "B"], 60,
             "the page to show two shards each")
    assert page.title() == "streamworker status" and page.text_content("#app") == names["app"]
    assert page.text_content("#observer") == "B"
    workers_shown = {r.get_attribute("data-worker") for r in page.query_selector_all("#workers tbody tr")}
    assert workers_shown == {"A", "B"}
    wait_for(lambda: all(re.fullmatch(r"\d+\.\d", c.text_content().strip() or "")
                         for c in page.query_selector_all("#leases tbody tr td:nth-child(5)")), 30,
             "records/s figures for every shard")
    a.signal(signal.SIGKILL)  # (its leases show "expired" for at most a refresh: B takes them as they expire)
    wait_for(lambda: sorted(o for o, _ in rows(page).values()) == ["B", "B", "B", "B"], 60,
             "the page to show B holding all four")
    assert {r.get_attribute("data-worker") for r in page.query_selector_all("#workers tbody tr")} == {"B"}
    assert page.query_selector_all("svg.spark polyline"), "sparklines drawn from the history"
    assert page.is_hidden("#error")
    wait_for(lambda: sum(float(c.text_content() or 0) for c in page.query_selector_all(
        "#workers tbody td:nth-child(3)")) > 0, 30, "B's records/s above zero while records flow")
    if SCREENSHOT:
        page.screenshot(path=SCREENSHOT, full_page=True)


def _page_ready(page: Any, port: int) -> bool:
    try:
        page.goto(f"http://127.0.0.1:{port}/", timeout=3000)
        return True
    except Exception:
        return False


def test_status_web_serves_the_page_from_the_lease_table_alone(workers: Workers, names: dict[str, str],
                                                                 browser: Any, aws_env: dict[str, str]) -> None:
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 2)
    produce(kinesis, names["stream"], 0, 50)
    w = workers("A")
    wait_for(lambda: len(workers.log.data()) >= 50, 60, "the worker to process")
    port = free_port()
    web = subprocess.Popen([sys.executable, "-m", "streamworker", "status", "--web", "--no-open", "--application-name",
                            names["app"], "--port", str(port), "--failover-time", "3"],
                           env={**os.environ, **aws_env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert web.stdout is not None
        line = web.stdout.readline()
        assert line == f"status page for {names['app']!r}: http://127.0.0.1:{port}/  (Ctrl-C stops it)\n"
        page = browser
        page.goto(f"http://127.0.0.1:{port}/")
        wait_for(lambda: sorted(o for o, _ in rows(page).values()) == ["A", "A"], 30, "A's two leases")
        assert page.text_content("#observer") == f"lease table {names['app']}"
        w.signal(signal.SIGTERM)  # a graceful stop releases both leases
        wait_for(lambda: {s for _, s in rows(page).values()} == {"free"}, 30, "the released leases shown free")
    finally:
        web.send_signal(signal.SIGINT)
        try:  # read both pipes while waiting: an unread pipe can block the process's exit
            _, err = web.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            web.kill()
            _, err = web.communicate()
            raise AssertionError(f"status --web did not stop within 10 s of Ctrl-C; its stderr: {err[-3000:]}") from None
    assert web.returncode == 0, err[-3000:]


def test_status_web_for_an_application_with_no_table_is_one_line(names: dict[str, str], aws_env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "streamworker", "status", "--web", "--no-open", "--application-name",
                           names["app"]], env={**os.environ, **aws_env}, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (1, f"streamworker: error: lease table {names['app']!r} not found\n")


def _get(url: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def test_the_page_holds_its_tables_without_javascript_and_can_be_turned_off(workers: Workers, names: dict[str, str],
                                                                          browser: Any) -> None:
    """``curl http://host:port/`` returned an empty layout (the tables came from the script only)."""
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 2)
    port_a, port_b = free_port(), free_port()
    a = workers("A", extra=["--metrics-port", str(port_a), "--metrics-host", "127.0.0.1"])

    def a_owns_both() -> bool:
        status, html = _get(f"http://127.0.0.1:{port_a}/")
        return status == 200 and len(re.findall(r'<tr data-shard="shardId-\d+" data-owner="A"', html)) == 2

    wait_for(a_owns_both, 60, "A's two leases in the served HTML")
    scriptless = browser.context.browser.new_context(java_script_enabled=False).new_page()
    scriptless.goto(f"http://127.0.0.1:{port_a}/")
    assert sorted(rows(scriptless).values()) == [("A", "owned"), ("A", "owned")]  # Chromium, scripts off
    assert scriptless.text_content("#observer") == "A"
    wait_for(lambda: "status page at http://127.0.0.1:" in a.stderr(), 10, "the startup line naming the page")
    assert f"status page at http://127.0.0.1:{port_a}/" in a.stderr()
    b = workers("B", extra=["--metrics-port", str(port_b), "--metrics-host", "127.0.0.1", "--no-status-page"])
    wait_for(lambda: _get(f"http://127.0.0.1:{port_b}/metrics")[0] == 200, 60, "B's /metrics")
    assert _get(f"http://127.0.0.1:{port_b}/")[0] == 404 and _get(f"http://127.0.0.1:{port_b}/status.json")[0] == 404
    wait_for(lambda: "(no status page)" in b.stderr(), 10, "B's startup line")
