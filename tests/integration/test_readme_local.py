"""The README's "Running your own processor locally", literally: its processor, ``streamworker local
aws``, the lines it prints pasted into a shell with no other ``AWS_*`` variable, a stream created
with boto3 and ``streamworker run`` with the README's flags. And what a user without a region
gets: one line and exit 2."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from streamworker.local import free_port

from .conftest import wait_for

pytestmark = pytest.mark.integration
README = Path(__file__).resolve().parents[2] / "README.md"


def readme_processor() -> str:
    """The README's processor, from its ``# my_app.py`` code block."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (code,) = [str(b) for b in blocks if b.startswith("# my_app.py")]
    return code


def readme_run_command() -> list[str]:
    """The README's `streamworker run ... --metrics-port 9100` line of the local section."""
    text = README.read_text()
    section = text[text.index("## Running your own processor locally"):]
    match = re.search(r"`(streamworker run my_app:Totals --stream my-stream[^`]*)`", section.replace("\n", " "))
    assert match, "the README's local section names no streamworker run command"
    return shlex.split(match.group(1))


def clean_env() -> dict[str, str]:
    """What a new shell has: no AWS_* (nor STREAMWORKER_*) variable at all."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "STREAMWORKER_"))}


def pasted(exports: str, env: dict[str, str]) -> dict[str, str]:
    """The `export A=x B=y` lines, applied as a shell would."""
    out = dict(env)
    for line in exports.splitlines():
        line = line.strip()
        if line.startswith("export "):
            for word in shlex.split(line[len("export "):]):
                key, _, value = word.partition("=")
                out[key] = value
    return out


def ready_lines(local: subprocess.Popen[str]) -> str:
    """What ``streamworker local`` printed up to its "Ctrl-C stops" line (it is ready then)."""
    assert local.stdout is not None
    printed = ""
    while "Ctrl-C stops" not in printed:
        line = local.stdout.readline()
        assert line, f"streamworker local exited: {printed}"
        printed += line
    return printed


def test_the_readme_local_section_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "my_app.py").write_text(readme_processor())
    local = subprocess.Popen([sys.executable, "-m", "streamworker", "local", "aws"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True, env=clean_env(), cwd=tmp_path)
    worker = None
    try:
        printed = ready_lines(local)
        env = pasted(printed, clean_env())
        assert env["AWS_REGION"] == env["AWS_DEFAULT_REGION"] == "us-east-1", printed
        def boto3_does(code: str) -> None:
            done = subprocess.run([sys.executable, "-c", "import boto3, json\nk = boto3.client('kinesis')\n" + code],
                                  env=env, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr

        boto3_does("k.create_stream(StreamName='my-stream', ShardCount=2)\n"
                   "k.get_waiter('stream_exists').wait(StreamName='my-stream', WaiterConfig={'Delay': 0.2})\n")
        command = readme_run_command()
        port = free_port()
        command[command.index("--metrics-port") + 1] = str(port)  # the README's 9100 may be taken here
        worker = subprocess.Popen([sys.executable, "-m", *command], env=env, cwd=tmp_path,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

        def ready() -> bool:
            try:
                body: bytes = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).read()
                return body == b"ok, 2 shards\n"
            except OSError:
                return False

        wait_for(ready, 60, "the worker holding both shards")  # it starts at LATEST: records come after
        boto3_does("k.put_records(StreamName='my-stream', Records=[{'Data': json.dumps({'value': i}).encode(), "
                   "'PartitionKey': str(i)} for i in range(40)])\n")

        def processed() -> float:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                return 0.0
            return sum(float(ln.rsplit(" ", 1)[1]) for ln in body.splitlines()
                       if ln.startswith("streamworker_records_processed_total{"))

        wait_for(lambda: processed() == 40, 60, "the README's processor to process 40 records")
        doc = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/status.json", timeout=5).read())
        assert len(doc["leases"]) == 2
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        local.send_signal(signal.SIGINT)
        local.wait(30)


def test_no_region_anywhere_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A region only in AWS_REGION is read (botocore alone ignores it); none at all is one line."""
    (tmp_path / "my_app.py").write_text(readme_processor())
    env = {**clean_env(), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "streamworker", "run", "my_app:Totals", "--stream", "my-stream",
                        "--application-name", "my-app"], env=env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    assert (r.returncode, r.stderr) == (2, "streamworker: configuration error: no AWS region: pass --region, or set "
                                           "AWS_REGION (or AWS_DEFAULT_REGION), or a region in your AWS profile\n")
    assert time.monotonic() - started < 30
    r = subprocess.run([sys.executable, "-m", "streamworker", "leases", "--application-name", "my-app"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "no AWS region: pass --region" in r.stderr
    # with AWS_REGION alone (or --region) the region is found: the worker gets as far as the endpoint
    for extra_env, flags in (({"AWS_REGION": "eu-west-1"}, []), ({}, ["--region", "eu-west-1"])):
        r = subprocess.run([sys.executable, "-m", "streamworker", "run", "my_app:Totals", "--stream", "my-stream",
                            "--application-name", "my-app", *flags], env={**env, **extra_env}, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "region" not in r.stderr and "127.0.0.1:9" in r.stderr, r.stderr


def test_a_region_the_local_server_lacks_is_one_line_on_each_side(tmp_path: Path) -> None:
    """A typo'd region against ``streamworker local aws``: the user saw six lines ending in moto's
    HTML 500 page, and the server's terminal a 55-line traceback per retry."""
    (tmp_path / "my_app.py").write_text(readme_processor())
    local = subprocess.Popen([sys.executable, "-m", "streamworker", "local", "aws"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=tmp_path)
    try:
        printed = ready_lines(local)
        env = {**pasted(printed, clean_env()), "AWS_REGION": "us-east-9", "AWS_DEFAULT_REGION": "us-east-9"}
        done = subprocess.run([sys.executable, "-m", "streamworker", "run", "my_app:Totals", "--stream", "s1",
                               "--application-name", "typo-app"], env=env, capture_output=True, text=True,
                              timeout=60, cwd=tmp_path)
        lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert "has no region 'us-east-9' for kinesis" in lines[0] and "<html" not in lines[0]
    finally:
        local.send_signal(signal.SIGINT)
        out, err = local.communicate(timeout=30)
    assert "Traceback" not in out + err and "Error on request" not in out + err, (out + err)[-3000:]
