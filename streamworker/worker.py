"""The Worker: the public face of one consumer process. ``builder`` makes its parts from the
configuration, the ``Scheduler`` runs a ShardConsumer per owned shard, and ``ops`` reports on it;
the Worker only connects them and keeps the public API."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from streamworker.clock import Clock, SystemClock
from streamworker.config import WorkerConfig
from streamworker.consumer.event_loop import EventLoopThread
from streamworker.consumer.lanes import is_per_record
from streamworker.consumer.meters import WorkerMetrics
from streamworker.consumer.progress import ConsumerState
from streamworker.consumer.shard_consumer import ShardConsumer
from streamworker.coordinator.builder import Clients, build, processor_name
from streamworker.coordinator.scheduler import Scheduler
from streamworker.errors import ConfigError, StreamworkerError
from streamworker.leases.base import Coordinator, CoordinatorStats, ShardFigures
from streamworker.leases.lease import Lease
from streamworker.ops.cloudwatch import CloudWatchPublisher
from streamworker.ops.fleet import FleetView, LocalShard
from streamworker.ops.hangs import HangDetector
from streamworker.ops.kcl_metrics import KclMetrics, WorkerSampler, process_task
from streamworker.ops.metrics import attach as attach_metrics
from streamworker.ops.server import OpsServer
from streamworker.processor import RecordProcessor
from streamworker.sources.base import Source, SourceAccessDenied

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_kinesis.client import KinesisClient

    from streamworker.kafka.client import KafkaClient
    from streamworker.leases.dynamodb.table import LeaseTable
    from streamworker.ops.group_report import GroupView
    from streamworker.sources.kinesis.calls import ReaderStats
    from streamworker.sources.kinesis.reader import KinesisSource

__all__ = ["ProcessorFactory", "ShardStatus", "Worker"]

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
    #: Kafka: records of the partition not yet processed (None on Kinesis, or before the first fetch)
    lag: int | None = None


class Worker:
    """Consumes one stream (or several, or Kafka topics) with a processor per owned shard.

    ``start()`` returns once the lease table and the stream are checked; ``request_shutdown()``
    begins a graceful stop (processors get ``shutdown_requested``, leases are released) and
    ``wait()`` returns when it is complete.

    Clients given here (tests, embedding applications) are used as they are: a Kinesis client
    needs ``max_pool_connections`` of at least the shards the worker holds (each reads on a
    thread of its own); lease renewals and takes use at most half a DynamoDB client's pool at
    once. Without them the worker builds its own (2,000 and 50 connections), which also parse
    a record's arrival time to UTC in 0.6 us; a client given keeps botocore's parser, 9.6 us a
    record (about a tenth of the read path's CPU).
    """

    def __init__(
        self,
        config: WorkerConfig,
        processor_factory: ProcessorFactory | None,
        *,
        kinesis_client: KinesisClient | None = None,
        dynamodb_client: DynamoDBClient | None = None,
        session: boto3.session.Session | None = None,
        streams_client: Any = None,
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
            from streamworker.coordinator.processors import load_processor

            self._factories[name] = load_processor(spec)
        self._factories.update(processor_factories or {})
        if processor_factory is None and not self._factories:
            raise ConfigError("no processor given")
        if config.parallelism > 1:
            for name, f in [("processor", processor_factory), *self._factories.items()]:
                if isinstance(f, type) and not is_per_record(f):
                    raise ConfigError(f"parallelism {config.parallelism} needs a PerRecordProcessor (process_record: "
                                      f"one record at a time, so records of different keys can run at once); "
                                      f"{f.__name__} ({name}) is a RecordProcessor (process_records)")
        self._clock = clock or SystemClock()
        self._log = log.bind(worker_id=self.worker_id, stream=config.stream_label)
        self._loop = EventLoopThread()
        self.metrics = WorkerMetrics()
        self._parts = build(config, self, clock=self._clock,
                            clients=Clients(kinesis_client, dynamodb_client, session, kafka_consumer_factory,
                                            streams_client),
                            figures_of=self._figures_of, event_loop=self._loop,
                            on_stream_retired=self._stream_retired)
        self.coordinator: Coordinator = self._parts.coordinator
        self.table: LeaseTable | None = self._parts.table
        self.source: Source = self._parts.source
        self.kafka: KafkaClient | None = self._parts.kafka
        self._scheduler: Scheduler[ShardConsumer] = Scheduler(
            self.coordinator, self._make_consumer, shutdown_timeout=config.shutdown_timeout,
            sync=self._sync if self._parts.sync is not None else None, sync_interval=config.shard_sync_interval,
            on_tick=self._tick,
            on_stopped=self._stop_services, clock=self._clock, name=f"scheduler-{self.worker_id}",
            log_context={"worker_id": self.worker_id, "stream": config.stream_label})
        self._hangs = HangDetector(config.processor_timeout, self._clock, self.metrics, self._log)
        table = self.table
        self._fleet: FleetView | GroupView
        if config.coordinator_kind == "kafka-group" and self.kafka is not None:
            from streamworker.ops.group_report import GroupView, lazy_admin

            self._fleet = GroupView(config.application_name, str(self.kafka.conf.get("group.id")), config.topics,
                                    lazy_admin(self.kafka.conf), observer=self.worker_id, local=self._local_shards,
                                    clock=self._clock)
        else:
            self._fleet = FleetView(config.application_name, leases=table.list_leases if table is not None else None,
                                    malformed=(lambda: table.malformed) if table is not None else None,
                                    failover_time=config.failover_time, observer=self.worker_id,
                                    local=self._local_shards, clock=self._clock)
        attach_metrics(self.metrics, self)
        self._cloudwatch: CloudWatchPublisher | None = None
        if self._parts.cloudwatch is not None:
            kcl = KclMetrics(level=config.metrics_level, dimensions=config.metrics_enabled_dimensions,
                             max_series=config.metrics_max_queue_size, worker_id=self.worker_id)
            self.metrics.on_batch = process_task(kcl)
            self._cloudwatch = CloudWatchPublisher(
                self._parts.cloudwatch, config.metrics_namespace or config.application_name, kcl,
                interval=config.metrics_buffer_time, sample=WorkerSampler(self, self._recent_leases), log=self._log,
                registry=self.metrics.registry)
        self._ops: OpsServer | None = None
        self._started = False

    @property
    def sources(self) -> dict[str, KinesisSource]:
        """A multi-stream worker's sources by stream name (empty otherwise)."""
        return self._parts.streams.sources if self._parts.streams is not None else {}

    @property
    def failure(self) -> str | None:
        """Why the worker stopped on its own (the lease table refused it or is gone), if it did."""
        return self._scheduler.failure

    # -- LeaseListener (any thread: the scheduler queues them) ---------------------------------

    def lease_acquired(self, lease: Lease) -> None:
        self._scheduler.lease_acquired(lease)

    def lease_lost(self, lease_key: str) -> None:
        self._scheduler.lease_lost(lease_key)

    def handoff_requested(self, lease_key: str) -> None:
        self._scheduler.handoff_requested(lease_key)

    def coordinator_failed(self, error: str) -> None:
        self._scheduler.coordinator_failed(error)

    # -- lifecycle ------------------------------------------------------------------------------

    def set_streams(self, streams: Iterable[str]) -> None:
        """Replace the streams of a multi-stream worker while it runs (applied at once on the
        scheduler thread): new streams get leases and are consumed; a removed stream's shards get
        ``shutdown_requested``, checkpoint and are released, and its leases stay in the table."""
        if self._parts.streams is None:
            raise ConfigError("set_streams needs a multi-stream worker (several streams or a stream pattern)")
        self._parts.streams.set_streams(streams)
        self._scheduler.request_sync()

    def start(self) -> None:
        """Check the stream, create the lease table if needed, create leases, start threads.
        Raises SourceError for a missing stream or topic, an unreachable endpoint, or a lease
        table that cannot be created or is run by KCL 3 in leader mode."""
        if self.config.metrics_port is not None:  # first: a port in use fails before any lease is taken
            try:
                self._ops = OpsServer(self, self.metrics.registry, self.config.metrics_port, self.config.metrics_host,
                                      status_page=self.config.status_page)
            except OSError as exc:
                raise StreamworkerError(f"cannot serve metrics on {self.config.metrics_host}:{self.config.metrics_port} "
                                        f"(metrics_port, --metrics-port): {exc.strerror or exc}") from None
        try:
            for check in self._parts.start_checks:
                check()
            self.sync_shards()
        except BaseException:
            if self._ops is not None:
                self._ops.stop()
            raise
        self._log.info("worker started", source=self.config.source, coordinator=self.config.coordinator_kind,
                       failover_time=self.config.failover_time)
        if self._parts.owns_kafka_poll and self.kafka is not None:
            self.kafka.start()  # assign() mode: the poll thread serves the partitions we lease
        self.coordinator.start()
        self._scheduler.start()
        if self._cloudwatch is not None:
            self._cloudwatch.start()
            self._log.info("sending KCL's metrics to CloudWatch", namespace=self._cloudwatch.namespace,
                           level=self.config.metrics_level, every=self.config.metrics_buffer_time)
        if self._ops is not None:
            self._ops.start()
            host = self.config.metrics_host
            where = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::', '') else host}:{self._ops.port}/"
            if self.config.status_page:
                self._log.info(f"status page at {where}; /metrics, /healthz and /readyz beside it",
                               port=self._ops.port, host=host)
            else:
                self._log.info("serving /metrics, /healthz and /readyz (no status page)", port=self._ops.port,
                               host=host)
        self._started = True

    def sync_shards(self) -> None:
        """Create leases for new shards now (the scheduler also does this periodically)."""
        if self._parts.sync is not None:
            self._parts.sync()

    def request_shutdown(self) -> None:
        """Begin a graceful shutdown; returns at once."""
        self._scheduler.request_shutdown()

    def wait(self, timeout: float | None = None) -> bool:
        return self._scheduler.wait(timeout)

    def shutdown(self, timeout: float | None = None) -> bool:
        self.request_shutdown()
        return self.wait(timeout if timeout is not None else self.config.shutdown_timeout + 5)

    def run(self) -> None:
        """start() and block until the worker has stopped."""
        self.start()
        while not self._scheduler.wait(0.5):
            pass

    # -- the scheduler's callbacks (on its thread) -----------------------------------------------

    def _make_consumer(self, lease: Lease, on_done: Callable[[ShardConsumer], None]) -> ShardConsumer | None:
        streams = self._parts.streams
        if streams is not None and not streams.owns(lease.lease_key):
            self.coordinator.release(lease)  # its stream was removed meanwhile
            return None
        factory = self._factories.get(processor_name(self.config, lease), self._factory)
        try:
            if factory is None:
                raise ConfigError(f"no processor for {lease.lease_key} (give processor or processors)")
            processor = factory()
        except Exception:
            self._log.exception("processor factory failed; releasing the lease", shard_id=lease.shard_id)
            self.coordinator.release(lease)
            return None
        return ShardConsumer(lease, processor, self._parts.source_for(lease), self.coordinator,
                             self._parts.settings, on_done=on_done, clock=self._clock, metrics=self.metrics,
                             lineage=self._parts.lineage, on_source_denied=self._scheduler.source_failed)

    def _sync(self) -> None:
        assert self._parts.sync is not None
        try:
            self._parts.sync()
        except SourceAccessDenied as exc:  # a listing refused: no shard can be found any more
            self._scheduler.source_failed(str(exc))

    def _stream_retired(self, prefix: str) -> None:
        for c in self.consumers():
            if c.lease.lease_key.startswith(prefix):
                c.request_shutdown()

    def _tick(self) -> None:
        self._hangs.check(self.consumers())

    def _stop_services(self) -> None:
        if self._parts.owns_kafka_poll and self.kafka is not None:
            self.kafka.stop()
        if self._cloudwatch is not None:
            self._cloudwatch.stop()  # one last send: the figures up to the stop
        if self._ops is not None:
            self._ops.stop()
        self._loop.stop()

    # -- status (ops.WorkerView) ---------------------------------------------------------------------

    def _figures_of(self, lease_key: str) -> ShardFigures | None:
        c = self._scheduler.consumer(lease_key)
        if c is None:
            return None
        return ShardFigures(c.progress.records, c.progress.millis_behind_latest, c.progress.bytes)

    def _recent_leases(self) -> list[Lease] | None:
        """The lease table as the take cycle last scanned it (lease tables only)."""
        lc = self._parts.lease_coordinator
        return lc.recent_leases() if lc is not None else None

    def consumers(self) -> list[ShardConsumer]:
        return self._scheduler.consumers()

    def held_count(self) -> int:
        return len(self.coordinator.held_keys())

    def lease_stats(self) -> CoordinatorStats | None:
        return self.coordinator.stats

    def kafka_lag(self, consumer: ShardConsumer) -> int | None:
        """Records of the partition not yet processed (see ``kafka.lag``); None for Kinesis."""
        return self._parts.lag(consumer)

    def reader_stats(self) -> ReaderStats | None:
        """Read throttles, retries and expired iterators of every Kinesis stream read."""
        return self._parts.reader_stats()

    def status_document(self) -> dict[str, Any]:
        """The live status page's JSON: the application's leases and workers (ops/fleet.py)."""
        return self._fleet.document()

    def _local_shards(self) -> list[LocalShard]:
        return [LocalShard(c.lease.lease_key, c.state.value, c.progress.records, c.progress.millis_behind_latest,
                           self._parts.lag(c), str(c.checkpointer.last_checkpoint)) for c in self.consumers()]

    def healthy(self) -> tuple[bool, str]:
        """Liveness: the scheduler runs, the coordinator completes its cycles, no shard is halted
        (a halted shard holds its lease while nothing is processed: a restart, or a fixed
        deployment, is what it needs) and no processor call has run past ``processor_timeout``
        (healthy again once it returns)."""
        if self.failure is not None:
            return False, f"stopped: {self.failure}"
        if self._scheduler.stopped.is_set():
            return False, "stopped"
        if not self._scheduler.running:
            return False, "scheduler not running"
        ok, why = self.coordinator.health()
        if not ok:
            return False, f"coordinator: {why}"
        if self._parts.owns_kafka_poll and self.kafka is not None:  # leases in DynamoDB, records from Kafka
            ok, why = self.kafka.health()
            if not ok:
                return False, f"source: {why}"
        halted = sorted((c.label, c.halt_reason or "") for c in self.consumers() if c.state == ConsumerState.HALTED)
        if halted:
            return False, f"{len(halted)} shard(s) halted: " + "; ".join(f"{k}: {why}" for k, why in halted)
        hung = self._hangs.hung(self.consumers())
        if hung:  # a stuck processor holds its shard while nothing moves: a liveness probe restarts it
            return False, (f"{len(hung)} processor call(s) past processor_timeout "
                           f"({self.config.processor_timeout:g} s): " + "; ".join(hung))
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """Readiness: started, healthy, and not shutting down."""
        ok, why = self.healthy()
        if not ok:
            return ok, why
        if not self._started:
            return False, "starting"
        if self._scheduler.shutting_down.is_set():
            return False, "shutting down"
        return True, f"ok, {self.held_count()} shards"

    def status(self) -> list[ShardStatus]:
        return sorted(
            (ShardStatus(c.shard_id, c.state.value, c.progress.records, c.progress.last_sequence,
                         c.progress.millis_behind_latest, str(c.checkpointer.last_checkpoint), self._parts.lag(c))
             for c in self._scheduler.all_consumers() if c.state != ConsumerState.DONE),
            key=lambda s: s.shard_id,
        )
