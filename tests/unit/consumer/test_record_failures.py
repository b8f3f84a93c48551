"""Per-record failure reports through the real lifecycle (the harness): checkpoint up to the first
failure, redeliver from there, the error policy for what keeps failing."""

from __future__ import annotations

import pytest

from streamworker import ProcessRecordsInput, Record, RecordFailures, RecordProcessor
from streamworker.testing import ShardHarness


class FailsOn(RecordProcessor):
    """Reports the records whose payload is in ``bad`` (for that many deliveries each), raising or returning."""

    def __init__(self, bad: dict[bytes, int], returns: bool = False, by_number: bool = False) -> None:
        self.bad, self.returns, self.by_number = bad, returns, by_number
        self.deliveries: list[list[bytes]] = []
        self.failed: dict[bytes, int] = {}

    def process_records(  # type: ignore[override]  # returning the report is deprecated, still honoured
            self, process_records_input: ProcessRecordsInput) -> RecordFailures | None:
        records = process_records_input.records
        self.deliveries.append([r.data for r in records])
        failing: list[Record | str] = []
        for r in records:
            if self.failed.get(r.data, 0) < self.bad.get(r.data, 0):
                self.failed[r.data] = self.failed.get(r.data, 0) + 1
                failing.append(r.sequence_number if self.by_number else r)
        if not failing:
            process_records_input.checkpointer.checkpoint()
            return None
        report = RecordFailures(failing, cause=ValueError("bad payload"))
        if self.returns:
            return report
        raise report


@pytest.mark.parametrize("returns", [False, True], ids=["raised", "returned"])
def test_checkpoint_up_to_the_first_failure_and_redeliver_from_it(returns: bool) -> None:
    p = FailsOn({b"c": 1, b"e": 2}, returns=returns)
    h = ShardHarness(p)
    h.initialize()
    if returns:  # still honoured, and told
        with pytest.warns(FutureWarning, match="FailsOn.process_records returned RecordFailures; raise it instead"):
            h.deliver([b"a", b"b", b"c", b"d", b"e"])
    else:
        h.deliver([b"a", b"b", b"c", b"d", b"e"])
    assert p.deliveries == [[b"a", b"b", b"c", b"d", b"e"], [b"c", b"d", b"e"], [b"e"]]
    assert h.checkpoints == ["2", "4", "5"]  # before c; before e; then everything


def test_sequence_numbers_name_records_too() -> None:
    p = FailsOn({b"b": 1}, by_number=True)
    h = ShardHarness(p)
    h.initialize()
    h.deliver([b"a", b"b", b"c"])
    assert p.deliveries == [[b"a", b"b", b"c"], [b"b", b"c"]] and h.checkpoints == ["1", "3"]


def test_a_record_that_keeps_failing_halts_the_shard_with_what_came_before_it_checkpointed() -> None:
    p = FailsOn({b"poison": 100})
    h = ShardHarness(p, processor_retries=2)
    h.initialize()
    with pytest.raises(RecordFailures):
        h.deliver([b"a", b"b", b"poison", b"c"])
    assert h.state == "HALTED"
    assert h.checkpoints == ["2"]  # a, b done; nothing at or after the poison record
    assert p.deliveries[1:] == [[b"poison", b"c"], [b"poison", b"c"]]


def test_a_report_naming_no_record_of_the_batch_redelivers_it_whole() -> None:
    class Confused(RecordProcessor):
        calls = 0

        def process_records(self, process_records_input: ProcessRecordsInput) -> None:
            Confused.calls += 1
            if Confused.calls == 1:
                raise RecordFailures(["999"])
            process_records_input.checkpointer.checkpoint()

    h = ShardHarness(Confused())
    h.initialize()
    h.deliver([b"a", b"b"])
    assert Confused.calls == 2 and h.checkpoints == ["2"]
