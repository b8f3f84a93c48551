"""`streamworker run` tunes the garbage collector of its own process, and only when asked."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from streamworker.cli.commands import tune_gc


@pytest.fixture
def gc_state() -> Any:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_threshold_set_and_what_is_loaded_frozen(gc_state: Any) -> None:
    _, second, third = gc.get_threshold()
    tune_gc(50_000)
    assert gc.get_threshold() == (50_000, second, third)
    assert gc.get_freeze_count() > 0


def test_unset_leaves_the_interpreter_alone(gc_state: Any) -> None:
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    tune_gc(None)
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen


def test_config_default_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from streamworker import WorkerConfig

    assert WorkerConfig.load({"application_name": "app", "stream": "s"}).gc_threshold == 50_000
    monkeypatch.setenv("STREAMWORKER_GC_THRESHOLD", "2000")
    assert WorkerConfig.load({"application_name": "app", "stream": "s"}).gc_threshold == 2000
    monkeypatch.setenv("STREAMWORKER_GC_THRESHOLD", "off")
    assert WorkerConfig.load({"application_name": "app", "stream": "s"}).gc_threshold is None
