"""The builder: turns a WorkerConfig into the parts of a worker. The only place that branches on
the configuration's source, coordinator, retrieval and multi-stream settings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config

from .aio import EventLoopThread
from .clock import Clock
from .config import WorkerConfig
from .coordinators.base import Coordinator, LeaseListener, LeaseTableCoordinator, ShardLineage
from .coordinators.dynamodb import DynamoDBCoordinator
from .coordinators.former_streams import FormerStreamLeases
from .coordinators.kafka_group import KafkaGroupCoordinator
from .coordinators.kcl3 import Kcl3Guard
from .coordinators.keys import stream_of, topic_of
from .coordinators.lease import Lease
from .coordinators.lease_table import LeaseTable
from .dead_letter import DeadLetterSink, JsonlSink, KafkaSink, KinesisSink, parse_spec
from .ops.lag import kafka_lag
from .records import InitialPosition
from .shard_consumer import ShardConsumer
from .shard_state import ConsumerSettings
from .shard_sync import ShardSync
from .sources.base import Source
from .sources.fanout import FanoutSource
from .sources.kafka import KafkaClient, KafkaSource
from .sources.kinesis import KinesisSource, ReaderStats, list_stream_names
from .streams import StreamTracker, stream_name


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


@dataclass
class Clients:
    """Clients given by the caller (tests, embedding applications); None: built from boto3's settings."""

    kinesis: Any = None
    dynamodb: Any = None
    session: boto3.session.Session | None = None
    kafka_consumer_factory: Callable[[dict[str, Any]], Any] | None = None


@dataclass
class WorkerParts:
    """What one worker is made of."""

    coordinator: Coordinator
    #: The same coordinator where it keeps a lease table (shard sync, lineage), else None.
    lease_coordinator: LeaseTableCoordinator | None
    lineage: ShardLineage | None
    settings: ConsumerSettings
    #: The stream's (or topics') source; a multi-stream worker's live in ``streams``.
    source: Source
    streams: StreamTracker | None
    table: LeaseTable | None
    kcl3: Kcl3Guard | None
    #: The shard sync the scheduler runs periodically (lease tables only).
    sync: ShardSync | None
    #: The Kafka client, and whether the worker itself starts and stops its poll loop (leases in
    #: DynamoDB, partitions assigned by us; a group coordinator owns it otherwise).
    kafka: KafkaClient | None
    owns_kafka_poll: bool
    #: Checked at start: each raises SourceError with one line if its stream is missing.
    start_checks: list[Callable[[], object]]
    kinesis_sources: Callable[[], list[KinesisSource]]

    def source_for(self, lease: Lease) -> Source:
        if self.streams is not None:
            return self.streams.source_of(stream_of(lease.lease_key) or "")
        return self.source

    def lag(self, consumer: ShardConsumer) -> int | None:
        return kafka_lag(self.kafka, consumer) if self.kafka is not None else None

    def reader_stats(self) -> ReaderStats | None:
        """Read throttles, retries and expired iterators of every Kinesis stream read."""
        stats = [s.stats for s in self.kinesis_sources()]
        if not stats:
            return None
        return ReaderStats.total(stats)


def processor_name(config: WorkerConfig, lease: Lease) -> str:
    """The stream or topic whose processor (``processors`` in the config) runs a lease."""
    if config.source == "kinesis":
        return stream_of(lease.lease_key) or stream_name(config.stream or "")
    return topic_of(lease.lease_key)


