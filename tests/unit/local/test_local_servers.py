"""Local servers are tied to the process that started them (setpriv --pdeathsig), but only from
the main thread: the kernel signals when the starting *thread* ends."""

from __future__ import annotations

import shutil
import threading

import pytest

from streamworker.local.servers import dies_with_this_process


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs util-linux's setpriv")
def test_a_server_started_on_the_main_thread_gets_a_parent_death_signal() -> None:
    cmd = dies_with_this_process(["java", "-version"], "TERM")
    assert cmd[1:] == ["--pdeathsig=TERM", "--", "java", "-version"] and cmd[0].endswith("setpriv")


def test_a_server_started_on_another_thread_is_left_to_stop() -> None:
    seen: list[list[str]] = []
    t = threading.Thread(target=lambda: seen.append(dies_with_this_process(["node", "main.js"])))
    t.start()
    t.join()
    assert seen == [["node", "main.js"]]
