"""max_record_age and the dead-letter guard with real `streamworker run` processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def read_stream(kinesis: Any, stream: str) -> list[tuple[str, str]]:
    out = []
    for s in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=s["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        out += [(r["Data"].decode(), r["PartitionKey"]) for r in kinesis.get_records(ShardIterator=it)["Records"]]
    return sorted(out)


def replay(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streamworker", "dead-letters", "replay", *args],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("target", ["file", "sqs"])
def test_dead_letters_replay_onto_a_stream_with_their_data_and_keys(
        target: str, monkeypatch: pytest.MonkeyPatch, aws_env: dict[str, str], names: dict[str, str],
        workers: Workers, tmp_path: Path) -> None:
    monkeypatch.setenv("POISON", "5,9")
    kinesis = boto3.client("kinesis")
    make_stream(kinesis, names["stream"], 1)
    again = names["stream"] + "-again"
    make_stream(kinesis, again, 1)
    if target == "sqs":
        sqs = boto3.client("sqs")
        sqs.create_queue(QueueName=names["app"] + "-dlq")
        spec = f"sqs:{names['app']}-dlq"
    else:
        spec = f"file:{tmp_path / 'dlq.jsonl'}"
    produce(kinesis, names["stream"], 0, 20)
    workers("A", extra=["--on-error", "bisect", "--dead-letter", spec, "--processor-retries", "0"])
    wait_for(lambda: set(workers.log.data()) == set(range(20)) - {5, 9}, 60, "the healthy records")
    if target == "file":
        wait_for(lambda: len(dead_lettered(tmp_path / "dlq.jsonl")) == 2, 30, "two dead letters")
        dry = replay(aws_env, spec, "--to", f"kinesis:{again}", "--dry-run")
        assert dry.returncode == 0 and dry.stdout.startswith("would replay 2 record(s)")
    else:
        url = sqs.get_queue_url(QueueName=names["app"] + "-dlq")["QueueUrl"]
        wait_for(lambda: sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"]["ApproximateNumberOfMessages"] == "2", 30, "two messages in the queue")
    r = replay(aws_env, spec, "--to", f"kinesis:{again}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("replayed 2 record(s)")
    assert read_stream(kinesis, again) == [("5", "key-5"), ("9", "key-9")]  # the data and keys they had
    if target == "sqs":  # acknowledged by the stream, then deleted from the queue
        assert not sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages")


def test_replay_errors_are_one_line(aws_env: dict[str, str], tmp_path: Path) -> None:
    r = replay(aws_env, str(tmp_path / "none.jsonl"), "--to", "kinesis:x")
    assert r.returncode == 1 and r.stderr == f"streamworker: error: dead-letter file {tmp_path / 'none.jsonl'} not found\n"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    r = replay(aws_env, str(bad), "--to", "kinesis:x")
    assert r.returncode == 1 and "bad.jsonl:1: not a streamworker dead-letter envelope" in r.stderr
    r = replay(aws_env, str(bad), "--to", "s3:x")
    assert r.returncode == 2 and "expected kinesis:STREAM or kafka:TOPIC" in r.stderr


def _small_disk(path: Path, size: str) -> bool:
    """Mount a tmpfs of ``size`` at ``path`` (root only); False where that is not allowed."""
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_full_disk_leaves_no_half_line_and_the_batch_is_dead_lettered_once_there_is_room(
        monkeypatch: pytest.MonkeyPatch, names: dict[str, str], workers: Workers, tmp_path: Path) -> None:
    """A real filesystem that fills up mid-append: the shard halts with its checkpoint kept, the
    file holds only whole lines (the append was cut back), and after room is made a restarted
    worker dead-letters the batch; replay reads every line."""
    disk = tmp_path / "disk"
    if not _small_disk(disk, "64k"):
        pytest.skip("needs to mount a small tmpfs (root) to fill a disk")
    try:
        filler = disk / "filler"
        with open(filler, "wb") as f:  # leave one 4 KiB page: some lines of the batch, not its ~6 KiB
            f.write(b"\0" * (60 * 1024))
        monkeypatch.setenv("FAIL_RECORDS", "1")
        kinesis = boto3.client("kinesis")
        make_stream(kinesis, names["stream"], 1)
        produce(kinesis, names["stream"], 0, 20)
        dlq = disk / "dlq.jsonl"
        flags = ["--on-error", "dead-letter", "--dead-letter", f"file:{dlq}", "--processor-retries", "0"]
        a = workers("A", extra=flags)
        wait_for(lambda: "dead-letter write failed" in a.stderr(), 60, "the write to fail on the full disk")
        assert "No space left on device" in a.stderr()
        content = dlq.read_bytes() if dlq.exists() else b""
        assert content == b"" or content.endswith(b"\n"), content[-200:]  # no half line
        a.stop()
        filler.unlink()
        b = workers("B", extra=flags)
        wait_for(lambda: len(dead_lettered(dlq)) == 20, 60, "the batch dead-lettered once there is room")
        assert dead_lettered(dlq) == list(range(20)) and b.proc.poll() is None
        r = replay(dict(os.environ), str(dlq), "--to", f"kinesis:{names['stream']}", "--dry-run")
        assert r.returncode == 0 and "would replay 20 record(s)" in r.stdout, r.stdout + r.stderr
    finally:
        for w in workers.started:
            w.stop()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
