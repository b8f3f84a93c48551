"""FreezeDetector in a process that really stands still (SIGSTOP, then SIGCONT)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

CHILD = """
import sys, time
from streamworker.leases.freeze import FreezeDetector
d = FreezeDetector(threshold=0.5, settle=1.0).start()
print("ready", flush=True)
sys.stdin.readline()                    # the parent stops and continues us meanwhile
print("after", d.freezes, d.unsettled(), flush=True)
d.wait_until_settled(5)
print("settled", d.unsettled(), flush=True)
"""


def test_a_stopped_process_is_unsettled_after_it_continues_and_settles_later() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    assert child.stdout is not None and child.stdin is not None
    try:
        assert child.stdout.readline().strip() == "ready"
        child.send_signal(signal.SIGSTOP)
        time.sleep(1.2)  # the freeze itself: a duration under test, not a synchronisation
        child.send_signal(signal.SIGCONT)
        time.sleep(0.4)  # let the ticking thread run once after waking
        child.stdin.write("go\n")
        child.stdin.close()
        lines = [ln.split() for ln in child.stdout if ln.startswith(("after", "settled"))]
        assert lines == [["after", "1", "True"], ["settled", "False"]]
    finally:
        child.kill()
