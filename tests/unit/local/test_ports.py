"""A local server is ready only when it is the one listening on its port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

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


@pytest.mark.parametrize("server", ["tansu", "apache-kafka"])
def test_a_broker_whose_chosen_port_was_taken_starts_on_another(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamworker.local.apache_kafka import ApacheKafka
    from streamworker.local.servers import KafkaBroker

    cls: Any = KafkaBroker if server == "tansu" else ApacheKafka
    tried: list[int] = []

    def start_once(self: Any, *args: Any) -> None:
        tried.append(self.port)
        if len(tried) == 1:
            raise PortTaken("taken")

    monkeypatch.setattr(cls, "_start", start_once)
    broker = cls()
    assert broker.start() is broker
    assert len(tried) == 2 and tried[0] != tried[1] and broker.bootstrap == f"127.0.0.1:{tried[1]}"
    tried.clear()  # started once: a restart keeps its port, and says so if it cannot have it
    with pytest.raises(PortTaken):
        broker.start()
    assert len(tried) == 1
    given = cls(port=tried[0])  # a port given is the port
    tried.clear()
    with pytest.raises(PortTaken):
        given.start()


def test_kinesis_mock_moves_to_new_ports_and_gives_up_after_three(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamworker.local.servers import KinesisMock

    tried: list[tuple[int, int]] = []

    def taken(self: Any) -> None:
        tried.append((self.port, self.tls_port))
        if len(tried) < 3:
            raise PortTaken("taken")

    monkeypatch.setattr(KinesisMock, "_start", taken)
    km = KinesisMock()
    assert km.start() is km
    assert len(set(tried)) == 3 and km.endpoint == f"http://127.0.0.1:{tried[-1][0]}"
    tried.clear()

    def always_taken(self: Any) -> None:
        tried.append((self.port, self.tls_port))
        raise PortTaken("taken")

    monkeypatch.setattr(KinesisMock, "_start", always_taken)
    with pytest.raises(PortTaken):
        KinesisMock().start()
    assert len(tried) == 3
