"""Every Kafka client streamworker makes comes from ``kafka/factory.py``, so each has the
project's librdkafka logger: no raw ``%N|…`` lines between the JSON log lines."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import streamworker

CLIENTS = {"Consumer", "Producer", "AdminClient", "DeserializingConsumer", "SerializingProducer"}


def test_no_module_but_the_factory_constructs_a_kafka_client() -> None:
    root = Path(streamworker.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).as_posix() == "kafka/factory.py":
            continue
        tree = ast.parse(path.read_text())
        imported = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and (node.module or "").startswith("confluent_kafka") for alias in node.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else \
                    node.func.attr if isinstance(node.func, ast.Attribute) else ""
                if name in CLIENTS & imported or (isinstance(node.func, ast.Attribute) and name in CLIENTS
                                                  and "confluent_kafka" in ast.unparse(node.func)):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []


def test_the_dead_letter_producer_logs_through_streamworker_not_raw_to_stderr() -> None:
    """The sink's producer with an unreachable broker and a consumer-only property (librdkafka
    warns about both): its lines arrive as JSON log lines, none as ``%N|…``."""
    pytest.importorskip("confluent_kafka")
    code = textwrap.dedent("""
        from streamworker.dead_letter.sinks import KafkaSink
        from streamworker.ops.log import configure_logging
        from streamworker.records import Record
        configure_logging("DEBUG", "json")
        sink = KafkaSink({"bootstrap.servers": "127.0.0.1:1", "ssl.endpoint.identification.algorithm": "none",
                          "security.protocol": "plaintext"}, "dlq", "s")
        sink.producer.produce("dlq", b"x")
        sink.producer.flush(1.5)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    raw = [ln for ln in result.stderr.splitlines() if ln.startswith("%")]
    assert raw == [], raw[:3]
    assert '"librdkafka"' in result.stderr  # the lines were not dropped, only kept in their place