def build(config: WorkerConfig, listener: LeaseListener, *, clock: Clock, clients: Clients,
          records_of: Callable[[str], int | None], event_loop: EventLoopThread,
          on_stream_retired: Callable[[str], None]) -> WorkerParts:
    """The parts of a worker for ``config``; ``listener`` receives the coordinator's lease events."""
    kinesis: Any = None
    kafka: KafkaClient | None = None
    streams: StreamTracker | None = None

    def kinesis_source(stream: str) -> KinesisSource:
        if config.retrieval == "fanout":
            return FanoutSource(kinesis, stream, config.application_name, clock=clock,
                                max_records=config.max_records, idle_time=config.idle_time_between_reads)
        return KinesisSource(kinesis, stream, max_records=config.max_records,
                             idle_time=config.idle_time_between_reads, clock=clock)

    source: Source
    if config.source == "kinesis":
        kinesis = clients.kinesis or make_client("kinesis", clients.session)
        names = config.stream_names
        source = kinesis_source(names[0] if names else "")
        if config.multi_stream:
            streams = StreamTracker(kinesis_source, names, config.stream_pattern,
                                    list_streams=lambda: list_stream_names(kinesis), on_retired=on_stream_retired,
                                    log_context={"worker_id": config.worker_id, "stream": config.stream_label})
            start_checks: list[Callable[[], object]] = [kinesis_source(n).describe for n in names]
        else:
            start_checks = [source.describe]
    else:
        kafka = KafkaClient(kafka_conf(config), consumer_factory=clients.kafka_consumer_factory,
                            buffer_bytes=config.kafka_buffer_bytes, clock=clock)
        source = KafkaSource(kafka, config.topics, config.topic_pattern, max_records=config.max_records,
                             wait=min(config.idle_time_between_reads, 0.5),
                             assign_on_open=config.coordinator_kind == "dynamodb")
        start_checks = [source.describe]

    table: LeaseTable | None = None
    kcl3: Kcl3Guard | None = None
    sync: ShardSync | None = None
    coordinator: Coordinator
    lease_coordinator: DynamoDBCoordinator | None = None
    if config.coordinator_kind == "dynamodb":
        dynamodb = clients.dynamodb or make_client("dynamodb", clients.session)
        table = LeaseTable(dynamodb, config.table_name, clock=clock)
        kcl3 = Kcl3Guard(dynamodb, config.application_name)
        lease_coordinator = DynamoDBCoordinator(
            table, config.worker_id, listener, failover_time=config.failover_time,
            take_interval=config.take_interval, steady_take_interval=config.steady_take_interval,
            max_leases=config.max_leases_for_worker, records_of=records_of,
            max_steal=config.max_leases_to_steal_at_one_time, clock=clock, stream=config.stream_label,
            checkpoint_mirror=source.mirror_checkpoint if isinstance(source, KafkaSource) else None,
            stream_name=stream_name(config.stream or "") if config.source == "kinesis" else None,
            mode_check=kcl3.check,
        )
        if config.multi_stream:
            lease_coordinator.streams = frozenset()
        former = None
        if config.multi_stream and config.delete_former_stream_leases_after is not None:
            former = FormerStreamLeases(table, config.delete_former_stream_leases_after, clock, config.failover_time)
        sync = ShardSync(table, lease_coordinator, config.initial_position, source=None if streams else source,
                         streams=streams, former=former, cleanup=config.cleanup_finished_leases)
        coordinator = lease_coordinator
    else:
        assert isinstance(source, KafkaSource)
        coordinator = KafkaGroupCoordinator(
            source, config.worker_id, listener, initial_position=config.initial_position,
            initial_timestamp=config.initial_timestamp, revoke_timeout=config.shutdown_timeout,
            stream=config.stream_label, clock=clock)

    def kinesis_sources() -> list[KinesisSource]:
        if streams is not None:
            return list(streams.sources.values())
        return [source] if isinstance(source, KinesisSource) else []

    settings = ConsumerSettings(
        event_loop=event_loop,
        dead_letter=dead_letter_sink(config, kinesis, clients.session),
        max_pending_batches=config.max_pending_batches, processor_retries=config.processor_retries,
        parent_poll_interval=config.parent_poll_interval,
        call_process_records_even_for_empty_list=config.call_process_records_even_for_empty_list,
        initial_timestamp=config.initial_timestamp, stream=config.stream_label, worker_id=config.worker_id,
        release_halted_after=config.release_halted_after, read_ahead=config.source == "kinesis",
    )
    return WorkerParts(
        coordinator=coordinator, lease_coordinator=lease_coordinator, lineage=lease_coordinator,
        settings=settings, source=source, streams=streams, table=table, kcl3=kcl3, sync=sync, kafka=kafka,
        owns_kafka_poll=kafka is not None and config.coordinator_kind == "dynamodb",
        start_checks=start_checks, kinesis_sources=kinesis_sources)


def dead_letter_sink(config: WorkerConfig, kinesis: Any, session: boto3.session.Session | None
                     ) -> DeadLetterSink | None:
    if config.on_error != "dead-letter" or not config.dead_letter:
        return None
    kind, target = parse_spec(config.dead_letter)
    if kind == "file":
        return JsonlSink(target, config.stream_label)
    if kind == "kinesis":
        return KinesisSink(kinesis or make_client("kinesis", session), target, config.stream_label)
    return KafkaSink(kafka_conf(config), target, config.stream_label)
