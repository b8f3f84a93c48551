"""The MultiLang daemon side, against small child programs (no servers)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from streamworker.checkpoint.checkpointer import CheckpointTracker
from streamworker.kcl.multilang import ChildProcessError, MultiLangProcessor
from streamworker.leases.lease import Lease
from streamworker.processor import InitializationInput, ProcessRecordsInput, ShardEndedInput
from streamworker.records import ExtendedSequenceNumber as ESN
from streamworker.records import Record

CHILD = textwrap.dedent("""
    import json, os, sys
    marker = sys.argv[1]
    def send(m):
        sys.stdout.write("\\n" + json.dumps(m) + "\\n"); sys.stdout.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        m = json.loads(line)
        a = m["action"]
        if a == "initialize":
            with open(marker, "a") as f:
                f.write("init " + str(m["sequenceNumber"]) + "\\n")
        if a == "processRecords":
            if not os.path.exists(marker + ".crashed"):
                open(marker + ".crashed", "w").close()
                sys.exit(3)                      # dies mid-batch the first time
            print("not protocol, just a print")  # must be tolerated
            send({"action": "checkpoint", "sequenceNumber": m["records"][-1]["sequenceNumber"],
                  "subSequenceNumber": 0})
            reply = json.loads(sys.stdin.readline())
            assert reply["action"] == "checkpoint" and reply.get("error") is None, reply
        if a == "shardEnded":
            send({"action": "checkpoint", "sequenceNumber": None, "subSequenceNumber": None})
            reply = json.loads(sys.stdin.readline())
            assert reply["sequenceNumber"] == "SHARD_END", reply
        send({"action": "status", "responseFor": a})
""")


class Store:
    def __init__(self) -> None:
        self.writes: list[Any] = []

    def checkpoint(self, key: Any, esn: Any, pending: Any=None) -> None:
        self.writes.append(esn)

    def prepare_checkpoint(self, key: Any, pending: Any) -> None:
        pass


def test_a_child_that_dies_is_restarted_from_the_checkpoint_and_gets_the_batch_again(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    marker = tmp_path / "marker"
    store = Store()
    tracker = CheckpointTracker(store, Lease("shard-1"), "shard-1", ESN("5"))
    cp = tracker.checkpointer
    p = MultiLangProcessor([sys.executable, str(script), str(marker)])
    p.initialize(InitializationInput("shard-1", ESN("5")))
    batch = [Record(data=b"x", partition_key="k", sequence_number=str(s)) for s in (6, 7)]
    tracker.delivered(batch[-1].extended_sequence_number)
    pri = ProcessRecordsInput(batch, cp, "shard-1")
    with pytest.raises(ChildProcessError, match="exited with status 3"):
        p.process_records(pri)
    p.process_records(pri)  # the retry the shard consumer makes
    assert store.writes == [ESN("7")]
    assert marker.read_text().splitlines() == ["init 5", "init 5"]  # re-initialized from the checkpoint
    tracker.shard_ended()
    p.shard_ended(ShardEndedInput("shard-1", cp))
    assert store.writes[-1] == ESN("SHARD_END")
