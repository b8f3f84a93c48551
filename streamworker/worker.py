"""The Worker: wiring only. It discovers shards, lets the coordinator decide ownership and runs
one ShardConsumer per owned shard. Lease events arrive on a queue and are handled on the
scheduler thread, so the coordinator never blocks on a processor."""

from __future__ import annotations

import dataclasses
import queue
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
import botocore.config
import botocore.exceptions
import structlog

from .aio import EventLoopThread
from .clock import Clock, SystemClock
from .config import WorkerConfig
from .coordinators.dynamodb import DynamoDBCoordinator
from .coordinators.former_streams import FormerStreamLeases
from .coordinators.kafka_group import KafkaGroupCoordinator
from .coordinators.kcl3 import Kcl3Guard, Kcl3LeaderMode
from .coordinators.lease import Lease, key_prefix_of, stream_of
from .coordinators.lease_table import LeaseTable
from .dead_letter import DeadLetterSink, JsonlSink, KafkaSink, KinesisSink, parse_spec
from .errors import ConfigError, SourceError
from .http import OpsServer
from .metrics import WorkerMetrics
from .processor import RecordProcessor
from .records import InitialPosition
from .shard_consumer import ConsumerSettings, ConsumerState, LeaseAccess, ShardConsumer
from .sources.base import ShardInfo, Source
from .sources.fanout import FanoutSource
from .sources.kafka import KafkaClient, KafkaSource
from .sources.kinesis import KinesisSource, ReaderStats

log = structlog.get_logger("streamworker.worker")

ProcessorFactory = Callable[[], RecordProcessor]


@dataclass(frozen=True)
class ShardStatus:
    shard_id: str
    state: str
    records: int
    last_sequence: str | None
    millis_behind_latest: int | None
    checkpoint: str


class Coordinator(LeaseAccess, Protocol):
    """What the scheduler needs from a coordinator (DynamoDB leases or the Kafka group)."""

    def start(self) -> None: ...

    def stop_taking(self) -> None: ...

    def stop(self, timeout: float = ...) -> None: ...

    def held_keys(self) -> list[str]: ...

    def ensure_leases(self, shards: Iterable[ShardInfo], initial_position: InitialPosition) -> list[str]: ...

    def health(self) -> tuple[bool, str]: ...


