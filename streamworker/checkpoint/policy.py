"""Automatic checkpoints (``checkpoint_interval``, ``checkpoint_every``): the framework
checkpoints batches whose ``process_records`` returned, for processors that never call
``checkpoint()`` themselves (or call it rarely)."""

from __future__ import annotations

from typing import Any

from streamworker.checkpoint.checkpointer import CheckpointTracker
from streamworker.clock import Clock
from streamworker.errors import LeaseLostError

#: After a failed automatic checkpoint (throttled, broker away), wait this long before the next try.
RETRY_AFTER = 1.0


class CheckpointPolicy:
    """When a shard is due for an automatic checkpoint.

    Due once ``every`` processed records are not yet checkpointed, or once the oldest of them
    was processed ``interval`` seconds ago: so a crash redelivers at most that many records, or
    that many seconds of processing. Neither set: never due (the processor checkpoints).
    """

    def __init__(self, clock: Clock, *, interval: float | None = None, every: int | None = None) -> None:
        self._clock = clock
        self.interval, self.every = interval, every
        self._unsaved = 0
        self._oldest: float | None = None
        self._retry_at = 0.0

    @property
    def enabled(self) -> bool:
        return self.interval is not None or self.every is not None

    @property
    def unsaved(self) -> int:
        """Processed records not covered by an automatic checkpoint yet."""
        return self._unsaved

    def processed(self, records: int) -> None:
        """A batch of ``records`` came back from the processor (or went to the dead-letter sink)."""
        if not self.enabled or records == 0:
            return
        if self._unsaved == 0:
            self._oldest = self._clock.monotonic()
        self._unsaved += records

    def due(self) -> bool:
        if self._unsaved == 0 or self._clock.monotonic() < self._retry_at:
            return False
        if self.every is not None and self._unsaved >= self.every:
            return True
        return (self.interval is not None and self._oldest is not None
                and self._clock.monotonic() - self._oldest >= self.interval)

    def saved(self) -> None:
        """Everything processed is checkpointed (by the policy or by the processor)."""
        self._unsaved, self._oldest = 0, None

    def apply(self, tracker: CheckpointTracker, log: Any, *, final: bool = False) -> bool:
        """Checkpoint everything processed if due (``final``: at shutdown or shard end, whenever
        the processed range is ahead of the checkpoint). Returns False when the lease is gone."""
        if not self.enabled or not (final or self.due()):
            return True
        if tracker.last_checkpoint >= tracker.largest_permitted:  # the processor checkpointed it
            self.saved()
            return True
        try:
            tracker.write(None, None)
        except LeaseLostError as exc:
            log.warning("automatic checkpoint refused: the lease is gone", error=str(exc))
            return False
        except Exception as exc:  # the records stay unsaved: a later batch or the final one tries again
            log.warning("automatic checkpoint failed; retrying", error=repr(exc), retry_in=RETRY_AFTER)
            self._retry_at = self._clock.monotonic() + RETRY_AFTER
            return True
        self.saved()
        return True
