"""max_record_age and the dead-letter guard with real `streamworker run` processes."""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import pytest

from tests.integration.conftest import Workers

from .conftest import make_stream, produce, wait_for

pytestmark = pytest.mark.integration


def dead_lettered(path: Path) -> list[int]:
    if not path.exists():
        return []
    import base64

    return [int(base64.b64decode(json.loads(line)["data_base64"])) for line in path.read_text().splitlines()]


def test_records_past_max_record_age_go_to_the_dead_letter_file_unprocessed(
        names: dict[str, str], workers: Workers, tmp_path: Path) -> None:
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 1)
    produce(kinesis, names["stream"], 0, 20)
    aged = time.time() + 2.5
    wait_for(lambda: time.time() > aged, 5, "the first records to age past 2 s")
    dlq = tmp_path / "old.jsonl"
    workers("A", extra=["--max-record-age", "2", "--dead-letter", f"file:{dlq}"])
    wait_for(lambda: len(dead_lettered(dlq)) == 20, 60, "the 20 old records dead-lettered")
    produce(kinesis, names["stream"], 20, 10)
    wait_for(lambda: set(workers.log.data()) == set(range(20, 30)), 60, "the 10 fresh records processed")
    assert sorted(dead_lettered(dlq)) == list(range(20))


def test_the_dead_letter_guard_halts_a_shard_whose_every_batch_fails(
        monkeypatch: pytest.MonkeyPatch, names: dict[str, str], workers: Workers, tmp_path: Path) -> None:
    monkeypatch.setenv("FAIL_RECORDS", "1")
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 1)
    produce(kinesis, names["stream"], 0, 40)
    dlq = tmp_path / "dlq.jsonl"
    a = workers("A", extra=["--on-error", "dead-letter", "--dead-letter", f"file:{dlq}", "--processor-retries", "0",
                            "--max-records", "5", "--dead-letter-max-consecutive", "5"])
    wait_for(lambda: "dead-letter guard" in a.stderr(), 60, "the guard to halt the shard")
    assert "5 records in a row" not in a.stderr() and "10 records in a row would be dead-lettered" in a.stderr()
    assert dead_lettered(dlq) == [0, 1, 2, 3, 4]  # the first batch; the rest stays in the stream, unskipped
    assert a.proc.poll() is None  # the worker runs on, the shard halted (its lease kept)


def test_bisect_dead_letters_exactly_the_poison_records_and_processes_the_rest_once(
        monkeypatch: pytest.MonkeyPatch, names: dict[str, str], workers: Workers, tmp_path: Path) -> None:
    monkeypatch.setenv("POISON", "13,27")
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 1)
    produce(kinesis, names["stream"], 0, 60)
    dlq = tmp_path / "poison.jsonl"
    workers("A", extra=["--on-error", "bisect", "--dead-letter", f"file:{dlq}", "--processor-retries", "1"])
    wait_for(lambda: set(workers.log.data()) >= set(range(60)) - {13, 27}, 60, "every healthy record")
    wait_for(lambda: len(dead_lettered(dlq)) == 2, 30, "the two poison records dead-lettered")
    assert dead_lettered(dlq) == [13, 27]
    data = workers.log.data()
    assert sorted(data) == sorted(set(range(60)) - {13, 27}), "each healthy record once"
    assert data == sorted(data)  # in order
