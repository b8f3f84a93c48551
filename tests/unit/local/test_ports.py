"""A local server is ready only when it is the one listening on its port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from streamworker.local.servers import PortTaken, _owns_port, _wait_port


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads Linux's /proc")
def test_a_port_another_process_listens_on_is_not_taken_for_the_servers() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert _owns_port(os.getpid(), port) is True
        server = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        try:
            assert _owns_port(server.pid, port) is False
            stopped: list[bool] = []
            with pytest.raises(PortTaken, match=f"port {port} was taken by another process"):
                _wait_port(server, port, "a server", lambda: stopped.append(True), timeout=5)
            assert stopped  # the server that could not have the port is stopped
        finally:
            server.kill()
            server.wait(5)
