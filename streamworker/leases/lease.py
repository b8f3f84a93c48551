"""The lease record, in the KCL lease table's own attribute names."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from streamworker.leases.keys import key_prefix_of, shard_of, stream_of
from streamworker.records import SHARD_END, ExtendedSequenceNumber, StartPosition

__all__ = ["Lease", "MalformedLease", "key_prefix_of", "lease_from_item", "stream_of"]

# Attribute names from KCL's DynamoDBLeaseSerializer (2.x / 3.x), so tables are interchangeable.
LEASE_KEY = "leaseKey"
LEASE_OWNER = "leaseOwner"
LEASE_COUNTER = "leaseCounter"
OWNER_SWITCHES = "ownerSwitchesSinceCheckpoint"
CHECKPOINT = "checkpoint"
CHECKPOINT_SUB = "checkpointSubSequenceNumber"
PENDING_CHECKPOINT = "pendingCheckpoint"
PENDING_CHECKPOINT_SUB = "pendingCheckpointSubSequenceNumber"
PENDING_CHECKPOINT_STATE = "pendingCheckpointState"
PARENT_SHARD_IDS = "parentShardId"
CHILD_SHARD_IDS = "childShardIds"
STARTING_HASH_KEY = "startingHashKey"
ENDING_HASH_KEY = "endingHashKey"
CHECKPOINT_OWNER = "checkpointOwner"
#: Multi-stream leases (KCL): the stream identifier ``account:stream:creationEpoch`` and the shard.
STREAM_ID = "streamName"
SHARD_ID = "shardId"
#: KCL 3's: the payload KB/s its holder measured (an average over renewals), which KCL 3's leader
#: balances on. streamworker writes it as KCL 3 does, in every mode.
THROUGHPUT_KBPS = "throughputKBps"
#: streamworker's own attribute (KCL ignores unknown ones): records/s its holder last measured.
RECORDS_PER_SECOND = "swRecordsPerSecond"
#: streamworker's own attribute: how far behind the stream's tip its holder last read (Kinesis).
MILLIS_BEHIND = "swMillisBehindLatest"
#: streamworker's own attribute: why the holder's processing of this shard halted (absent: it runs).
HALTED = "swHalted"
#: streamworker's own attribute: the time (epoch seconds) of an AT_TIMESTAMP checkpoint set by
#: ``streamworker checkpoint set``; removed by the next checkpoint. KCL ignores it.
CHECKPOINT_TIMESTAMP = "swCheckpointTimestamp"


@dataclass(frozen=True)
class Lease:
    """One row of the lease table.

    During a graceful handoff (KCL 3.x semantics) ``lease_owner`` is the new owner and
    ``checkpoint_owner`` the old one, which keeps processing until it checkpoints and clears it.
    """

    lease_key: str
    lease_counter: int = 0
    lease_owner: str | None = None
    checkpoint: ExtendedSequenceNumber = field(default_factory=lambda: ExtendedSequenceNumber("TRIM_HORIZON"))
    pending_checkpoint: ExtendedSequenceNumber | None = None
    owner_switches_since_checkpoint: int = 0
    parent_shard_ids: frozenset[str] = frozenset()
    child_shard_ids: frozenset[str] = frozenset()
    starting_hash_key: str | None = None
    ending_hash_key: str | None = None
    checkpoint_owner: str | None = None
    records_per_second: float = 0.0
    #: KCL 3's ``throughputKBps`` as its holder last wrote it (None: never written)
    throughput_kbps: float | None = None
    #: Kinesis MillisBehindLatest as its holder last read it (None: never written)
    millis_behind_latest: int | None = None
    #: Set by a holder whose shard halted (error policy, unreadable position): the reason.
    halted: str | None = None
    #: With an AT_TIMESTAMP checkpoint set by an operator: where to start (epoch seconds).
    checkpoint_timestamp: float | None = None

    @property
    def shard_id(self) -> str:
        """The shard id; multi-stream keys are ``account:stream:creationEpoch:shardId``."""
        return shard_of(self.lease_key)

    @property
    def is_finished(self) -> bool:
        return self.checkpoint.sequence_number == SHARD_END

    @property
    def start_timestamp(self) -> datetime | None:
        """Where an AT_TIMESTAMP checkpoint set by an operator starts (else the configured one)."""
        ts = self.checkpoint_timestamp
        return None if ts is None else datetime.fromtimestamp(ts, timezone.utc)

    def start_position(self, initial_timestamp: datetime | None) -> StartPosition:
        """Where to read from (ValueError for a checkpoint that is no position)."""
        return StartPosition.from_checkpoint(self.checkpoint, self.start_timestamp or initial_timestamp)

    def unreadable_checkpoint(self, detail: str) -> str:
        """The halt reason for a checkpoint the shard cannot be read from, saying how to fix the row."""
        return (f"lease {self.lease_key!r}: its checkpoint {str(self.checkpoint)!r} cannot be read "
                f"from ({detail}). Fix the row: set checkpoint to TRIM_HORIZON, LATEST or a sequence number "
                f"of this shard (and checkpointSubSequenceNumber to 0), or delete it to restart the shard at "
                f"the initial position")

    def with_counter(self, counter: int) -> Lease:
        return replace(self, lease_counter=counter)


class MalformedLease(ValueError):
    """A lease row that neither streamworker nor KCL can read (e.g. a counter stored as a string)."""

    def __init__(self, lease_key: str, problem: str) -> None:
        super().__init__(f"lease {lease_key!r} is malformed: {problem}; fix or delete the row "
                         f"(it is left alone until then)")
        self.lease_key, self.problem = lease_key, problem


def _key(item: dict[str, Any]) -> str:
    v = item.get(LEASE_KEY)
    return str(v.get("S")) if isinstance(v, dict) and "S" in v else repr(v)


def _s(item: dict[str, Any], name: str) -> str | None:
    v = item.get(name)
    if v is None:
        return None
    if not isinstance(v, dict) or not isinstance(v.get("S"), str):
        raise MalformedLease(_key(item), f"{name} must be a string (S), got {_type_of(v)}")
    return str(v["S"])


def _n(item: dict[str, Any], name: str, default: int = 0) -> int:
    v = item.get(name)
    if v is None:
        return default
    try:
        return int(v["N"])
    except (TypeError, KeyError, ValueError):
        raise MalformedLease(_key(item), f"{name} must be a whole number (N), got {_type_of(v)}") from None


def _type_of(v: Any) -> str:
    if isinstance(v, dict) and len(v) == 1:
        ((kind, value),) = v.items()
        return f"{kind} {str(value)[:40]!r}"
    return repr(v)[:60]


def _ss(item: dict[str, Any], name: str) -> frozenset[str]:
    v = item.get(name)
    if not v:
        return frozenset()
    if "SS" in v:
        return frozenset(v["SS"])
    if "S" in v:  # tolerate a single string written by hand
        return frozenset([v["S"]])
    return frozenset()


#: KCL 3.5 keeps its coordinator state in the lease table, each row marked with its kind:
#: ``LEASE`` rows are leases; ``WORKER_METRIC_STATS`` (one per worker), ``LEADER`` (the
#: leader lock) and ``CLIENT_VERSION_MIGRATION`` (``Migration3.0``) are not.
ENTITY_TYPE = "entityType"
LEASE_ENTITY = "LEASE"


def is_lease_item(item: dict[str, Any]) -> bool:
    """A lease row has a key, a counter and a checkpoint, and no ``entityType`` other than
    ``LEASE``; anything else is not ours to touch."""
    kind = item.get(ENTITY_TYPE, {}).get("S") if isinstance(item.get(ENTITY_TYPE), dict) else None
    if kind is not None and kind != LEASE_ENTITY:
        return False
    return LEASE_KEY in item and LEASE_COUNTER in item and CHECKPOINT in item


def number(item: dict[str, Any], name: str) -> float | None:
    """A number attribute of an item, None when absent or not a number."""
    try:
        return float(item[name]["N"])
    except (KeyError, TypeError, ValueError):
        return None


def lease_from_item(item: dict[str, Any]) -> Lease:
    """Decode a low-level DynamoDB item (as returned by the client, not the resource). Raises
    MalformedLease for a row whose attributes have the wrong types."""
    if not _s(item, LEASE_KEY):
        raise MalformedLease(_key(item), f"{LEASE_KEY} must be a non-empty string")
    pending_seq = _s(item, PENDING_CHECKPOINT)
    return Lease(
        lease_key=_s(item, LEASE_KEY) or "",
        lease_counter=_n(item, LEASE_COUNTER),
        lease_owner=_s(item, LEASE_OWNER),
        checkpoint=ExtendedSequenceNumber(_s(item, CHECKPOINT) or "TRIM_HORIZON", _n(item, CHECKPOINT_SUB)),
        pending_checkpoint=(
            ExtendedSequenceNumber(pending_seq, _n(item, PENDING_CHECKPOINT_SUB)) if pending_seq else None
        ),
        owner_switches_since_checkpoint=_n(item, OWNER_SWITCHES),
        parent_shard_ids=_ss(item, PARENT_SHARD_IDS),
        child_shard_ids=_ss(item, CHILD_SHARD_IDS),
        starting_hash_key=_s(item, STARTING_HASH_KEY),
        ending_hash_key=_s(item, ENDING_HASH_KEY),
        checkpoint_owner=_s(item, CHECKPOINT_OWNER),
        records_per_second=_float(item, RECORDS_PER_SECOND),
        throughput_kbps=_float(item, THROUGHPUT_KBPS) if THROUGHPUT_KBPS in item else None,
        millis_behind_latest=int(_float(item, MILLIS_BEHIND)) if MILLIS_BEHIND in item else None,
        halted=_s(item, HALTED),
        checkpoint_timestamp=_float(item, CHECKPOINT_TIMESTAMP) or None,
    )


def _float(item: dict[str, Any], name: str) -> float:
    try:
        return float(item.get(name, {}).get("N", 0))
    except (AttributeError, ValueError):
        return 0.0  # our own statistic: a bad value is not worth refusing the lease over


def lease_to_item(lease: Lease) -> dict[str, Any]:
    """Encode a new lease the way KCL's serializer does (absent fields are omitted)."""
    item: dict[str, Any] = {
        LEASE_KEY: {"S": lease.lease_key},
        LEASE_COUNTER: {"N": str(lease.lease_counter)},
        OWNER_SWITCHES: {"N": str(lease.owner_switches_since_checkpoint)},
        CHECKPOINT: {"S": lease.checkpoint.sequence_number},
        CHECKPOINT_SUB: {"N": str(lease.checkpoint.sub_sequence_number)},
    }
    if lease.lease_owner:
        item[LEASE_OWNER] = {"S": lease.lease_owner}
    if lease.parent_shard_ids:
        item[PARENT_SHARD_IDS] = {"SS": sorted(lease.parent_shard_ids)}
    if lease.child_shard_ids:
        item[CHILD_SHARD_IDS] = {"SS": sorted(lease.child_shard_ids)}
    if lease.pending_checkpoint is not None:
        item[PENDING_CHECKPOINT] = {"S": lease.pending_checkpoint.sequence_number}
        item[PENDING_CHECKPOINT_SUB] = {"N": str(lease.pending_checkpoint.sub_sequence_number)}
    if lease.starting_hash_key is not None and lease.ending_hash_key is not None:
        item[STARTING_HASH_KEY] = {"S": lease.starting_hash_key}
        item[ENDING_HASH_KEY] = {"S": lease.ending_hash_key}
    if lease.checkpoint_owner:
        item[CHECKPOINT_OWNER] = {"S": lease.checkpoint_owner}
    if stream_of(lease.lease_key) is not None:  # KCL's DynamoDBMultiStreamLeaseSerializer adds these
        item[STREAM_ID] = {"S": key_prefix_of(lease.lease_key)[:-1]}
        item[SHARD_ID] = {"S": lease.shard_id}
    return item
