"""Processor calls retried with backoff: one attempt per lifecycle step, never a sleep here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from streamworker.backoff import Backoff
from streamworker.errors import LeaseLostError
from streamworker.records import ExtendedSequenceNumber
from streamworker.sources.base import Batch


@dataclass
class ProcessorCall:
    """A processor call being retried: what, how, and its attempts so far."""

    what: str
    run: Callable[[], object]
    attempt: int = 0
    backoff: Backoff | None = None
    #: For process_records: the batch and the delivery bound before it (undone if it fails).
    batch: Batch | None = None
    previous: ExtendedSequenceNumber | None = None
    started: float = 0.0
    #: Narrowed by the site (a bisected batch): its next attempt is a fresh one, still interruptible.
    narrowed: bool = False


class CallFailed(Exception):
    """A retried call used up its attempts (or was interrupted between them)."""


class CallSite(Protocol):
    """Where a call runs: told when it starts and ends, and of each failure."""

    def interrupted(self) -> bool: ...
    def call_started(self, what: str | None) -> None: ...
    def call_failed(self, call: ProcessorCall, exc: Exception, final: bool, delay: float) -> None: ...
    def narrowed(self, call: ProcessorCall, exc: Exception) -> bool:
        """The site made ``call`` do part of its work (a bisected batch): try that at once, afresh."""
        ...


def attempt(call: ProcessorCall, site: CallSite, *, retries: int, backoff: float) -> float | None:
    """One attempt of a retried processor call: None when it succeeded, else the seconds until
    the next attempt. Raises CallFailed when the attempts are used up or the shard was
    interrupted while waiting for one; LeaseLostError passes through."""
    if (call.attempt > 0 or call.narrowed) and site.interrupted():
        raise CallFailed(call.what)
    try:
        site.call_started(call.what)
        try:
            call.run()
        finally:
            site.call_started(None)
        return None
    except LeaseLostError:
        raise
    except Exception as exc:  # incl. a checkpoint that failed for a transient reason
        if site.narrowed(call, exc):
            call.attempt, call.backoff, call.narrowed = 0, None, True
            return 0.0
        call.attempt += 1
        if call.attempt > retries:
            site.call_failed(call, exc, True, 0.0)
            raise CallFailed(call.what) from exc
        if call.backoff is None:  # made on the first failure: seeding a Random is not free
            call.backoff = Backoff(base=backoff, cap=10.0, floor=backoff / 2)
        delay = call.backoff.next_delay()
        site.call_failed(call, exc, False, delay)
        return delay


class ShardCalls:
    """A shard's side of its processor calls, shared by its lifecycle and its delivery: which call
    runs now (for hang reports), each failure counted and logged, and the one that used up its
    retries. The plain ``CallSite`` for calls that are never narrowed (``initialize``)."""

    def __init__(self, interrupted: Callable[[], bool], monotonic: Callable[[], float], log: Any,
                 count_failure: Callable[[], None]) -> None:
        self._interrupted, self._monotonic, self._log, self._count_failure = interrupted, monotonic, log, count_failure
        #: (processor method, start on the clock) while a processor call runs.
        self.current: tuple[str, float] | None = None
        #: The exception of the call that used up its retries, if one did.
        self.last_failure: BaseException | None = None

    def interrupted(self) -> bool:
        return self._interrupted()

    def call_started(self, what: str | None) -> None:
        self.current = None if what is None else (what, self._monotonic())

    def narrowed(self, call: ProcessorCall, exc: Exception) -> bool:
        return False

    def count_failure(self) -> None:
        """A failure counted without the retry message (a bisected batch logs its own)."""
        self._count_failure()

    def call_failed(self, call: ProcessorCall, exc: Exception, final: bool, delay: float) -> None:
        self._count_failure()
        if final:
            self.last_failure = exc
            self._log.error(f"processor {call.what} failed; shard halted with its checkpoint kept",
                            attempts=call.attempt, error=repr(exc), exc_info=True)
        else:
            self._log.warning(f"processor {call.what} raised; retrying the same records",
                              attempt=call.attempt, retry_in=round(delay, 2), error=repr(exc))
