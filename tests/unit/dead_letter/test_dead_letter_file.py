"""The dead-letter file: an append is all or nothing (a full disk leaves no half line), a line
torn by a crash is cut off before the next append, and replay reports it instead of stopping.
Tombstones and Kafka keys survive the envelope."""

from __future__ import annotations

import base64
import errno
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from streamworker.dead_letter.replay import FileItems, replay
from streamworker.dead_letter.sinks import JsonlSink, envelope
from streamworker.records import Record


def rec(n: int, data: bytes | None = None, **kw: Any) -> Record:
    return Record(data if data is not None else b"x" * 40, f"k{n}", str(n), **kw)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text().splitlines()]


def test_a_write_cut_short_by_a_full_disk_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel writes what fits, then refuses with ENOSPC: the half line is cut back off."""
    path = tmp_path / "dl.jsonl"
    sink = JsonlSink(str(path), "s")
    sink.write([rec(1)], "shard-1", ValueError("bad"))
    before = path.read_bytes()
    real = os.write
    calls = {"n": 0}

    def full_disk(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real(fd, bytes(data[:len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space"):
        sink.write([rec(2), rec(3)], "shard-1", ValueError("bad"))
    assert path.read_bytes() == before
    monkeypatch.setattr(os, "write", real)
    sink.write([rec(4)], "shard-1", ValueError("bad"))
    assert [e["sequence_number"] for e in lines(path)] == ["1", "4"]


def test_a_line_torn_by_a_crash_is_cut_off_before_the_next_append(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    sink = JsonlSink(str(path), "s")
    sink.write([rec(1)], "shard-1", ValueError("bad"))
    with open(path, "ab") as f:
        f.write(b'{"stream": "s", "shard_id": "shard-1", "sequence_n')  # kill -9 mid-append
    sink.write([rec(2)], "shard-1", ValueError("bad"))
    assert [e["sequence_number"] for e in lines(path)] == ["1", "2"]


def test_replay_reports_a_torn_last_line_and_replays_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    JsonlSink(str(path), "s").write([rec(1), rec(2)], "shard-1", ValueError("bad"))
    with open(path, "ab") as f:
        f.write(b'{"stream": "s", "shard_id": "sh')
    put: list[Any] = []

    class Kinesis:
        def put_records(self, StreamName: str, Records: list[Any]) -> dict[str, Any]:  # noqa: N803
            put.extend(Records)
            return {"FailedRecordCount": 0, "Records": [{} for _ in Records]}

    out, err = io.StringIO(), io.StringIO()
    rc = replay(str(path), "kinesis:target", kafka_conf={}, dry_run=False, out=out,
                make_client=lambda service: Kinesis(), err=err)
    assert rc == 0
    assert [r["PartitionKey"] for r in put] == ["k1", "k2"]
    assert "replayed 2 record(s)" in out.getvalue()
    assert "skipped line 3" in err.getvalue() and "cut short" in err.getvalue()


def test_replay_skips_and_reports_a_line_that_is_not_an_envelope_with_exit_1(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    sink = JsonlSink(str(path), "s")
    sink.write([rec(1)], "shard-1", ValueError("bad"))
    with open(path, "ab") as f:
        f.write(b'{"stream": "s", "da{"glued": 1}\n')  # what an older build left after a full disk
    sink.write([rec(2)], "shard-1", ValueError("bad"))
    items = FileItems(str(path))
    assert [i.partition_key for i in items] == ["k1", "k2"]
    assert len(items.bad) == 1 and ":2:" in items.bad[0]
    out, err = io.StringIO(), io.StringIO()
    assert replay(str(path), "kinesis:t", kafka_conf={}, dry_run=True, out=out, make_client=None, err=err) == 1
    assert "would replay 2 record(s)" in out.getvalue() and "not a streamworker dead-letter envelope" in err.getvalue()


def test_a_tombstone_and_a_binary_kafka_key_survive_the_envelope(tmp_path: Path) -> None:
    tomb = Record(b"", "k", "7", key=b"\xff\x00", topic="t", partition=0, tombstone=True)
    empty = Record(b"", "", "8", key=None, topic="t", partition=0)
    env = envelope(tomb, "t:0", ValueError("x"), "t")
    assert env["data_base64"] is None and base64.b64decode(env["key_base64"]) == b"\xff\x00"
    path = tmp_path / "dl.jsonl"
    JsonlSink(str(path), "t").write([tomb, empty], "t:0", ValueError("x"))
    a, b = list(FileItems(str(path)))
    assert (a.data, a.key) == (None, b"\xff\x00")
    assert (b.data, b.key) == (b"", None)
