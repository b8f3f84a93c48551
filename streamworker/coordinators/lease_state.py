"""The state the parts of the DynamoDB coordinator share, and a held lease.

``DynamoDBCoordinator.__init__`` sets every attribute declared here; ``lease_creation``,
``renewal`` and ``taking`` each hold one part of its behaviour and read or write this state
under the locks named below.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..clock import Clock
from .balancing import ExpiryTracker
from .base import CoordinatorStats, LeaseListener, ShardFigures
from .lease import Lease
from .lease_table import LeaseTable

#: A holder stops using a lease this fraction of the failover time after its last successful
#: write, so it has stopped before any observer (who waits the full failover time) can take it.
VALIDITY_FRACTION = 0.8


@dataclass
class HeldLease:
    """A lease this worker holds. ``lock`` serialises writes to it, so its counter is always
    the one we last wrote."""

    lease: Lease
    last_renewed: float
    handing_off: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: (records processed, when) at the last records/s measurement.
    rate_mark: tuple[int, float] | None = None


class LeaseState:
    """Attributes and queries shared by the coordinator's parts."""

    table: LeaseTable
    worker_id: str
    listener: LeaseListener
    clock: Clock
    failover_time: float
    renew_interval: float
    take_interval: float
    steady_take_interval: float
    max_leases: int | None
    max_steal: int | None
    figures_of: Callable[[str], ShardFigures | None] | None
    stats: CoordinatorStats
    stream_name: str | None
    key_prefix: str
    streams: frozenset[str] | None
    mode_check: Callable[[], object] | None
    mode_check_interval: float
    #: Held leases by key; ``_held_lock`` guards the dict, the stats and ``_hold_off``.
    _held: dict[str, HeldLease]
    _held_lock: threading.Lock
    _hold_off: dict[str, float]
    _tracker: ExpiryTracker
    _taking: bool
    _renew_wake: threading.Event
    _renew_pool: ThreadPoolExecutor | None
    _last_error: dict[str, str]
    _last_view: frozenset[tuple[str, str | None, str | None]]
    _free_since: dict[str, float]
    _mode_checked: float
    _rng: random.Random
    _log: Any

    def held_keys(self) -> list[str]:
        with self._held_lock:
            return sorted(self._held)

    def _valid(self, h: HeldLease, now: float | None = None) -> bool:
        now = self.clock.monotonic() if now is None else now
        return now - h.last_renewed < self.failover_time * VALIDITY_FRACTION

    if TYPE_CHECKING:  # defined by the parts (and the coordinator) that own them
        def own_leases(self, leases: Any) -> list[Lease]: ...
        def _drop(self, lease_key: str, why: str) -> None: ...
        def _resolve_conflict(self, h: HeldLease) -> bool: ...
        def _begin_handoff(self, h: HeldLease, current: Lease) -> None: ...
