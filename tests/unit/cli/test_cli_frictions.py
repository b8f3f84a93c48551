"""What a new user hit in their first hour (issue 15), each with its exact message and exit code.

Run in-process through ``cli.main``: no servers (nothing here gets as far as calling AWS or Kafka).
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from streamworker.cli import commands as cli

PROCESSOR = str(Path(__file__).resolve().parents[2] / "integration" / "recording_processor.py") + ":RecordingProcessor"
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}.items():
        monkeypatch.setenv(k, v)
    for k in [k for k in __import__("os").environ if k.startswith("STREAMWORKER_") and k != "STREAMWORKER_CACHE"]:
        monkeypatch.delenv(k)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = cli.main(list(argv))
    except SystemExit as exc:  # argparse's own exits (--version, --help)
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_bare_streamworker_helps(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys)
    assert code == 2 and out.startswith("usage: streamworker [-h] [--version] COMMAND ...")
    assert "run         run a RecordProcessor over Kinesis streams or Kafka topics" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.startswith("streamworker ")


def test_an_unknown_option_is_named_and_its_value_not_taken_for_the_processor(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "run", "--bogus-flag", "x", "my:Proc")
    assert (code, err) == (2, "streamworker: error: unknown option --bogus-flag (see streamworker run --help)\n")


def test_no_abbreviated_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "run", PROCESSOR, "--stream", "s", "--application-name", "abc", "--failover-tim", "5")
    assert (code, err) == (2, "streamworker: error: unknown option --failover-tim; did you mean --failover-time? "
                              "(see streamworker run --help)\n")


def test_the_application_name_rule_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "run", PROCESSOR, "--stream", "s", "--application-name", "wc")
    assert (code, err) == (2, "streamworker: configuration error: invalid setting application_name: must be 3 to 255 "
                              "letters, digits, '_', '-' or '.' (it names the DynamoDB lease table, and DynamoDB "
                              "allows only those) (got 'wc')\n")


def test_a_typo_in_an_environment_variable_is_an_error(capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMWORKER_FAILOVER_TIM", "5")
    code, _, err = run(capsys, "run", PROCESSOR, "--stream", "s", "--application-name", "abc")
    assert (code, err) == (2, "streamworker: configuration error: unknown environment variable "
                              "STREAMWORKER_FAILOVER_TIM (did you mean STREAMWORKER_FAILOVER_TIME?)\n")


def test_a_toml_file_with_settings_in_two_places_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "app.toml"
    f.write_text('failover_time = 5\n\n[streamworker]\nstream = "s"\napplication_name = "abc"\n')
    code, _, err = run(capsys, "run", PROCESSOR, "--config", str(f))
    assert (code, err) == (2, f"streamworker: configuration error: config file {f}: settings both at the top level "
                              f"(failover_time) and in [streamworker]; put them all in one place\n")


def test_a_typo_in_toml_suggests_the_setting(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    f = tmp_path / "app.toml"
    f.write_text('stream = "s"\napplication_name = "abc"\nfailover_tme = 5\n')
    code, _, err = run(capsys, "run", PROCESSOR, "--config", str(f))
    assert (code, err) == (2, "streamworker: configuration error: unknown setting 'failover_tme' "
                              "(did you mean 'failover_time'?)\n")


def test_demo_shards_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "demo", "--shards", "0")
    assert (code, err) == (2, "streamworker: error: argument --shards: must be at least 1, got 0 "
                              "(see streamworker demo --help)\n")


def test_a_plain_install_names_the_demo_extra(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "moto" else real(name, *a))
    code, _, err = run(capsys, "demo")
    assert (code, err) == (1, "streamworker: error: streamworker demo needs the demo extra: "
                              "pip install 'streamworker[demo]' (moto is not installed)\n")


def test_an_unknown_librdkafka_property_is_a_configuration_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "run", PROCESSOR, "--source", "kafka", "--topic", "t", "--bootstrap-servers",
                       "127.0.0.1:9", "--application-name", "abc", "-X", "no.such.prop=1")
    assert (code, err) == (2, 'streamworker: configuration error: Kafka property refused by librdkafka: '
                              'No such configuration property: "no.such.prop"\n')


def test_a_metrics_port_in_use_fails_before_starting(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, _, err = run(capsys, "run", PROCESSOR, "--stream", "s", "--application-name", "abc",
                           "--metrics-port", str(port), "--metrics-host", "127.0.0.1")
    assert (code, err) == (1, f"streamworker: error: cannot serve metrics on 127.0.0.1:{port} (metrics_port, "
                              f"--metrics-port): Address already in use\n")


class DuckTyped:
    def process_records(self, process_records_input: Any) -> None:
        pass


def not_a_class() -> None:
    pass


def test_duck_typing_is_accepted_and_the_message_says_so() -> None:
    from streamworker.coordinator.processors import load_processor
    from streamworker.errors import ConfigError
    from streamworker.processor import RecordProcessor

    cls = load_processor(f"{__file__}:DuckTyped")  # the file is loaded again, as its own module
    assert cls.__mro__[1].__name__ == "DuckTyped" and issubclass(cls, RecordProcessor)  # the base's defaults beneath
    with pytest.raises(ConfigError) as info:
        load_processor(f"{__file__}:not_a_class")
    assert str(info.value) == (f"processor '{__file__}:not_a_class': not_a_class is neither a RecordProcessor "
                               f"subclass nor a class with a process_records (or process_record) method")


def test_help_shows_defaults_and_plain_metavars(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "run", "--help")
    assert code == 0 and out.startswith("usage: streamworker run [MODULE:CLASS] [options]")
    assert "where a shard with no checkpoint starts (default LATEST)" in out
    assert "log lines at this level and above (default INFO)" in out
    assert "--processor-retries N" in out and "--stream STREAM " in out and "--topic TOPIC " in out
    assert "STREAM_LIST" not in out and "TOPICS" not in out


def test_every_setting_has_a_flag_but_the_positional_and_the_repeated_stream() -> None:
    from streamworker.cli import flags as run_flags
    from streamworker.config import WorkerConfig

    flagged = {f.setting for f in run_flags.flags()}
    assert set(WorkerConfig.model_fields) - flagged == {"processor", "streams"}


def test_dev_without_a_command_prints_its_usage() -> None:
    done = subprocess.run(["bash", str(ROOT / "dev")], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stdout.startswith("usage: ./dev COMMAND") and "#" not in done.stdout


def test_a_pipe_closed_early_ends_quietly() -> None:
    """`streamworker leases ... | head -1`: no BrokenPipeError traceback (SIGPIPE ends it as for cat)."""
    code = ("import sys; from streamworker import cli; sys.argv[0] = 'streamworker'; "
            "from unittest import mock; "
            "import streamworker.ops.report as r; "
            "r.leases_command = lambda table, as_json: [print('row', n) for n in range(100000)] and 0; "
            "sys.exit(cli.main(['leases', '--application-name', 'abc']))")
    done = subprocess.run(f"{sys.executable} -c \"{code}\" | head -1", shell=True, capture_output=True, text=True,
                          timeout=60)
    assert done.stdout == "row 0\n" and "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_a_sub_commands_help_is_its_own(capsys: pytest.CaptureFixture[str]) -> None:
    """``checkpoint set --help`` printed checkpoint's help; ``checkpoint --help`` ended its usage
    line with ``{set}`` after every option."""
    code, out, _ = run(capsys, "checkpoint", "set", "--help")
    assert code == 0 and out.startswith("usage: streamworker checkpoint set ") and "--to" in out
    code, out, _ = run(capsys, "checkpoint", "--help")
    assert code == 0 and out.startswith("usage: streamworker checkpoint [-h] ACTION ...\n") and "--to" not in out
    code, out, _ = run(capsys, "dead-letters", "replay", "--help")
    assert code == 0 and out.startswith("usage: streamworker dead-letters replay ")
    code, _, err = run(capsys, "checkpoint", "set", "--application-name", "app-1")
    assert code == 2 and err.endswith("(see streamworker checkpoint set --help)\n"), err


def test_status_prints_once_when_piped_unless_watch_or_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    monkeypatch.setattr(sys.stdout, "isatty", lambda: False)
    assert cli._refreshes(argparse.Namespace(count=None, watch=False)) == 1
    assert cli._refreshes(argparse.Namespace(count=None, watch=True)) is None
    assert cli._refreshes(argparse.Namespace(count=3, watch=False)) == 3
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert cli._refreshes(argparse.Namespace(count=None, watch=False)) is None
