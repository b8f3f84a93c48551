"""Leases and checkpoints in memory: a coordinator with no server, for the test harness
(``streamworker.testing``) and unit tests. It keeps the contract the real ones keep: writes are
fenced by holding (a lease lost, even if acquired again since, refuses its old holding's writes),
and a lease another worker took is found out at the next write, as with a lease table."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from streamworker.errors import LeaseLostError
from streamworker.leases.base import CoordinatorStats, LeaseListener
from streamworker.leases.lease import Lease
from streamworker.records import TRIM_HORIZON, ExtendedSequenceNumber


@dataclass
class _Row:
    """What a lease table's row would hold, and what the test can look at."""

    holding: Lease | None = None
    #: Another worker took the lease; its holder finds out at its next write.
    stolen: bool = False
    checkpoint: ExtendedSequenceNumber = field(default_factory=lambda: ExtendedSequenceNumber(TRIM_HORIZON))
    pending: ExtendedSequenceNumber | None = None
    history: list[ExtendedSequenceNumber] = field(default_factory=list)
    halted: str | None = None
    children: list[str] = field(default_factory=list)


class MemoryLeases:
    """One worker's leases, in memory. ``acquire`` hands out a holding (and tells the listener, if
    one is set); ``steal`` and ``lose`` are what other workers and expiry do. Safe from any thread."""

    stats: CoordinatorStats | None = None

    def __init__(self, worker_id: str = "memory", listener: LeaseListener | None = None) -> None:
        self.worker_id = worker_id
        self.listener = listener
        self._rows: dict[str, _Row] = {}
        self._lock = threading.Lock()
        #: Lease keys the consumers released / forgot, in call order (held or not by then).
        self.released: list[str] = []
        self.forgotten: list[str] = []
        self.held_off: dict[str, float] = {}
        self.calls: list[str] = []
        #: Called before each checkpoint write with the lease key (a test's fault: raise to fail it).
        self.before_write: Callable[[str], None] | None = None
        #: Lineage: whether parents are complete (asked ``parent_polls`` times), and the child
        #: leases created and recorded, in order: ("created", children) / ("recorded", child ids).
        self.parents_done = True
        self.parent_polls = 0
        self.lineage: list[tuple[str, tuple[object, ...]]] = []

    # -- what tests do -----------------------------------------------------------------------------

    def acquire(self, lease_key: str, checkpoint: str | ExtendedSequenceNumber | None = None,
                **fields: object) -> Lease:
        """Hold ``lease_key`` from ``checkpoint`` (default: the stored one, TRIM_HORIZON for a new
        lease): a new holding (the old one, if any, is lost)."""
        with self._lock:
            row = self._rows.setdefault(lease_key, _Row())
            if checkpoint is not None:
                row.checkpoint = checkpoint if isinstance(checkpoint, ExtendedSequenceNumber) \
                    else ExtendedSequenceNumber(checkpoint)
            lease = Lease(lease_key, lease_owner=self.worker_id, checkpoint=row.checkpoint,
                          **fields)  # type: ignore[arg-type]
            row.holding, row.stolen = lease, False
        if self.listener is not None:
            self.listener.lease_acquired(lease)
        return lease

    def request_handoff(self, lease_key: str) -> None:
        """Another worker asks for the lease (a graceful handoff): the listener is told; the
        holder may still checkpoint until it releases."""
        if self.listener is not None:
            self.listener.handoff_requested(lease_key)

    def steal(self, lease_key: str) -> None:
        """Another worker took the lease: its holder finds out at its next write or check."""
        with self._lock:
            self._rows[lease_key].stolen = True

    def lose(self, lease_key: str) -> None:
        """The lease is gone now (expired, or taken and noticed): the listener is told."""
        with self._lock:
            row = self._rows.get(lease_key)
            if row is None or row.holding is None:
                return
            row.holding = None
        if self.listener is not None:
            self.listener.lease_lost(lease_key)

    def row(self, lease_key: str) -> _Row:
        with self._lock:
            return self._rows[lease_key]

    def checkpoint_of(self, lease_key: str) -> ExtendedSequenceNumber:
        return self.row(lease_key).checkpoint

    # -- LeaseAccess -------------------------------------------------------------------------------

    def _current(self, lease: Lease, op: str) -> _Row:
        with self._lock:
            row = self._rows.get(lease.lease_key)
            if row is not None and row.stolen and row.holding is lease:
                row.holding = None
            if row is None or row.holding is not lease:
                raise LeaseLostError(f"shard {lease.lease_key}: {op} refused: the lease was lost")
            return row

    def is_held(self, lease: Lease) -> bool:
        # a stolen lease is still believed held: the worker finds out at its next write or renewal
        with self._lock:
            row = self._rows.get(lease.lease_key)
            return row is not None and row.holding is lease

    def checkpoint(self, lease: Lease, checkpoint: ExtendedSequenceNumber,
                   pending: ExtendedSequenceNumber | None = None) -> None:
        if self.before_write is not None:
            self.before_write(lease.lease_key)
        row = self._current(lease, "checkpoint")
        with self._lock:
            row.checkpoint, row.pending = checkpoint, pending
            row.history.append(checkpoint)

    def prepare_checkpoint(self, lease: Lease, pending: ExtendedSequenceNumber) -> None:
        row = self._current(lease, "prepare_checkpoint")
        with self._lock:
            row.pending = pending

    def release(self, lease: Lease) -> bool:
        with self._lock:
            self.released.append(lease.lease_key)
            row = self._rows.get(lease.lease_key)
            if row is None or row.holding is not lease:
                return False
            row.holding = None
            return True

    def forget(self, lease: Lease, reason: str = "") -> None:
        with self._lock:
            self.forgotten.append(lease.lease_key)
            row = self._rows.get(lease.lease_key)
            if row is not None and row.holding is lease:
                row.holding = None

    def mark_halted(self, lease: Lease, reason: str | None) -> None:
        with self._lock:
            row = self._rows.get(lease.lease_key)
            if row is not None:
                row.halted = reason

    def hold_off(self, lease_key: str, seconds: float) -> None:
        self.held_off[lease_key] = seconds

    def history(self, lease_key: str) -> list[ExtendedSequenceNumber]:
        """Every checkpoint written for ``lease_key``, oldest first (none: [])."""
        with self._lock:
            row = self._rows.get(lease_key)
            return list(row.history) if row is not None else []

    # -- ShardLineage (what the test says of parents; children noted) ----------------------------

    def parents_complete(self, lease: Lease) -> bool:
        self.parent_polls += 1
        return self.parents_done

    def record_children(self, lease: Lease, child_ids: list[str]) -> None:
        self._current(lease, "record child shards").children[:] = child_ids
        self.lineage.append(("recorded", tuple(child_ids)))

    def ensure_child_leases(self, children: list[tuple[str, tuple[str, ...]]], parent_key: str) -> None:
        with self._lock:
            for child, _parents in children:
                self._rows.setdefault(child, _Row())
        self.lineage.append(("created", tuple(children)))

    # -- Coordinator -------------------------------------------------------------------------------

    def start(self) -> None:
        self.calls.append("start")

    def stop_taking(self) -> None:
        self.calls.append("stop_taking")

    def stop(self, timeout: float = 10.0) -> None:
        self.calls.append("stop")

    def held_keys(self) -> list[str]:
        with self._lock:
            return sorted(k for k, r in self._rows.items() if r.holding is not None)

    def holding(self, lease_key: str) -> Lease | None:
        with self._lock:
            row = self._rows.get(lease_key)
            return row.holding if row is not None else None

    def health(self) -> tuple[bool, str]:
        return True, "ok"
