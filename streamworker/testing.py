"""Unit-test a RecordProcessor without any server.

    from streamworker.testing import ShardHarness

    h = ShardHarness(MyProcessor())
    h.initialize()
    h.deliver([b"one", b"two"], partition_key="k")
    assert h.checkpoint == "2"                      # what the processor checkpointed
    children = h.end_shard(["shard-2", "shard-3"])  # resharding: shard_ended, then the children
    h.lose_lease()                                  # another worker took the shard

The harness runs the worker's own shard lifecycle (``streamworker.consumer.lifecycle``) inline, with an
in-memory shard, the in-memory lease store (``leases.memory``) and a fake clock: ``async def`` processors,
retries with backoff (without waiting), halting, dead-letter-free error policy and the end paths
behave exactly as under a Worker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from streamworker.checkpoint.checkpointer import Checkpointer
from streamworker.clock import FakeClock
from streamworker.consumer.event_loop import EventLoopThread
from streamworker.consumer.lanes import is_per_record
from streamworker.consumer.lifecycle import ShardLifecycle
from streamworker.consumer.progress import ConsumerSettings, ConsumerState
from streamworker.errors import ShardEndNotCheckpointedError
from streamworker.leases.memory import MemoryLeases
from streamworker.processor import ChildShard, PerRecordProcessor, RecordProcessor
from streamworker.records import ExtendedSequenceNumber, Record, StartPosition
from streamworker.sources.base import Batch, ShardInfo, ShardReader

__all__ = ["ShardHarness", "make_records"]

#: Steps after which a harness call gives up (a processor that never lets the shard move on).
_MAX_STEPS = 10_000


class _Feed:
    """Batches handed in by the test, one per ``next``."""

    def __init__(self) -> None:
        self.batches: deque[Batch] = deque()

    def start(self, reader: ShardReader) -> None:
        pass

    def next(self) -> Batch | BaseException | None:
        return self.batches.popleft() if self.batches else None

    def stop(self) -> None:
        pass

    def wake(self) -> None:
        pass


class _NoSource:
    """The lifecycle opens a reader; the harness's batches come from its feed instead."""

    stream = "harness"

    def describe(self) -> str:
        return "ACTIVE"

    def list_shards(self) -> list[ShardInfo]:
        return []

    def open_reader(self, shard_id: str, position: StartPosition) -> ShardReader:
        return _NoReader()


class _NoReader:
    def read(self) -> Batch:
        return Batch([])

    def close(self) -> None:
        pass


def _recording(inner: RecordProcessor, calls: list[str]) -> RecordProcessor:
    """``inner`` behind a processor of the same mode that notes each call's name and passes it on
    (an ``async def`` method's coroutine is returned as it is, for the lifecycle to await)."""
    per_record = is_per_record(inner)
    names = ["initialize", "lease_lost", "shard_ended", "shutdown_requested",
             "process_record" if per_record else "process_records"]

    def passing(name: str) -> Any:
        def method(self: Any, argument: Any) -> Any:
            calls.append(name)
            return getattr(inner, name)(argument)
        return method

    base: type[RecordProcessor] = PerRecordProcessor if per_record else RecordProcessor
    return type(f"Recording{type(inner).__name__}", (base,), {n: passing(n) for n in names})()  # type: ignore[no-any-return]


def make_records(payloads: Iterable[bytes | str], *, shard_id: str = "shard-1", start: int = 1,
                 partition_key: str = "key") -> list[Record]:
    """Records numbered from ``start`` (sequence numbers "1", "2", …)."""
    out = []
    for i, p in enumerate(payloads):
        data = p.encode() if isinstance(p, str) else p
        out.append(Record(data=data, partition_key=partition_key, sequence_number=str(start + i), shard_id=shard_id,
                          approximate_arrival_timestamp=datetime.now(timezone.utc)))
    return out


