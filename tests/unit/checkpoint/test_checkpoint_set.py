"""`streamworker checkpoint set` on a lease table (moto in-process): fenced writes that take the
lease from its holder, dry runs, selection and the --to forms."""

from __future__ import annotations

import io
import json
from datetime import datetime, timezone
from typing import Any

import pytest

from streamworker.checkpoint.target import parse_target
from streamworker.errors import ConfigError, StreamworkerError
from streamworker.leases.dynamodb.rewind import set_checkpoints
from streamworker.leases.dynamodb.table import LeaseConflict, LeaseTable
from streamworker.leases.lease import Lease
from streamworker.records import ExtendedSequenceNumber as ESN
from streamworker.records import StartPosition


def held(table: LeaseTable, key: str, seq: str = "500") -> Lease:
    table.create_if_absent(Lease(key))
    lease = table.take(table.get(key) or Lease(key), "worker-a")
    return table.checkpoint(key, lease.lease_counter, "worker-a", ESN(seq), ESN("600"))


def test_the_to_forms() -> None:
    assert str(parse_target("trim_horizon")) == "TRIM_HORIZON"
    assert str(parse_target("LATEST")) == "LATEST"
    assert parse_target("12345").checkpoint == ESN("12345")
    at = parse_target("AT_TIMESTAMP:2026-12-01T08:00:00Z")
    assert at.checkpoint == ESN("AT_TIMESTAMP")
    assert at.timestamp == datetime(2026, 12, 1, 8, tzinfo=timezone.utc)
    with pytest.raises(ConfigError, match="not an ISO 8601 time"):
        parse_target("AT_TIMESTAMP:yesterday")
    with pytest.raises(ConfigError, match="expected TRIM_HORIZON, LATEST"):
        parse_target("SHARD_END")


def test_a_held_lease_is_rewound_fenced_and_freed(table: LeaseTable) -> None:
    before = held(table, "shardId-1")
    out = io.StringIO()
    assert set_checkpoints(table, ["shardId-1"], False, parse_target("TRIM_HORIZON"), dry_run=False,
                           as_json=False, out=out) == 0
    assert out.getvalue() == "set shardId-1: 500 -> TRIM_HORIZON (its holder worker-a loses the lease)\n"
    after = table.get("shardId-1")
    assert after is not None
    assert after.checkpoint == ESN("TRIM_HORIZON") and after.pending_checkpoint is None
    assert after.lease_owner is None and after.lease_counter == before.lease_counter + 1  # free: taken at once
    # the former holder is fenced out: its renewal and its checkpoint are refused
    with pytest.raises(LeaseConflict):
        table.renew("shardId-1", before.lease_counter, "worker-a")
    with pytest.raises(LeaseConflict):
        table.checkpoint("shardId-1", before.lease_counter, "worker-a", ESN("700"), None)


def test_at_timestamp_is_kept_on_the_row_until_the_next_checkpoint(table: LeaseTable) -> None:
    held(table, "shardId-1")
    set_checkpoints(table, [], True, parse_target("AT_TIMESTAMP:2026-12-01T08:00:00+00:00"), dry_run=False,
                    as_json=True, out=io.StringIO())
    lease = table.get("shardId-1")
    assert lease is not None and lease.checkpoint == ESN("AT_TIMESTAMP")
    position = StartPosition.from_checkpoint(lease.checkpoint, lease.start_timestamp)
    assert position.kind == "AT_TIMESTAMP" and position.timestamp == datetime(2026, 12, 1, 8, tzinfo=timezone.utc)
    taken = table.take(lease, "worker-b")
    table.checkpoint("shardId-1", taken.lease_counter, "worker-b", ESN("900"), None)
    again = table.get("shardId-1")
    assert again is not None and again.checkpoint_timestamp is None


def test_dry_run_writes_nothing_and_json_says_so(table: LeaseTable) -> None:
    held(table, "shardId-1")
    held(table, "shardId-2", "800")
    out = io.StringIO()
    set_checkpoints(table, [], True, parse_target("LATEST"), dry_run=True, as_json=True, out=out)
    rows = json.loads(out.getvalue())
    assert [(r["lease"], r["from"], r["to"], r["holder"], r["written"]) for r in rows] == [
        ("shardId-1", "500", "LATEST", "worker-a", False), ("shardId-2", "800", "LATEST", "worker-a", False)]
    assert {le.lease_key: str(le.checkpoint) for le in table.list_leases()} == {"shardId-1": "500",
                                                                                 "shardId-2": "800"}


def test_a_renewal_racing_the_write_is_read_again_not_overwritten(table: LeaseTable) -> None:
    lease = held(table, "shardId-1")
    real = table.set_checkpoint
    raced: list[Any] = []

    def racing(le: Lease, to: ESN, ts: float | None = None) -> Lease:
        if not raced:  # the holder renews between our read and our write
            raced.append(table.renew("shardId-1", le.lease_counter, "worker-a"))
        return real(le, to, ts)

    table.set_checkpoint = racing  # type: ignore[method-assign,assignment]
    set_checkpoints(table, ["shardId-1"], False, parse_target("LATEST"), dry_run=False, as_json=False,
                    out=io.StringIO())
    after = table.get("shardId-1")
    assert after is not None and after.checkpoint == ESN("LATEST")
    assert after.lease_counter == lease.lease_counter + 2  # the renewal, then ours


def test_selection_errors(table: LeaseTable) -> None:
    held(table, "shardId-1")
    held(table, "shardId-2")
    with pytest.raises(StreamworkerError, match="no lease 'shardId-9'"):
        set_checkpoints(table, ["shardId-9"], False, parse_target("LATEST"), dry_run=True, as_json=False,
                        out=io.StringIO())
    with pytest.raises(ConfigError, match="--shard SHARD"):
        set_checkpoints(table, [], False, parse_target("LATEST"), dry_run=True, as_json=False, out=io.StringIO())
    with pytest.raises(ConfigError, match="a sequence number belongs to one shard"):
        set_checkpoints(table, [], True, parse_target("123"), dry_run=True, as_json=False, out=io.StringIO())


def test_multi_stream_keys_are_named_by_shard_id_when_unambiguous(table: LeaseTable) -> None:
    held(table, "123456789012:orders:1700000000:shardId-1")
    held(table, "123456789012:clicks:1700000000:shardId-1")
    held(table, "123456789012:clicks:1700000000:shardId-2")
    out = io.StringIO()
    set_checkpoints(table, ["shardId-2"], False, parse_target("TRIM_HORIZON"), dry_run=True, as_json=False, out=out)
    assert out.getvalue().startswith("would set 123456789012:clicks:1700000000:shardId-2: 500 -> TRIM_HORIZON")
    with pytest.raises(StreamworkerError, match="several streams"):
        set_checkpoints(table, ["shardId-1"], False, parse_target("TRIM_HORIZON"), dry_run=True, as_json=False,
                        out=io.StringIO())

