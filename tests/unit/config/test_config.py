from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamworker.config import WorkerConfig
from streamworker.errors import ConfigError
from streamworker.records import InitialPosition


def test_flags_beat_environment_beat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "app.toml"
    f.write_text('[streamworker]\nstream = "from-file"\napplication-name = "file-app"\nfailover_time = 7\n'
                 'max_records = 500\n')
    monkeypatch.setenv("STREAMWORKER_FAILOVER_TIME", "8")
    monkeypatch.setenv("STREAMWORKER_APPLICATION_NAME", "env-app")
    cfg = WorkerConfig.load({"application_name": "flag-app", "stream": None}, f)
    assert cfg.application_name == "flag-app"
    assert cfg.failover_time == 8.0
    assert cfg.stream == "from-file"
    assert cfg.max_records == 500
    assert cfg.table_name == "flag-app"


def test_defaults_follow_kcl() -> None:
    cfg = WorkerConfig.load({"stream": "s", "application_name": "app"})
    assert cfg.failover_time == 10 and cfg.max_records == 10000 and cfg.idle_time_between_reads == 1.5
    assert cfg.initial_position == InitialPosition.LATEST
    assert cfg.worker_id.count(":") == 2
    assert WorkerConfig.load({"stream": "s", "application_name": "app", "lease_table": "tbl1"}).table_name == "tbl1"


@pytest.mark.parametrize("flags, message", [
    ({"stream": "s", "application_name": "app", "failover_time": 0}, "failover_time"),
    ({"stream": "s", "application_name": "app", "max_records": 20000}, "max_records"),
    ({"stream": "s", "application_name": "app", "idle_time_between_reads": 0.05}, "idle_time_between_reads"),
    ({"stream": "s", "application_name": "app", "initial_position": "AT_TIMESTAMP"}, "initial_timestamp"),
    ({"stream": "s", "application_name": "app", "initial_position": "EARLIEST"}, "initial_position"),
    ({"stream": "s"}, "application_name is required"),
])
def test_invalid_settings_name_the_setting(flags: Any, message: Any) -> None:
    with pytest.raises(ConfigError, match=message):
        WorkerConfig.load(flags)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        WorkerConfig.load({}, tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("stream = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        WorkerConfig.load({}, bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('stream = "s"\napplication_name = "app"\nfailover = 3\n')
    with pytest.raises(ConfigError, match="unknown setting 'failover'"):
        WorkerConfig.load({}, unknown)


def test_several_streams_per_stream_processors_and_a_stream_pattern(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "w.toml"
    f.write_text('application_name = "app"\nstream = "orders"\nstreams = ["payments"]\n'
                 '[processors]\npayments = "pay:Processor"\n')
    cfg = WorkerConfig.load({}, f)
    assert cfg.stream_names == ["orders", "payments"] and cfg.multi_stream
    assert cfg.processors == {"payments": "pay:Processor"}
    monkeypatch.setenv("STREAMWORKER_STREAMS", "a,b")
    assert WorkerConfig.load({"application_name": "app"}).stream_names == ["a", "b"]
    monkeypatch.delenv("STREAMWORKER_STREAMS")
    assert WorkerConfig.load({"application_name": "app", "stream_pattern": "orders-.*"}).multi_stream
    assert not WorkerConfig.load({"application_name": "app", "stream": "one"}).multi_stream
    with pytest.raises(ConfigError, match="stream_pattern"):
        WorkerConfig.load({"application_name": "app", "stream_pattern": "("})
    from streamworker.cli.parser import build_parser

    args = build_parser().parse_args(["run", "app:P", "--application-name", "app", "--stream", "s1", "--stream", "s2",
                                      "--processor-for", "s2=other:P"])
    assert args.stream_list == ["s1", "s2"] and args.processors == ["s2=other:P"]
