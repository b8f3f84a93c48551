"""The ``kafka-group`` coordinator: the consumer-group protocol decides ownership.

``on_assign`` becomes lease-acquired events (resuming from the committed offsets); ``on_revoke``
asks the revoked shards to shut down, waits (bounded) until their in-flight batch finished and
their checkpoint is committed, and only then returns to librdkafka; ``on_lost`` becomes
lease-lost with no commit. A checkpoint at offset N commits N + 1, or the consumer's position
when only control records (transaction markers) or aborted records follow N; and a partition
whose every delivered record is checkpointed has its commit moved along when a marker arrives
later, so its lag reaches 0 as Kafka's own tools count it. A committed offset of N resumes at N
(N = 0: nothing processed, the checkpoint is TRIM_HORIZON). Works with eager assignors,
cooperative-sticky and KIP-848 (incremental assignment in both of the latter).
"""

from __future__ import annotations

import concurrent.futures
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from streamworker.clock import Clock, SystemClock
from streamworker.errors import CheckpointThrottledError, LeaseLostError
from streamworker.kafka.source import KafkaSource, parse_shard, shard_key, start_offset
from streamworker.leases.base import CoordinatorStats, LeaseListener
from streamworker.leases.freeze import FreezeDetector
from streamworker.leases.lease import Lease
from streamworker.records import TRIM_HORIZON, ExtendedSequenceNumber, InitialPosition, StartPosition

log = structlog.get_logger("streamworker.kafka_group")

#: Another instance took this static member id: nothing this worker commits counts any more.
_FENCED_ERRORS = ("FENCED_INSTANCE_ID",)
#: Commits refused while a rebalance is under way (or the coordinator moves). With incremental
#: protocols the member keeps the partitions it was not asked to give up, and the commit succeeds
#: once the rebalance completes; whether a partition is still ours is decided by the rebalance
#: callbacks (on_revoke / on_lost remove it), which the retry loop checks before every attempt.
_REBALANCE_ERRORS = ("REBALANCE_IN_PROGRESS", "ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID", "STALE_MEMBER_EPOCH")
#: Refusals that no retry within the same revoke can overcome.
_GENERATION_OVER = ("ILLEGAL_GENERATION", "UNKNOWN_MEMBER_ID")
_RETRY_ERRORS = (*_REBALANCE_ERRORS, "COORDINATOR_LOAD_IN_PROGRESS", "NOT_COORDINATOR", "COORDINATOR_NOT_AVAILABLE",
                 "REQUEST_TIMED_OUT", "_TIMED_OUT", "_TRANSPORT", "_WAIT_COORD")
#: A rebalance ends, keeping the partition here (the commit then succeeds) or taking it away (the
#: retry loop sees that): refusals because of one are retried this long, not just commit_timeout.
#: Giving up earlier redelivered a batch the processor had finished (seen on a loaded machine,
#: where a cooperative rebalance outlasted 15 s). Not while the partition is being revoked: then
#: the rebalance waits for the revoke callback, which waits for this commit, so waiting cannot help
#: and the commit gives up within half the revoke timeout (the new owner redelivers from the
#: last commit that was made).
REBALANCE_PATIENCE = 120.0
PENDING_PREFIX = "streamworker:pending="


@dataclass
class _Assigned:
    lease: Lease
    released: threading.Event = field(default_factory=threading.Event)
    checkpoint: ExtendedSequenceNumber | None = None
    #: The offset last committed for this assignment (Kafka's convention: the next one to read).
    committed: int = -1
    #: A pending checkpoint rides in the commit's metadata: the position is not moved under it.
    pending: bool = False
    #: on_revoke waits for this partition's last batch: the rebalance cannot go on before it returns
    revoking: bool = False