class ShardHarness:
    """Drives one processor through one shard's lifecycle, in memory.

    ``processor_retries`` and ``retry_backoff`` are the worker's settings of the same names: a
    failing ``process_records`` is retried (the fake clock skips the waits), and when it keeps
    failing the shard halts and ``deliver`` raises the processor's last exception.
    ``checkpoint_interval`` and ``checkpoint_every`` are the automatic checkpoint policy; move
    time on with ``harness.clock.advance(seconds)`` and ``idle()``.
    """

    def __init__(self, processor: RecordProcessor, shard_id: str = "shard-1", *, processor_retries: int = 3,
                 retry_backoff: float = 0.5, checkpoint_interval: float | None = None,
                 checkpoint_every: int | None = None) -> None:
        self.processor = processor
        self.shard_id = shard_id
        self.clock = FakeClock()
        self.calls: list[str] = []
        self._leases = MemoryLeases("harness")
        self._feed = _Feed()
        self._loop = EventLoopThread()
        self._settings = ConsumerSettings(processor_retries=processor_retries, retry_backoff=retry_backoff,
                                          event_loop=self._loop, worker_id="harness",
                                          checkpoint_interval=checkpoint_interval, checkpoint_every=checkpoint_every,
                                          inline_lanes=True)
        self._life: ShardLifecycle | None = None
        self._next_seq = 1

    # -- what the processor did --------------------------------------------------------------

    @property
    def checkpoint(self) -> str:
        """The last checkpoint written (a sequence number, or a sentinel such as SHARD_END)."""
        return str(self._leases.checkpoint_of(self.shard_id))

    @property
    def checkpoints(self) -> list[str]:
        return [str(c) for c in self._leases.row(self.shard_id).history]

    @property
    def pending_checkpoint(self) -> str | None:
        pending = self._leases.row(self.shard_id).pending
        return str(pending) if pending else None

    @property
    def checkpointer(self) -> Checkpointer | None:
        return self._life.tracker.checkpointer if self._life is not None else None

    @property
    def state(self) -> str:
        """The shard's lifecycle state (``PROCESSING``, ``HALTED``, ``DONE``, …)."""
        return self._life.state.value if self._life is not None else "NEW"

    @property
    def halt_reason(self) -> str | None:
        return self._life.halt_reason if self._life is not None else None

    @property
    def end_reason(self) -> str | None:
        return self._life.end_reason if self._life is not None else None

    # -- the lifecycle ---------------------------------------------------------------------------

    def initialize(self, checkpoint: str = "TRIM_HORIZON", sub_sequence_number: int = 0) -> None:
        """Start the shard at ``checkpoint``: ``initialize`` (retried like the worker does)."""
        esn = ExtendedSequenceNumber(checkpoint, sub_sequence_number)
        if not esn.is_sentinel:
            self._next_seq = int(checkpoint) + 1
        self._life = ShardLifecycle(
            self._leases.acquire(self.shard_id, esn),
            _recording(self.processor, self.calls),
            _NoSource(), self._leases, self._settings, self._feed, self.clock, label=self.shard_id,
            stream="harness")
        self._run(lambda life: life.state not in (ConsumerState.WAITING_ON_PARENTS, ConsumerState.INITIALIZING))
        self._raise_if_halted()

    def deliver(self, records: Sequence[Record] | Sequence[bytes | str], *, partition_key: str = "key",
                millis_behind_latest: int | None = 0) -> list[Record]:
        """Deliver these records as one batch (payloads are numbered on from the last one) and
        run until the shard is done with it. A processor that keeps raising halts the shard, as
        under a Worker, and its last exception is raised here."""
        life = self._require_running()
        if records and not isinstance(records[0], Record):
            recs = make_records(records, shard_id=self.shard_id, start=self._next_seq,  # type: ignore[arg-type]
                                partition_key=partition_key)
        else:
            recs = list(records)  # type: ignore[arg-type]
        if recs:
            self._next_seq = int(recs[-1].sequence_number) + 1
        self._feed.batches.append(Batch(recs, millis_behind_latest=millis_behind_latest))
        self._run(lambda lf: not self._feed.batches and not lf.busy)
        self._notice_stolen(life)
        self._raise_if_halted()
        return recs

    def end_shard(self, children: Sequence[str] = ()) -> list[ChildShard]:
        """Resharding: the shard closed. Calls shard_ended and checks it checkpointed SHARD_END
        (raising ShardEndNotCheckpointedError like the worker's error, naming the shard; the
        worker would retry ``shard_ended`` with backoff, the children waiting)."""
        self._require_running()
        kids = tuple(ChildShard(c, (self.shard_id,)) for c in children)
        self._feed.batches.append(Batch([], shard_end=True, child_shards=kids))
        before = self.calls.count("shard_ended")
        self._run(lambda lf: lf.state == ConsumerState.DONE or self.calls.count("shard_ended") > before)
        if not self._leases.checkpoint_of(self.shard_id).is_shard_end:
            raise ShardEndNotCheckpointedError(
                f"shard {self.shard_id}: shard_ended returned without checkpointing SHARD_END")
        return list(kids)

    def idle(self) -> None:
        """One step with no new records (as when a poll comes back empty): a due interval
        checkpoint is written."""
        life = self._require_running()
        life.step()
        self._notice_stolen(life)

    def lose_lease(self) -> None:
        """Another worker took the shard. As under a Worker: a checkpoint refuses with
        LeaseLostError, and once the worker notices (that refused checkpoint, or the next
        renewal: the end of the next harness call) the shard ends with ``lease_lost``."""
        self._require_running()
        self._leases.steal(self.shard_id)

    def request_shutdown(self) -> None:
        """A graceful stop (SIGTERM or a rebalancing handoff): ``shutdown_requested``, release."""
        life = self._require_running()
        self._notice_stolen(life)
        life.request_shutdown()
        self._run(lambda lf: lf.state == ConsumerState.DONE)

    # -- stepping ----------------------------------------------------------------------------------

    def _run(self, until: Any) -> None:
        life = self._life
        assert life is not None
        for _ in range(_MAX_STEPS):
            if until(life) or life.state == ConsumerState.DONE:
                return
            wait = life.step()
            if wait is None:
                return
            if life.state == ConsumerState.HALTED:
                return  # halted for good (the harness does not release halted shards)
            self.clock.advance(wait)
        raise RuntimeError(f"shard {self.shard_id}: still {life.state.value} after {_MAX_STEPS} steps")

    def _notice_stolen(self, life: ShardLifecycle) -> None:
        """The worker's next renewal finds a stolen lease gone: the shard ends as lost."""
        if self._leases.row(self.shard_id).stolen:
            self._leases.lose(self.shard_id)
        if not self._leases.is_held(life.lease) and life.state != ConsumerState.DONE:
            self._run(lambda lf: lf.state == ConsumerState.DONE)

    def _raise_if_halted(self) -> None:
        life = self._life
        if life is not None and life.state == ConsumerState.HALTED:
            if life.last_failure is not None:
                raise life.last_failure
            raise RuntimeError(f"shard {self.shard_id} halted: {life.halt_reason}")

    def _require_running(self) -> ShardLifecycle:
        if self._life is None:
            raise RuntimeError("call initialize() first")
        if self._life.state == ConsumerState.DONE:
            raise RuntimeError(f"shard {self.shard_id} has ended ({self._life.end_reason})")
        if self._life.state == ConsumerState.HALTED:
            raise RuntimeError(f"shard {self.shard_id} is halted: {self._life.halt_reason}")
        return self._life
