"""The contract between a shard's lifecycle and the way its records reach the processor."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamworker.consumer.lanes import LaneCall
    from streamworker.consumer.outcome import Outcome


class Delivery(ABC):
    """Hands a shard's records to its processor while the shard is PROCESSING: whole batches to
    ``process_records`` (``BatchDelivery``), or record by record to ``process_record`` on per-key
    lanes (``KeyedDelivery``).

    ``step`` runs on the shard's thread, does one bounded piece of work (one attempt of one call,
    or one look at the lanes) and never sleeps; it returns an ``Outcome`` and never ends or halts
    the shard itself. ``stop`` is called before the processor's ending call, which must never
    overlap a delivery still running."""

    @abstractmethod
    def step(self) -> Outcome:
        """One piece of work, and what the lifecycle should do next."""

    @property
    @abstractmethod
    def busy(self) -> bool:
        """A call is being retried, or records handed out have not all completed."""

    def stop(self, *, drain: bool) -> None:  # noqa: B027 - nothing to stop unless records run on lanes
        """Nothing new starts; with ``drain``, what was handed out completes first (bounded)."""

    def lane_calls(self) -> list[LaneCall]:
        """The per-record calls running now (per-key mode), for hang reports."""
        return []

    def close(self) -> None:  # noqa: B027 - nothing to close unless records run on lanes
        """After the shard ended, or when its runner is abandoned."""
