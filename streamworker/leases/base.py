"""The contracts of the coordination layer: who owns which shard, and where checkpoints go.

Two coordinators implement them: ``DynamoDBCoordinator`` (a KCL lease table) and
``KafkaGroupCoordinator`` (the consumer-group protocol). Shard lineage (parents before children,
child leases at SHARD_END) exists only in a lease table, so it is a contract of its own that the
Kafka group does not implement.

Threading, as it is: a coordinator calls its ``LeaseListener`` from its own threads (the renew and
take loops and their write pools; the Kafka poll thread inside rebalance callbacks) and, when a
checkpoint finds the lease gone, from the shard consumer's thread that wrote it. Every method of
``LeaseAccess`` / ``CheckpointStore`` / ``ShardLineage`` may be called from any shard consumer's
thread at any time, concurrently: implementations lock their own state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from streamworker.checkpoint.store import CheckpointStore
from streamworker.leases.lease import Lease
from streamworker.records import InitialPosition
from streamworker.sources.base import ShardInfo


class LeaseListener(Protocol):
    """Receives lease events from a coordinator. Called from any thread; must not block (the
    Worker only queues them for its scheduler thread). The ``Lease`` of ``lease_acquired`` is the
    holding: the object a consumer passes back with each write, by which the coordinator fences
    it (a lease lost and acquired again is another object)."""

    def lease_acquired(self, lease: Lease) -> None: ...

    def lease_lost(self, lease_key: str) -> None: ...

    def handoff_requested(self, lease_key: str) -> None: ...

    def coordinator_failed(self, error: str) -> None:
        """The coordinator cannot go on (the lease table refuses us or is gone): stop the worker."""


class LeaseAccess(CheckpointStore, Protocol):
    """What a shard consumer needs from its coordinator, whatever the coordinator is. Each method
    takes the holding (``lease_acquired``'s ``Lease``) and acts only while it is current: the one
    place where a coordinator fences a worker that lost its lease."""

    def is_held(self, lease: Lease) -> bool: ...

    def release(self, lease: Lease) -> bool:
        """Give the lease up (graceful end); True if this holding was current."""
        ...

    def forget(self, lease: Lease, reason: str = ...) -> None:
        """Stop holding the lease without writing (it was lost)."""
        ...

    def mark_halted(self, lease: Lease, reason: str | None) -> None: ...

    def hold_off(self, lease_key: str, seconds: float) -> None:
        """Do not take this lease back for ``seconds`` (it was released because its shard halted)."""
        ...


class ShardLineage(Protocol):
    """Parent and child shards (Kinesis resharding), kept in a lease table."""

    def parents_complete(self, lease: Lease) -> bool:
        """Every parent of the lease's shard reached SHARD_END (or has no lease any more)."""
        ...

    def record_children(self, lease: Lease, child_ids: list[str]) -> None: ...

    def ensure_child_leases(self, children: list[tuple[str, tuple[str, ...]]], parent_key: str) -> None: ...


@dataclass(frozen=True)
class ShardFigures:
    """What a held shard's consumer reports to its coordinator, written into the lease at renewal
    (streamworker's own attributes) for balancing and for the fleet's status page."""

    records: int
    millis_behind_latest: int | None = None
    #: payload bytes processed (KCL 3's throughputKBps is measured from them)
    bytes: int = 0


@dataclass
class CoordinatorStats:
    """Lease counters since the start, exported as metrics."""

    taken: int = 0
    stolen: int = 0
    lost: int = 0
    released: int = 0
    renew_failures: int = 0
    #: Renew or take cycles that failed (each is retried after a backoff).
    cycle_failures: int = 0
    #: Take cycles completed (scan, take, steal): how many cycles a fleet change took to settle.
    take_cycles: int = 0
    #: A gauge, not a counter: how long past its due time the latest renewal of the last renew
    #: cycle completed (seconds). Beyond half the slack the worker holds back (steals none).
    renewal_delay: float = 0.0


class Coordinator(LeaseAccess, Protocol):
    """What the scheduler needs from a coordinator."""

    @property
    def stats(self) -> CoordinatorStats | None:
        """Lease counters, or None where the coordinator has no leases of its own (the Kafka group)."""
        ...

    def start(self) -> None: ...

    def stop_taking(self) -> None: ...

    def stop(self, timeout: float = ...) -> None: ...

    def held_keys(self) -> list[str]: ...

    def holding(self, lease_key: str) -> Lease | None:
        """The current holding of a lease this worker holds (None: not held)."""
        ...

    def health(self) -> tuple[bool, str]: ...


class LeaseTableCoordinator(Coordinator, ShardLineage, Protocol):
    """A coordinator over a lease table: the worker creates the leases of the shards it lists."""

    #: A multi-stream worker's stream key prefixes (None: one stream). Replaced whole.
    streams: frozenset[str] | None

    def ensure_leases(self, shards: Iterable[ShardInfo], initial_position: InitialPosition, *,
                      prefix: str | None = ..., leases: list[Lease] | None = ...) -> list[str]: ...

    def clean_finished(self, leases: Iterable[Lease]) -> list[str]: ...

    def recent_leases(self) -> list[Lease] | None:
        """A recent scan of the table, possibly stale (None: none recent)."""
        ...

    def work_in(self, shards: Iterable[ShardInfo], initial_position: InitialPosition, leases: list[Lease], *,
                prefix: str | None = ..., cleanup: bool = ...) -> bool:
        """Whether a shard sync over ``leases`` would create or delete anything."""
        ...
