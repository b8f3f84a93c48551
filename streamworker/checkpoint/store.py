"""Where checkpoints go, and the one wrapper around it: a checkpoint goes from the processor's
``Checkpointer`` through ``CheckpointTracker`` (validation) and ``TimedStore`` (latency, failures)
straight down to the coordinator, which alone decides whether the write is fenced out."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from streamworker.errors import CheckpointError

if TYPE_CHECKING:
    from streamworker.leases.lease import Lease
    from streamworker.records import ExtendedSequenceNumber


class CheckpointStore(Protocol):
    """Where checkpoints go: a coordinator. ``lease`` is the holding the coordinator handed out
    when the lease was acquired; a write for a holding that is no longer current (the lease was
    lost, even if it was acquired again since) raises LeaseLostError. A call that returns has
    made the checkpoint durable."""

    def checkpoint(self, lease: Lease, checkpoint: ExtendedSequenceNumber,
                   pending: ExtendedSequenceNumber | None = None) -> None: ...

    def prepare_checkpoint(self, lease: Lease, pending: ExtendedSequenceNumber) -> None: ...


class TimedStore:
    """Times checkpoint writes (``observe`` gets the seconds) and counts their failures (``failed``
    gets the error's class name)."""

    def __init__(self, inner: CheckpointStore, observe: Callable[[float], None], failed: Callable[[str], None]) -> None:
        self._inner, self._observe, self._failed = inner, observe, failed

    def checkpoint(self, lease: Lease, checkpoint: ExtendedSequenceNumber,
                   pending: ExtendedSequenceNumber | None = None) -> None:
        started = time.perf_counter()
        try:
            self._inner.checkpoint(lease, checkpoint, pending)
        except CheckpointError as exc:
            self._failed(type(exc).__name__)
            raise
        self._observe(time.perf_counter() - started)

    def prepare_checkpoint(self, lease: Lease, pending: ExtendedSequenceNumber) -> None:
        self._inner.prepare_checkpoint(lease, pending)
