from __future__ import annotations

import pytest

from streamworker.records import ExtendedSequenceNumber as ESN
from streamworker.records import StartPosition
from streamworker.sources.kinesis.aggregation import UserRecord, aggregate, deaggregate, is_aggregated


def test_sequence_numbers_order_numerically_with_sentinels() -> None:
    assert ESN("9") < ESN("10")
    assert ESN("10", 1) > ESN("10", 0)
    assert ESN("TRIM_HORIZON") < ESN("1") < ESN("SHARD_END")
    assert ESN("LATEST") < ESN("TRIM_HORIZON")
    assert sorted([ESN("SHARD_END"), ESN("5", 2), ESN("5")]) == [ESN("5"), ESN("5", 2), ESN("SHARD_END")]


def test_start_position_from_checkpoint() -> None:
    assert StartPosition.from_checkpoint(ESN("TRIM_HORIZON")).kind == "TRIM_HORIZON"
    assert StartPosition.from_checkpoint(ESN("LATEST")).kind == "LATEST"
    pos = StartPosition.from_checkpoint(ESN("123", 4))
    assert pos.kind == "AT_SEQUENCE_NUMBER" and pos.sequence == ESN("123", 4)
    with pytest.raises(ValueError, match="initial timestamp"):
        StartPosition.from_checkpoint(ESN("AT_TIMESTAMP"))
    with pytest.raises(ValueError):
        StartPosition.from_checkpoint(ESN("SHARD_END"))


def test_kpl_aggregate_round_trip() -> None:
    users = [UserRecord("pk-a", None, b"one"), UserRecord("pk-b", "123456789", b"two"),
             UserRecord("pk-a", None, b"")]
    blob = aggregate(users)
    assert blob[:4] == b"\xf3\x89\x9a\xc2"
    assert is_aggregated(blob)
    assert deaggregate(blob) == users


def test_non_aggregated_and_corrupt_records_pass_through() -> None:
    assert deaggregate(b"plain json") is None
    blob = bytearray(aggregate([UserRecord("k", None, b"x")]))
    blob[-1] ^= 0xFF  # checksum no longer matches: KCL treats it as a plain record
    assert deaggregate(bytes(blob)) is None
    assert deaggregate(b"\xf3\x89\x9a\xc2" + b"\x00" * 16) is None
