"""``status --web`` in the foreground stops on Ctrl-C and on SIGTERM, however it was started."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable

import pytest

SERVE = """
import sys
from streamworker.ops.web import serve_until_interrupted
sys.exit(serve_until_interrupted(lambda: {"leases": []}, "test", port=0, host="127.0.0.1",
                                 open_browser=False, out=sys.stdout))
"""


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell starts `cmd &` without job control


@pytest.mark.parametrize(("sig", "started"), [(signal.SIGINT, None), (signal.SIGINT, ignore_sigint),
                                              (signal.SIGTERM, None)],
                         ids=["ctrl-c", "ctrl-c-when-started-in-the-background", "sigterm"])
def test_the_page_serves_until_a_signal_stops_it_with_status_0(sig: signal.Signals,
                                                                   started: Callable[[], None] | None) -> None:
    web = subprocess.Popen([sys.executable, "-c", SERVE], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           preexec_fn=started)
    try:
        assert web.stdout is not None
        url = web.stdout.readline().split(": ", 1)[1].split()[0]
        with urllib.request.urlopen(url + "status.json", timeout=10) as answer:  # serving: the handler is in place
            assert json.load(answer) == {"leases": []}
        web.send_signal(sig)
        out, err = web.communicate(timeout=30)
    finally:
        if web.poll() is None:
            web.kill()
            web.communicate()
    assert (web.returncode, err) == (0, "")