class KafkaGroupCoordinator:
    """Lease events from the Kafka consumer-group protocol; checkpoints as offset commits."""

    #: The group has no lease rows to count.
    stats: CoordinatorStats | None = None

    def __init__(self, source: KafkaSource, worker_id: str, listener: LeaseListener, *,
                 initial_position: InitialPosition, initial_timestamp: datetime | None = None,
                 revoke_timeout: float = 20.0, commit_timeout: float = 15.0, stream: str = "",
                 clock: Clock | None = None) -> None:
        self.source = source
        self.client = source.client
        self.worker_id = worker_id
        self.listener = listener
        self.initial_position = initial_position
        self.initial_timestamp = initial_timestamp
        self.revoke_timeout = revoke_timeout
        self.commit_timeout = commit_timeout
        self.clock = clock or SystemClock()
        self._held: dict[str, _Assigned] = {}
        self._lock = threading.Lock()
        self._log = log.bind(worker_id=worker_id, stream=stream)
        conf = self.client.conf
        classic = str(conf.get("group.protocol", "classic")).lower() != "consumer"
        # KIP-848 takes both from the broker (defaults 45 s and 5 s).
        session = float(conf.get("session.timeout.ms", 45000)) / 1000 if classic else 45.0
        heartbeat = float(conf.get("heartbeat.interval.ms", 3000)) / 1000 if classic else 5.0
        #: A freeze of half the session timeout may have cost the assignment: the next batch
        #: waits until heartbeats had time to tell (three intervals), as a lease's validity does.
        self.freeze = FreezeDetector(threshold=session / 2, settle=max(2.0, 3 * heartbeat),
                                     name=f"freeze-{worker_id}")

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.client.on_position = self._position_moved
        self.client.consumer.subscribe(self.source.subscription(), on_assign=self._on_assign,
                                       on_revoke=self._on_revoke, on_lost=self._on_lost)
        self.client.start()
        self.freeze.start()

    def stop_taking(self) -> None:
        """The group keeps assigning until the consumer leaves it in ``stop``."""

    def stop(self, timeout: float = 10.0) -> None:
        self.freeze.stop()
        self.client.stop(timeout)

    # -- rebalance callbacks (on the poll thread) ---------------------------------------------

    def _incremental(self, consumer: Any) -> bool:
        """Incremental (cooperative) assignment: cooperative-sticky or KIP-848. Fixed by the
        configuration, so it is read from there (the binding has no rebalance_protocol())."""
        conf = self.client.conf
        if str(conf.get("group.protocol", "classic")).lower() == "consumer":
            return True
        return "cooperative" in str(conf.get("partition.assignment.strategy", "")).lower()

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        from confluent_kafka import TopicPartition

        answer = consumer.committed(partitions, timeout=10) if partitions else []
        start = StartPosition(self.initial_position.value, timestamp=self.initial_timestamp)
        assign: list[Any] = []
        leases: list[Lease] = []
        committed: dict[str, int] = {}
        for tp in answer:
            pending = None
            meta = getattr(tp, "metadata", None) or ""
            if meta.startswith(PENDING_PREFIX):
                pending = ExtendedSequenceNumber(meta[len(PENDING_PREFIX):])
            if tp.offset > 0:
                offset = tp.offset
                checkpoint = ExtendedSequenceNumber(str(tp.offset - 1))
            elif tp.offset == 0:  # a group reset to the earliest offset: nothing processed yet
                offset = 0
                checkpoint = ExtendedSequenceNumber(TRIM_HORIZON)
            else:
                offset = start_offset(start, consumer, tp.topic, tp.partition)
                checkpoint = ExtendedSequenceNumber(self.initial_position.value)
            assign.append(TopicPartition(tp.topic, tp.partition, offset))
            self.client.open_buffer(tp.topic, tp.partition, next_offset=offset if offset >= 0 else None)
            leases.append(Lease(lease_key=shard_key(tp.topic, tp.partition), lease_owner=self.worker_id,
                                checkpoint=checkpoint, pending_checkpoint=pending))
            committed[leases[-1].lease_key] = max(-1, int(tp.offset))
        if self._incremental(consumer):
            consumer.incremental_assign(assign)
        else:
            consumer.assign(assign)
        for lease in leases:
            with self._lock:
                self._held[lease.lease_key] = _Assigned(lease, checkpoint=lease.checkpoint,
                                                        committed=committed[lease.lease_key],
                                                        pending=lease.pending_checkpoint is not None)
            self._log.info("partition assigned", shard_id=lease.lease_key, checkpoint=str(lease.checkpoint))
            self.listener.lease_acquired(lease)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        keys = [shard_key(tp.topic, tp.partition) for tp in partitions]
        with self._lock:
            waiting = {k: self._held[k] for k in keys if k in self._held}
            for a in waiting.values():
                a.revoking = True
        for k in waiting:
            self.listener.handoff_requested(k)
        deadline = self.clock.monotonic() + self.revoke_timeout
        while self.clock.monotonic() < deadline and not all(a.released.is_set() for a in waiting.values()):
            # The revoked shards' final checkpoints are commits queued for this (the poll) thread.
            self.client.drain_control(in_callback=True)
            self.clock.sleep(0.005)
        self.client.drain_control(in_callback=True)
        for k, a in waiting.items():
            if not a.released.is_set():
                self._log.warning("revoked partition did not finish in time; its un-checkpointed records "
                                  "will be processed again by the new owner", shard_id=k)
                self._drop(k)
        for tp in partitions:
            self.client.close_buffer(tp.topic, tp.partition)
        if self._incremental(consumer):
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()
        if waiting:
            self._log.info("partitions revoked", shards=sorted(waiting))

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self._drop(shard_key(tp.topic, tp.partition))
            self.client.close_buffer(tp.topic, tp.partition)
        try:
            if self._incremental(consumer):
                consumer.incremental_unassign(partitions)
            else:
                consumer.unassign()
        except Exception as exc:
            self._log.warning("unassign after a lost assignment failed", error=str(exc))

    def _drop(self, key: str) -> None:
        with self._lock:
            a = self._held.pop(key, None)
        if a is not None:
            a.released.set()
            self._log.warning("partition lost", shard_id=key)
            self.listener.lease_lost(key)

    # -- LeaseAccess ---------------------------------------------------------------------------

    def held_keys(self) -> list[str]:
        with self._lock:
            return sorted(self._held)

    def holding(self, lease_key: str) -> Lease | None:
        a = self._assignment(lease_key)
        return a.lease if a is not None else None

    def is_held(self, lease: Lease) -> bool:
        """Whether the group still assigns the partition here, to this holding (a partition lost
        and assigned straight back is a new one). Right after the process stood still this waits
        (a few heartbeats) for the group to report a loss first: a frozen worker must not start a
        new batch on a partition that moved meanwhile."""
        if self.freeze.unsettled():
            self.freeze.wait_until_settled(self.freeze.threshold + self.freeze.settle + 1)
        return self._current(lease) is not None

    def _assignment(self, lease_key: str) -> _Assigned | None:
        with self._lock:
            return self._held.get(lease_key)

    def _current(self, lease: Lease) -> _Assigned | None:
        """The assignment of the holding ``lease``, while it is current: the one place where this
        coordinator fences a consumer whose partition was lost (even if assigned back since)."""
        a = self._assignment(lease.lease_key)
        return a if a is not None and a.lease is lease else None

    def _commit(self, lease: Lease, next_offset: int, metadata: str | None, op: str) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        lease_key = lease.lease_key
        topic, partition = parse_shard(lease_key)
        tp = TopicPartition(topic, partition, next_offset, metadata) if metadata else \
            TopicPartition(topic, partition, next_offset)
        started = self.clock.monotonic()
        deadline = started + self.commit_timeout
        delay = 0.05
        while True:
            # a partition lost and assigned straight back (a worker woken from SIGSTOP) is a new
            # holding: a commit of the old one (waiting in is_held for the freeze to settle) fails
            if not self.is_held(lease):
                raise LeaseLostError(f"shard {lease_key}: {op} refused: the partition is no longer assigned here")
            try:
                # Retries wait here, on the caller's thread; each attempt runs on the poll thread,
                # which keeps serving the rebalance in between.
                self.client.commit_offsets([tp])
                return
            except concurrent.futures.TimeoutError:
                raise CheckpointThrottledError(f"shard {lease_key}: {op} timed out") from None
            except KafkaException as exc:
                err: Any = exc.args[0] if exc.args else None
                name = str(err.name()) if err is not None and hasattr(err, "name") else str(exc)
                if any(f in name for f in _FENCED_ERRORS):
                    raise LeaseLostError(f"shard {lease_key}: {op} refused by the group ({name})") from None
                current = self._assignment(lease_key)
                if current is not None and current.revoking and any(g in name for g in _GENERATION_OVER):
                    # the generation this commit carries is over and the rebalance waits for this
                    # revoke: retrying holds the member past its session timeout, and the group then
                    # evicts it, losing every partition it kept (seen on librdkafka's mock cluster)
                    raise CheckpointThrottledError(f"shard {lease_key}: {op} failed: {name}") from None
                if current is not None and current.revoking:
                    limit = started + min(self.commit_timeout, self.revoke_timeout / 2)
                elif any(r in name for r in _REBALANCE_ERRORS):
                    limit = started + max(self.commit_timeout, REBALANCE_PATIENCE)
                else:
                    limit = deadline
                if not any(r in name for r in _RETRY_ERRORS) or self.clock.monotonic() + delay > limit:
                    raise CheckpointThrottledError(f"shard {lease_key}: {op} failed: {name}") from None
            self.clock.sleep(delay)
            delay = min(delay * 2, 1.0)

    def checkpoint(self, lease: Lease, checkpoint: ExtendedSequenceNumber,
                   pending: ExtendedSequenceNumber | None = None) -> None:
        if checkpoint.is_sentinel:
            return  # nothing processed yet: there is no offset to commit
        topic, partition = parse_shard(lease.lease_key)
        offset = self.client.next_offset(topic, partition, int(checkpoint.sequence_number))
        a = self._current(lease)
        if a is not None and a.checkpoint == checkpoint and a.committed > offset:
            offset = a.committed  # the same checkpoint again: never move the commit back
        self._commit(lease, offset, f"{PENDING_PREFIX}{pending.sequence_number}" if pending else "", "checkpoint")
        with self._lock:
            if a is not None and self._held.get(lease.lease_key) is a:
                a.checkpoint, a.committed, a.pending = checkpoint, offset, pending is not None

    def prepare_checkpoint(self, lease: Lease, pending: ExtendedSequenceNumber) -> None:
        """Kafka has no pending offset: the current offset is committed again carrying the pending
        one in its metadata, where the next owner finds it (``InitializationInput.pending_checkpoint``)."""
        a = self._current(lease)
        current = a.checkpoint if a else None
        if a is None or current is None or current.is_sentinel:
            if not self.is_held(lease):
                raise LeaseLostError(f"shard {lease.lease_key}: prepare_checkpoint refused: not assigned here")
            return
        offset = max(a.committed, int(current.sequence_number) + 1)
        self._commit(lease, offset, f"{PENDING_PREFIX}{pending.sequence_number}", "prepare_checkpoint")
        with self._lock:
            a.pending = True

    def _position_moved(self, topic: str, partition: int, position: int) -> None:
        """The poll thread saw a partition's position move past its last fetched record (a
        transaction's marker arrived after its records were processed): if every delivered record
        is checkpointed, commit the position, as Kafka's clients do, so the lag reaches 0. On the
        poll thread, where rebalance callbacks also run: the assignment cannot change meanwhile."""
        key = shard_key(topic, partition)
        with self._lock:
            a = self._held.get(key)
            if a is None or a.revoking or a.pending or a.checkpoint is None or a.checkpoint.is_sentinel:
                return
            last = int(a.checkpoint.sequence_number)
            if a.committed >= position or self.client.next_offset(topic, partition, last) != position:
                return  # a record after the checkpoint is not processed yet, or nothing to move
            a.committed = position
        from confluent_kafka import TopicPartition

        try:
            self.client.consumer.commit(offsets=[TopicPartition(topic, partition, position)], asynchronous=True)
        except Exception as exc:  # best effort: the next checkpoint commits it anyway
            self._log.debug("committing the position past control records failed", shard_id=key, error=str(exc))

    def release(self, lease: Lease) -> bool:
        with self._lock:
            a = self._held.get(lease.lease_key)
            if a is None or a.lease is not lease:
                return False
            del self._held[lease.lease_key]
        a.released.set()
        return True

    def forget(self, lease: Lease, reason: str = "") -> None:
        if self.release(lease):
            self._log.warning("partition lost", shard_id=lease.lease_key, reason=reason)

    def mark_halted(self, lease: Lease, reason: str | None) -> None:
        """Nothing to write: the group has no lease rows (the worker's health shows the halt)."""

    def hold_off(self, lease_key: str, seconds: float) -> None:
        """The group decides assignments; a halted partition stays until the worker restarts."""

    def health(self) -> tuple[bool, str]:
        return self.client.health()