def kafka_conf(config: WorkerConfig) -> dict[str, Any]:
    """librdkafka settings: streamworker's defaults, then every -X property as given."""
    conf: dict[str, Any] = {
        "group.id": config.group_id or config.application_name,
        "client.id": config.worker_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "latest" if config.initial_position == InitialPosition.LATEST else "earliest",
        # librdkafka's default (1000 ms) stalls a consumer with a deep prefetch queue for ~1 s.
        "fetch.queue.backoff.ms": 20,
    }
    if config.bootstrap_servers:
        conf["bootstrap.servers"] = config.bootstrap_servers
    if config.static_membership:
        conf["group.instance.id"] = config.worker_id
    conf.update(config.kafka_properties)
    # failover_time is the group's session timeout: a member that stops heartbeating is out (and
    # its partitions reassigned) after it, as a lease expires. KIP-848 groups take the session
    # timeout from the broker (group.consumer.session.timeout.ms), not from the client.
    if str(conf.get("group.protocol", "classic")).lower() != "consumer":
        conf.setdefault("session.timeout.ms", int(config.failover_time * 1000))
        conf.setdefault("heartbeat.interval.ms", max(100, int(conf["session.timeout.ms"]) // 4))
    return conf


def make_client(service: str, session: boto3.session.Session | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 client with streamworker's timeouts; endpoint and region come from boto3's own
    settings unless given."""
    cfg = botocore.config.Config(retries={"mode": "standard", "max_attempts": 3},
                                 connect_timeout=5, read_timeout=30, max_pool_connections=50)
    kwargs: dict[str, Any] = {"config": cfg}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    return (session or boto3.session.Session()).client(service, **kwargs)  # type: ignore[call-overload]


class Worker:
    """Consumes one stream with a processor per owned shard.

    ``start()`` returns once the lease table and the stream are checked; ``request_shutdown()``
    begins a graceful stop (processors get ``shutdown_requested``, leases are released) and
    ``wait()`` returns when it is complete.
    """

    def __init__(
        self,
        config: WorkerConfig,
        processor_factory: ProcessorFactory | None,
        *,
        kinesis_client: Any = None,
        dynamodb_client: Any = None,
        session: boto3.session.Session | None = None,
        kafka_consumer_factory: Callable[[dict[str, Any]], Any] | None = None,
        clock: Clock | None = None,
        processor_factories: Mapping[str, ProcessorFactory] | None = None,
    ) -> None:
        self.config = config
        self.worker_id = config.worker_id
        self._factory = processor_factory
        #: Per stream or topic (``processors`` in the config, or given here); others use the default.
        self._factories: dict[str, ProcessorFactory] = {}
        for name, spec in config.processors.items():
            from .loader import load_processor

            self._factories[name] = load_processor(spec)
        self._factories.update(processor_factories or {})
        if processor_factory is None and not self._factories:
            raise ConfigError("no processor given")
        self._clock = clock or SystemClock()
        self.kafka: KafkaClient | None = None
        self.source: Source
        #: A multi-stream worker's sources by stream name (its leases say which stream they are of).
        self.sources: dict[str, KinesisSource] = {}
        self._stream_prefixes: dict[str, str] = {}
        self._former: FormerStreamLeases | None = None
        self._wanted_streams: list[str] | None = None
        self._kinesis: Any = None
        if config.source == "kinesis":
            self._kinesis = kinesis_client or make_client("kinesis", session)
            names = config.stream_names
            self.source = self._kinesis_source(names[0] if names else "")
        else:
            self.kafka = KafkaClient(kafka_conf(config), consumer_factory=kafka_consumer_factory,
                                     buffer_bytes=config.kafka_buffer_bytes)
            self.source = KafkaSource(self.kafka, config.topics, config.topic_pattern,
                                      max_records=config.max_records, wait=min(config.idle_time_between_reads, 0.5),
                                      assign_on_open=config.coordinator_kind == "dynamodb")
        self.table: LeaseTable | None = None
        self.coordinator: Coordinator
        if config.coordinator_kind == "dynamodb":
            dynamodb = dynamodb_client or make_client("dynamodb", session)
            self.table = LeaseTable(dynamodb, config.table_name, clock=self._clock)
            self._kcl3 = Kcl3Guard(dynamodb, config.application_name)
            if config.multi_stream and config.delete_former_stream_leases_after is not None:
                self._former = FormerStreamLeases(self.table, config.delete_former_stream_leases_after, self._clock,
                                                  config.failover_time)
            self.coordinator = DynamoDBCoordinator(
                self.table, self.worker_id, self, failover_time=config.failover_time,
                take_interval=config.take_interval, steady_take_interval=config.steady_take_interval,
                max_leases=config.max_leases_for_worker, records_of=self._records_of,
                max_steal=config.max_leases_to_steal_at_one_time, clock=self._clock, stream=config.stream_label,
                checkpoint_mirror=self.source.mirror_checkpoint if isinstance(self.source, KafkaSource) else None,
                stream_name=(config.stream or "").rsplit("/", 1)[-1] if config.source == "kinesis" else None,
                mode_check=self._kcl3.check,
            )
            if config.multi_stream:
                self.coordinator.streams = frozenset()
        else:
            assert isinstance(self.source, KafkaSource)
            self.coordinator = KafkaGroupCoordinator(
                self.source, self.worker_id, self, initial_position=config.initial_position,
                initial_timestamp=config.initial_timestamp, revoke_timeout=config.shutdown_timeout,
                stream=config.stream_label)
        self._loop = EventLoopThread()
        self._settings = ConsumerSettings(
            event_loop=self._loop,
            dead_letter=self._dead_letter_sink(kinesis_client, session),
            max_pending_batches=config.max_pending_batches, processor_retries=config.processor_retries,
            parent_poll_interval=config.parent_poll_interval,
            call_process_records_even_for_empty_list=config.call_process_records_even_for_empty_list,
            initial_timestamp=config.initial_timestamp, stream=config.stream_label, worker_id=self.worker_id,
            release_halted_after=config.release_halted_after,
        )
        self.metrics = WorkerMetrics()
        self.metrics.attach(self)
        self._ops: OpsServer | None = None
        self._started = threading.Event()
        self._events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._consumers: dict[str, ShardConsumer] = {}
        self._lock = threading.Lock()
        self._shutting_down = threading.Event()
        self._stopped = threading.Event()
        #: Why the worker stopped on its own (the lease table refused it or is gone), if it did.
        self.failure: str | None = None
        self._thread: threading.Thread | None = None
        self._log = log.bind(worker_id=self.worker_id, stream=config.stream_label)

    def _dead_letter_sink(self, kinesis_client: Any, session: boto3.session.Session | None) -> DeadLetterSink | None:
        cfg = self.config
        if cfg.on_error != "dead-letter" or not cfg.dead_letter:
            return None
        kind, target = parse_spec(cfg.dead_letter)
        if kind == "file":
            return JsonlSink(target, cfg.stream_label)
        if kind == "kinesis":
            return KinesisSink(kinesis_client or make_client("kinesis", session), target, cfg.stream_label)
        return KafkaSink(kafka_conf(cfg), target, cfg.stream_label)

    def _check_hangs(self) -> None:
        """Report (once per call, with its stack) a processor call running past processor_timeout."""
        limit = self.config.processor_timeout
        if limit is None:
            return
        now = self._clock.monotonic()
        for c in self.consumers():
            call = c.current_call
            if call is None or now - call[1] < limit or c.hang_reported == call:
                continue
            c.hang_reported = call
            frame = sys._current_frames().get(c.thread_ident or -1)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else "(no stack)"
            self.metrics.hung.labels(c.label).inc()
            self._log.error("processor call is taking longer than processor_timeout", shard_id=c.shard_id,
                            call=call[0], running_for=round(now - call[1], 1), stack=stack)

    # -- LeaseListener (called on the coordinator thread) -------------------------------------

    def lease_acquired(self, lease: Lease) -> None:
        self._events.put(("acquired", lease))

    def lease_lost(self, lease_key: str) -> None:
        self._events.put(("lost", lease_key))

    def handoff_requested(self, lease_key: str) -> None:
        self._events.put(("handoff", lease_key))

    def coordinator_failed(self, error: str) -> None:
        if self.failure is None:
            self.failure = error
        self._events.put(("fatal", error))

    # -- lifecycle ------------------------------------------------------------------------------

    def _kinesis_source(self, stream: str) -> KinesisSource:
        if self.config.retrieval == "fanout":
            return FanoutSource(self._kinesis, stream, self.config.application_name, clock=self._clock,
                                max_records=self.config.max_records, idle_time=self.config.idle_time_between_reads)
        return KinesisSource(self._kinesis, stream, max_records=self.config.max_records,
                             idle_time=self.config.idle_time_between_reads, clock=self._clock)

    def set_streams(self, streams: Iterable[str]) -> None:
        """Replace the streams of a multi-stream worker while it runs (applied at once on the
        scheduler thread): new streams get leases and are consumed; a removed stream's shards get
        ``shutdown_requested``, checkpoint and are released, and its leases stay in the table."""
        if not self.config.multi_stream:
            raise ConfigError("set_streams needs a multi-stream worker (several streams or a stream pattern)")
        self._wanted_streams = list(streams)
        self._events.put(("sync", None))

    def _desired_streams(self) -> list[str]:
        names = list(self._wanted_streams if self._wanted_streams is not None else self.config.stream_names)
        if self.config.stream_pattern:
            pattern = re.compile(self.config.stream_pattern)
            args: dict[str, Any] = {}
            while True:  # NextToken where the service gives one, else the older start-name paging
                page = self._kinesis.list_streams(**args)
                listed = page.get("StreamNames", [])
                names += [n for n in listed if pattern.fullmatch(n) and n not in names]
                if not page.get("HasMoreStreams") or not listed:
                    break
                token = page.get("NextToken")
                args = {"NextToken": token} if token else {"ExclusiveStartStreamName": listed[-1]}
        return names

    def _sync_streams(self) -> set[str]:
        """Follow the wanted streams: add new ones, retire removed ones and the old incarnation of
        a re-created one (its creation epoch changed). Returns the wanted names that could not be
        described this time (their leases are left alone)."""
        assert isinstance(self.coordinator, DynamoDBCoordinator)
        wanted = self._desired_streams()
        wanted_names = {w.rsplit("/", 1)[-1] for w in wanted}
        unknown: set[str] = set()
        for stream in wanted:
            name = stream.rsplit("/", 1)[-1]
            source = self.sources.get(name) or self._kinesis_source(stream)
            try:
                prefix = source.stream_identifier() + ":"
            except (SourceError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                unknown.add(name)
                self._log.warning("cannot describe a stream; will retry", failed=name, error=str(exc))
                continue
            if self._stream_prefixes.get(name) == prefix:
                continue
            if name in self.sources:
                self._retire_stream(name, "re-created (new creation time)")
                source = self._kinesis_source(stream)  # the old one's fan-out consumer went with the old stream
            self._stream_prefixes[name] = prefix
            self.sources[name] = source
            self._log.info("stream added", added=name, prefix=prefix)
        for name in set(self.sources) - wanted_names:
            self._retire_stream(name, "removed")
        self.coordinator.streams = frozenset(self._stream_prefixes.values())
        return unknown

    def _retire_stream(self, name: str, why: str) -> None:
        prefix = self._stream_prefixes.pop(name)
        del self.sources[name]
        for c in self.consumers():
            if c.lease.lease_key.startswith(prefix):
                c.request_shutdown()
        self._log.info(f"stream {why}: its shards checkpoint and are released", removed=name, prefix=prefix)

    def _source_for(self, lease: Lease) -> Source:
        if self.config.multi_stream:
            return self.sources[stream_of(lease.lease_key) or ""]
        return self.source

    def _factory_for(self, lease: Lease) -> ProcessorFactory | None:
        if self.config.source == "kinesis":
            name = stream_of(lease.lease_key) or (self.config.stream or "").rsplit("/", 1)[-1]
        else:
            name = lease.lease_key.rsplit(":", 1)[0]
        return self._factories.get(name, self._factory)

    def reader_stats(self) -> ReaderStats | None:
        """Read throttles, retries and expired iterators of every Kinesis stream read."""
        sources: list[Source] = [*self.sources.values()] or [self.source]
        stats = [s.stats for s in sources if isinstance(s, KinesisSource)]
        if not stats:
            return None
        return ReaderStats(*(sum(getattr(st, f.name) for st in stats) for f in dataclasses.fields(ReaderStats)))

    def start(self) -> None:
        """Check the stream, create the lease table if needed, create leases, start threads.
        Raises SourceError for a missing stream or unreachable endpoint."""
        if not self.config.multi_stream:
            self.source.describe()
        for name in self.config.stream_names if self.config.multi_stream else ():
            self._kinesis_source(name).describe()  # a named stream missing at start is an error
        if self.table is not None:
            try:
                self.table.ensure_table()
            except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError):
                raise SourceError(f"cannot reach DynamoDB at {self.table.client.meta.endpoint_url}") from None
            except botocore.exceptions.ClientError as exc:
                raise SourceError(f"lease table {self.table.table_name!r}: {exc}") from None
            try:
                self._kcl3.check()
            except Kcl3LeaderMode as exc:
                raise SourceError(str(exc)) from None
        self.sync_shards()
        self._log.info("worker started", source=self.config.source, coordinator=self.config.coordinator_kind,
                       failover_time=self.config.failover_time)
        if self.kafka is not None and self.config.coordinator_kind == "dynamodb":
            self.kafka.start()  # assign() mode: the poll thread serves the partitions we lease
        self.coordinator.start()
        self._thread = threading.Thread(target=self._run, name=f"scheduler-{self.worker_id}", daemon=True)
        self._thread.start()
        if self.config.metrics_port is not None:
            self._ops = OpsServer(self, self.config.metrics_port, self.config.metrics_host).start()
            self._log.info("serving /metrics, /healthz and /readyz", port=self._ops.port)
        self._started.set()

    def sync_shards(self) -> None:
        if self.config.coordinator_kind == "kafka-group":
            return  # the group discovers partitions (and pattern-matched topics) itself
        assert isinstance(self.coordinator, DynamoDBCoordinator)
        assert self.table is not None
        unknown = self._sync_streams() if self.config.multi_stream else set()
        # Consistent: this scan decides which leases to create and which finished ones to delete.
        leases = self.table.list_leases(consistent=True)
        if self.config.multi_stream:
            for name, source in list(self.sources.items()):
                try:  # one failing stream must not hold up the others' new shards
                    shards = source.list_shards()
                except SourceError as exc:
                    self._log.warning("shard sync of one stream failed; will retry", failed=name, error=str(exc))
                    continue
                self.coordinator.ensure_leases(shards, self.config.initial_position,
                                               prefix=self._stream_prefixes[name], leases=leases)
            if self._former is not None:
                self._former.sweep([le for le in leases if stream_of(le.lease_key) not in unknown],
                                   set(self._stream_prefixes.values()))
        else:
            self.coordinator.ensure_leases(self.source.list_shards(), self.config.initial_position, leases=leases)
        if self.config.cleanup_finished_leases:
            self.coordinator.clean_finished(leases)

    def request_shutdown(self) -> None:
        """Begin a graceful shutdown; returns at once."""
        if not self._shutting_down.is_set():
            self._log.info("graceful shutdown requested")
            self._shutting_down.set()
            self._events.put(("shutdown", None))

    def wait(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        self.request_shutdown()
        return self.wait(timeout if timeout is not None else self.config.shutdown_timeout + 5)

    def run(self) -> None:
        """start() and block until the worker has stopped."""
        self.start()
        while not self._stopped.wait(0.5):
            pass

    # -- the scheduler thread ---------------------------------------------------------------------

    def _run(self) -> None:
        next_sync = self._clock.monotonic() + self.config.shard_sync_interval
        try:
            while True:
                timeout = max(0.05, min(0.5, next_sync - self._clock.monotonic()))
                try:
                    kind, payload = self._events.get(timeout=timeout)
                except queue.Empty:
                    kind, payload = "tick", None
                self._check_hangs()
                if kind == "acquired":
                    self._start_consumer(payload)
                elif kind == "lost":
                    c = self._consumer(payload)
                    if c is not None:
                        c.notify_lease_lost()
                elif kind == "handoff":
                    c = self._consumer(payload)
                    if c is not None:
                        c.request_shutdown()
                elif kind == "done":
                    assert isinstance(payload, ShardConsumer)
                    with self._lock:
                        if self._consumers.get(payload.lease.lease_key) is payload:
                            del self._consumers[payload.lease.lease_key]
                elif kind == "shutdown":
                    self._graceful_stop()
                    return
                elif kind == "fatal":
                    self._fatal_stop(str(payload))
                    return
                elif kind == "sync":
                    next_sync = self._clock.monotonic()
                if self._clock.monotonic() >= next_sync:
                    next_sync = self._clock.monotonic() + self.config.shard_sync_interval
                    try:
                        self.sync_shards()
                    except Exception as exc:
                        self._log.warning("shard sync failed; will retry", error=str(exc))
        finally:
            self._stopped.set()

    def _consumer(self, lease_key: str) -> ShardConsumer | None:
        with self._lock:
            return self._consumers.get(lease_key)

    def _start_consumer(self, lease: Lease) -> None:
        if self._shutting_down.is_set():
            self.coordinator.release(lease.lease_key)
            return
        with self._lock:
            old = self._consumers.get(lease.lease_key)
        if old is not None and not old.done:
            # A previous consumer of this shard (lease lost, then re-taken) must end first:
            # never two processors on one shard.
            old.notify_lease_lost()
            old.join(self.config.shutdown_timeout)
        factory = self._factory_for(lease)
        if self.config.multi_stream and key_prefix_of(lease.lease_key) not in self._stream_prefixes.values():
            self.coordinator.release(lease.lease_key)  # its stream was removed meanwhile
            return
        try:
            if factory is None:
                raise ConfigError(f"no processor for {lease.lease_key} (give processor or processors)")
            processor = factory()
        except Exception:
            self._log.exception("processor factory failed; releasing the lease", shard_id=lease.shard_id)
            self.coordinator.release(lease.lease_key)
            return
        consumer = ShardConsumer(lease, processor, self._source_for(lease), self.coordinator, self._settings,
                                 on_done=lambda c: self._events.put(("done", c)), clock=self._clock,
                                 metrics=self.metrics)
        with self._lock:
            self._consumers[lease.lease_key] = consumer
        consumer.start()

    def _graceful_stop(self) -> None:
        self.coordinator.stop_taking()
        self._end_consumers(lambda c: c.request_shutdown())
        # Anything acquired while stopping is handed straight back.
        for key in self.coordinator.held_keys():
            self.coordinator.release(key)
        self._stop_services()
        self._log.info("worker stopped")

    def _fatal_stop(self, error: str) -> None:
        """The lease table cannot be used: no lease can be renewed or checkpointed, so every
        shard ends as lost (its processor gets ``lease_lost``; records after its last checkpoint
        are delivered again after a restart) and the worker stops with ``failure`` set."""
        self._shutting_down.set()
        self._log.error("worker stopping: the lease table cannot be used", error=error)
        self._end_consumers(lambda c: c.notify_lease_lost())
        self._stop_services()

    def _end_consumers(self, end: Callable[[ShardConsumer], None]) -> None:
        """Tell every shard consumer to end, then wait for them within ``shutdown_timeout``."""
        with self._lock:
            consumers = list(self._consumers.values())
        for c in consumers:
            end(c)
        deadline = self._clock.monotonic() + self.config.shutdown_timeout
        for c in consumers:
            if not c.join(max(0.0, deadline - self._clock.monotonic())):
                self._log.warning("shard did not end in time; its lease will expire",
                                  shard_id=c.shard_id, state=c.state.value)

    def _stop_services(self) -> None:
        self.coordinator.stop()
        if self.kafka is not None and self.config.coordinator_kind == "dynamodb":
            self.kafka.stop()
        if self._ops is not None:
            self._ops.stop()
        self._loop.stop()

    # -- status -------------------------------------------------------------------------------------

    def _records_of(self, lease_key: str) -> int | None:
        with self._lock:
            c = self._consumers.get(lease_key)
        return c.progress.records if c is not None else None

    def consumers(self) -> list[ShardConsumer]:
        with self._lock:
            return [c for c in self._consumers.values() if not c.done]

    def kafka_lag(self, consumer: ShardConsumer) -> int | None:
        """Records of the partition not yet processed: its high watermark (librdkafka's cached
        one) less the next offset to process: after the last record processed, else the committed
        offset the shard started from, else the start of the partition (TRIM_HORIZON) or its end
        (LATEST). None until librdkafka knows the watermark."""
        shard_id = consumer.shard_id
        if self.kafka is None or ":" not in shard_id:
            return None
        topic, _, part = shard_id.rpartition(":")
        key = (topic, int(part))
        high = self.kafka.high_watermarks.get(key)
        if high is None:
            return None
        last = consumer.progress.last_sequence
        start = consumer.lease.checkpoint.sequence_number
        if last is not None and last.isdigit():
            next_offset = int(last) + 1
        elif start.isdigit():
            next_offset = int(start) + 1  # a checkpoint at N is a commit of N + 1
        elif start == "LATEST":
            return 0
        else:
            next_offset = self.kafka.low_watermarks.get(key, 0)
        return max(0, int(high) - next_offset)

    def healthy(self) -> tuple[bool, str]:
        """Liveness: the scheduler runs, the coordinator completes its cycles, and no shard is
        halted (a halted shard holds its lease while nothing is processed: a restart, or a
        fixed deployment, is what it needs)."""
        if self.failure is not None:
            return False, f"stopped: {self.failure}"
        if self._stopped.is_set():
            return False, "stopped"
        if self._thread is None or not self._thread.is_alive():
            return False, "scheduler not running"
        ok, why = self.coordinator.health()
        if not ok:
            return False, f"coordinator: {why}"
        halted = sorted((c.label, c.halt_reason or "") for c in self.consumers() if c.state == ConsumerState.HALTED)
        if halted:
            return False, f"{len(halted)} shard(s) halted: " + "; ".join(f"{k}: {why}" for k, why in halted)
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """Readiness: started, healthy, and not shutting down."""
        ok, why = self.healthy()
        if not ok:
            return ok, why
        if not self._started.is_set():
            return False, "starting"
        if self._shutting_down.is_set():
            return False, "shutting down"
        return True, f"ok, {len(self.coordinator.held_keys())} shards"

    def status(self) -> list[ShardStatus]:
        with self._lock:
            consumers = list(self._consumers.values())
        return sorted(
            (ShardStatus(c.shard_id, c.state.value, c.progress.records, c.progress.last_sequence,
                         c.progress.millis_behind_latest, str(c.checkpointer.last_checkpoint))
             for c in consumers if c.state != ConsumerState.DONE),
            key=lambda s: s.shard_id,
        )
