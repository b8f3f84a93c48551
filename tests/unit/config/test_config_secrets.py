"""Credentials never echoed in configuration errors; secrets expressible without the command line
(issue 11, defect 9)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamworker.cli.commands import main
from streamworker.config import WorkerConfig, redact

KAFKA = ["run", "m:P", "--source", "kafka", "--topic", "t", "--application-name", "app"]


def test_a_bad_property_next_to_a_password_does_not_print_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*KAFKA, "--bootstrap-servers", "b:1", "-X", "sasl.password=HUNTER2", "-X", "sasl.username"]) == 2
    err = capsys.readouterr().err
    assert "HUNTER2" not in err
    assert err.startswith("streamworker: configuration error: invalid setting kafka_properties: expected key=value, "
                          "got 'sasl.username'")


def test_a_malformed_environment_variable_is_not_echoed(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMWORKER_KAFKA_PROPERTIES", "bootstrap.servers=b:1,sasl.password=HUN,TER2")
    assert main(KAFKA) == 2
    err = capsys.readouterr().err
    assert "HUN" not in err and "TER2" not in err
    assert "item 3 has no '='" in err and "use -X, a TOML table or a JSON object" in err


def test_a_password_with_a_comma_from_a_file_a_flag_a_json_variable_or_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "password"
    secret.write_text("p,ss=word\n")
    base = {"source": "kafka", "topics": ["t"], "bootstrap_servers": "b:1", "application_name": "app"}
    cfg = WorkerConfig.load({**base, "kafka_properties": [f"sasl.password=@{secret}"]})
    assert cfg.kafka_properties["sasl.password"] == "p,ss=word"
    assert WorkerConfig.load({**base, "kafka_properties": ["sasl.password=p,ss"]}).kafka_properties == {
        "sasl.password": "p,ss"}
    monkeypatch.setenv("STREAMWORKER_KAFKA_PROPERTIES", json.dumps({"sasl.password": "a,b", "sasl.username": "u"}))
    assert WorkerConfig.load(base).kafka_properties == {"sasl.password": "a,b", "sasl.username": "u"}
    monkeypatch.delenv("STREAMWORKER_KAFKA_PROPERTIES")
    toml = tmp_path / "app.toml"
    toml.write_text('[streamworker.kafka_properties]\n"sasl.password" = "x,y"\n')
    assert WorkerConfig.load(base, toml).kafka_properties == {"sasl.password": "x,y"}


def test_an_unreadable_secret_file_names_the_property_not_a_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    assert main([*KAFKA, "--bootstrap-servers", "b:1", "-X", f"sasl.password=@{missing}"]) == 2
    err = capsys.readouterr().err
    assert f"Kafka property sasl.password: cannot read {missing}: No such file or directory" in err


@pytest.mark.parametrize("value, shown", [
    (["sasl.password=x", "a=b"], ["<1 KEY=VALUE pair(s) with keys sasl.password; values not shown>", "a=b"]),
    ({"ssl.key.password": "x", "a": "b"}, {"ssl.key.password": "***", "a": "b"}),
    ("a=1,sasl.oauthbearer.config=principal=x", "<3 KEY=VALUE pair(s) with keys a, sasl.oauthbearer.config, principal; "
                                               "values not shown>"),
    ("plain", "plain"),
])
def test_redact(value: Any, shown: Any) -> None:
    assert redact(value) == shown
