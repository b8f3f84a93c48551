"""``streamworker checkpoint set``: rewind (or skip ahead) the checkpoints of a lease table while
workers run. Each row is written with a conditional write on its lease counter; the holder
loses the lease (``lease_lost``) and whoever takes it next starts at the new point."""

from __future__ import annotations

import json
from typing import TextIO

from streamworker.checkpoint.target import Target
from streamworker.errors import ConfigError, StreamworkerError
from streamworker.leases.dynamodb.table import LeaseConflict, LeaseTable
from streamworker.leases.keys import shard_of
from streamworker.leases.lease import Lease
from streamworker.records import AT_TIMESTAMP, LATEST, TRIM_HORIZON, ExtendedSequenceNumber

#: Conditional writes that lost a race with a renewal before the command gives up on a lease.
ATTEMPTS = 10


def select(leases: list[Lease], shards: list[str], all_shards: bool) -> list[Lease]:
    """The leases named by ``--shard`` (a lease key, or a shard id where that is unambiguous), or all."""
    if all_shards:
        return sorted(leases, key=lambda le: le.lease_key)
    out: list[Lease] = []
    for s in shards:
        exact = [le for le in leases if le.lease_key == s]
        matches = exact or [le for le in leases if shard_of(le.lease_key) == s]
        if not matches:
            raise StreamworkerError(f"no lease {s!r} in the table (see `streamworker leases`)")
        if len(matches) > 1:
            raise StreamworkerError(f"shard {s!r} is in several streams' leases: name one of "
                                    f"{', '.join(le.lease_key for le in matches)}")
        out.extend(m for m in matches if m not in out)
    return out


def set_checkpoints(table: LeaseTable, shards: list[str], all_shards: bool, to: Target, *, dry_run: bool,
                    as_json: bool, out: TextIO) -> int:
    """Write ``to`` as the checkpoint of the selected leases; print what changed (or would)."""
    if not shards and not all_shards:
        raise ConfigError("name the leases: --shard SHARD (repeatable) or --all-shards")
    chosen = select(table.list_leases(consistent=True), shards, all_shards)
    if to.checkpoint.sequence_number not in (TRIM_HORIZON, LATEST, AT_TIMESTAMP) and len(chosen) > 1:
        raise ConfigError("a sequence number belongs to one shard: use --shard with it, not several leases")
    ts = to.timestamp.timestamp() if to.timestamp is not None else None
    rows = []
    for lease in chosen:
        row = {"lease": lease.lease_key, "from": str(lease.checkpoint), "to": str(to),
               "holder": lease.lease_owner, "written": False}
        if not dry_run:
            row["written"] = _write(table, lease, to.checkpoint, ts)
        rows.append(row)
    if as_json:
        out.write(json.dumps(rows) + "\n")
    else:
        verb = "would set" if dry_run else "set"
        for r in rows:
            holder = f" (its holder {r['holder']} loses the lease)" if r["holder"] and not dry_run else (
                f" (held by {r['holder']})" if r["holder"] else "")
            out.write(f"{verb} {r['lease']}: {r['from']} -> {r['to']}{holder}\n")
        if dry_run:
            out.write("dry run: nothing written\n")
    return 0


def _write(table: LeaseTable, lease: Lease, to: ExtendedSequenceNumber, ts: float | None) -> bool:
    current = lease
    for _ in range(ATTEMPTS):
        try:
            table.set_checkpoint(current, to, ts)
            return True
        except LeaseConflict as conflict:  # renewed (or taken) since it was read: retry on the row as it is
            fresh = table.after_conflict(conflict, current.lease_key)
            if fresh is None:
                raise StreamworkerError(f"lease {lease.lease_key!r} was deleted meanwhile") from None
            current = fresh
    raise StreamworkerError(f"lease {lease.lease_key!r}: its counter kept moving; {ATTEMPTS} writes lost the race")
