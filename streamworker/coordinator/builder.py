"""The builder: turns a WorkerConfig into the parts of a worker. The only place that branches on
the configuration's source, coordinator, retrieval and multi-stream settings.

Each branch imports its own modules, so a Kafka worker never loads boto3 and a Kinesis worker
never loads confluent-kafka (about 25 MB of resident memory each)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import structlog

from streamworker.clock import Clock
from streamworker.config import WorkerConfig
from streamworker.consumer.event_loop import EventLoopThread
from streamworker.consumer.progress import ConsumerSettings
from streamworker.consumer.shard_consumer import ShardConsumer
from streamworker.dead_letter.shard import GuardLimits
from streamworker.dead_letter.sinks import DeadLetterSink, JsonlSink, parse_spec
from streamworker.errors import ConfigError, SourceError
from streamworker.kafka.keys import topic_of
from streamworker.leases.base import (
    Coordinator,
    LeaseListener,
    LeaseTableCoordinator,
    ShardFigures,
    ShardLineage,
)
from streamworker.leases.keys import stream_name, stream_of
from streamworker.leases.lease import Lease
from streamworker.sources.base import Source

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_kinesis.client import KinesisClient

    from streamworker.coordinator.shard_sync import ShardSync
    from streamworker.coordinator.streams import StreamTracker
    from streamworker.kafka.client import KafkaClient
    from streamworker.kafka.source import KafkaSource
    from streamworker.leases.dynamodb.fleet import Kcl3Fleet
    from streamworker.leases.dynamodb.table import LeaseTable
    from streamworker.sources.kinesis.calls import ReaderStats
    from streamworker.sources.kinesis.reader import KinesisSource


def make_client(service: str, session: boto3.session.Session | None = None, endpoint_url: str | None = None) -> Any:
    """A boto3 client with streamworker's timeouts; endpoint and region come from boto3's own
    settings unless given."""
    import botocore.config
    import botocore.exceptions

    from streamworker.aws.session import new_session

    cfg = botocore.config.Config(retries={"mode": "standard", "max_attempts": 3},
                                 connect_timeout=5, read_timeout=30, max_pool_connections=POOL.get(service, 50))
    kwargs: dict[str, Any] = {"config": cfg}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    try:
        return (session or new_session()).client(service, **kwargs)  # type: ignore[call-overload]
    except botocore.exceptions.NoRegionError:
        raise ConfigError(NO_REGION) from None


#: Connections kept per client. Every shard a worker holds reads Kinesis on a thread of its own: a
#: pool smaller than that opened and closed a connection (a TLS handshake on AWS) for most reads
#: beyond it ("Connection pool is full, discarding connection", 250 shards and up). Only the
#: connections in use are opened; the figure is a ceiling.
POOL = {"kinesis": 2000, "dynamodbstreams": 2000}

#: The one line a missing region gets (exit 2).
NO_REGION = ("no AWS region: pass --region, or set AWS_REGION (or AWS_DEFAULT_REGION), or a region in your "
             "AWS profile")


@dataclass
class Clients:
    """Clients given by the caller (tests, embedding applications); None: built from boto3's settings."""

    kinesis: KinesisClient | None = None
    dynamodb: DynamoDBClient | None = None
    session: boto3.session.Session | None = None
    kafka_consumer_factory: Callable[[dict[str, Any]], Any] | None = None
    #: DynamoDB Streams (a boto3 ``dynamodbstreams`` client)
    streams: Any = None


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
    #: The shard sync the scheduler runs periodically (lease tables only).
    sync: ShardSync | None
    #: The Kafka client, and whether the worker itself starts and stops its poll loop (leases in
    #: DynamoDB, partitions assigned by us; a group coordinator owns it otherwise).
    kafka: KafkaClient | None
    owns_kafka_poll: bool
    #: Run in order at start: each raises SourceError with one line (a missing stream or topic,
    #: an unreachable endpoint, a lease table that cannot be created or is in KCL 3 leader mode).
    start_checks: list[Callable[[], object]]
    kinesis_sources: Callable[[], list[KinesisSource]]
    #: A CloudWatch client for KCL's metrics (``cloudwatch_metrics``), else None.
    cloudwatch: Any = None

    def source_for(self, lease: Lease) -> Source:
        if self.streams is not None:
            return self.streams.source_of(stream_of(lease.lease_key) or "")
        return self.source

    def lag(self, consumer: ShardConsumer) -> int | None:
        if self.kafka is None:
            return None
        from streamworker.kafka.lag import kafka_lag

        return kafka_lag(self.kafka, consumer)

    def reader_stats(self) -> ReaderStats | None:
        """Read throttles, retries and expired iterators of every Kinesis stream read."""
        stats = [s.stats for s in self.kinesis_sources()]
        if not stats:
            return None
        from streamworker.sources.kinesis.calls import ReaderStats

        return ReaderStats.total(stats)


def processor_name(config: WorkerConfig, lease: Lease) -> str:
    """The stream or topic whose processor (``processors`` in the config) runs a lease."""
    if config.source == "kinesis":
        return stream_of(lease.lease_key) or stream_name(config.stream or "")
    if config.source == "dynamodb-streams":
        return config.table or config.stream or ""
    return topic_of(lease.lease_key)


@dataclass
class _Sources:
    source: Source
    streams: StreamTracker | None
    start_checks: list[Callable[[], object]]
    kinesis: Any = None
    kafka: KafkaClient | None = None
    kafka_source: KafkaSource | None = None
    kinesis_source: KinesisSource | None = None


def _kinesis(config: WorkerConfig, clients: Clients, clock: Clock,
             on_stream_retired: Callable[[str], None]) -> _Sources:
    from streamworker.coordinator.streams import StreamTracker
    from streamworker.sources.kinesis.fanout import FanoutSource
    from streamworker.sources.kinesis.reader import KinesisSource, list_stream_names

    kinesis = clients.kinesis or make_client("kinesis", clients.session)

    def kinesis_source(stream: str) -> KinesisSource:
        if config.retrieval == "fanout":
            return FanoutSource(kinesis, stream, config.application_name, clock=clock,
                                max_records=config.max_records, idle_time=config.idle_time_between_reads)
        return KinesisSource(kinesis, stream, max_records=config.max_records,
                             idle_time=config.idle_time_between_reads, clock=clock)

    names = config.stream_names
    source = kinesis_source(names[0] if names else "")
    if not config.multi_stream:
        return _Sources(source, None, [source.describe], kinesis=kinesis, kinesis_source=source)
    streams = StreamTracker(kinesis_source, names, config.stream_pattern,
                            list_streams=lambda: list_stream_names(kinesis), on_retired=on_stream_retired,
                            log_context={"worker_id": config.worker_id, "stream": config.stream_label})
    return _Sources(source, streams, [kinesis_source(n).describe for n in names], kinesis=kinesis)


def _dynamodb_streams(config: WorkerConfig, clients: Clients, clock: Clock) -> _Sources:
    from streamworker.sources.dynamodb_streams import MAX_RECORDS, StreamRecord, StreamsAsKinesis, stream_arn
    from streamworker.sources.kinesis.reader import KinesisSource

    streams = clients.streams or make_client("dynamodbstreams", clients.session)
    arn = stream_arn(clients.dynamodb or make_client("dynamodb", clients.session), streams,
                     config.table or config.stream or "")
    source = KinesisSource(StreamsAsKinesis(streams), arn, max_records=min(config.max_records, MAX_RECORDS),  # type: ignore[arg-type]
                           idle_time=config.idle_time_between_reads, clock=clock, record_type=StreamRecord)
    return _Sources(source, None, [source.describe], kinesis_source=source)


def _kafka(config: WorkerConfig, clients: Clients, clock: Clock) -> _Sources:
    from streamworker.kafka.client import KafkaClient
    from streamworker.kafka.conf import kafka_conf
    from streamworker.kafka.source import KafkaSource

    kafka = KafkaClient(kafka_conf(config), consumer_factory=clients.kafka_consumer_factory,
                        buffer_bytes=config.kafka_buffer_bytes, clock=clock, unreachable_after=config.failover_time)
    source = KafkaSource(kafka, config.topics, config.topic_pattern, max_records=config.max_records,
                         wait=min(config.idle_time_between_reads, 0.5),
                         assign_on_open=config.coordinator_kind == "dynamodb")
    return _Sources(source, None, [source.describe], kafka=kafka, kafka_source=source)


def _prepare_table(table: LeaseTable, kcl3: Kcl3Fleet, client_version: str) -> Callable[[], None]:
    def prepare() -> None:
        import botocore.exceptions

        try:
            table.ensure_table()
        except (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError):
            raise SourceError(f"cannot reach DynamoDB at {table.client.meta.endpoint_url}") from None
        except botocore.exceptions.ClientError as exc:
            raise SourceError(f"lease table {table.table_name!r}: {exc}") from None
        if client_version == "3x":
            kcl3.start_in_3x()
        else:
            kcl3.refresh()

    return prepare


def build(config: WorkerConfig, listener: LeaseListener, *, clock: Clock, clients: Clients,
          figures_of: Callable[[str], ShardFigures | None], event_loop: EventLoopThread,
          on_stream_retired: Callable[[str], None]) -> WorkerParts:
    """The parts of a worker for ``config``; ``listener`` receives the coordinator's lease events."""
    if clients.session is None and config.role_arn:  # every AWS client signs as the assumed role
        from streamworker.aws.credentials import CredentialSpec, session_for

        clients = replace(clients, session=session_for(CredentialSpec(
            profile=config.profile, role_arn=config.role_arn, session_name=config.role_session_name,
            external_id=config.external_id), config.region, config.endpoint_url))
    elif clients.session is None and (config.source != "kafka" or config.coordinator_kind == "dynamodb"):
        from streamworker.aws.session import new_session

        # one session for all of the worker's AWS clients: botocore keeps its endpoint data and
        # service models per session (two sessions cost ~7 MB more than one)
        clients = replace(clients, session=new_session(config.region, config.profile, config.endpoint_url))
    if config.source == "kinesis":
        read = _kinesis(config, clients, clock, on_stream_retired)
    elif config.source == "dynamodb-streams":
        read = _dynamodb_streams(config, clients, clock)
    else:
        read = _kafka(config, clients, clock)
    source, streams = read.source, read.streams
    start_checks = list(read.start_checks)

    table: LeaseTable | None = None
    sync: ShardSync | None = None
    coordinator: Coordinator
    lease_coordinator: LeaseTableCoordinator | None = None
    if config.coordinator_kind == "dynamodb":
        from streamworker.coordinator.shard_sync import ShardSync
        from streamworker.leases.dynamodb.coordinator import DynamoDBCoordinator
        from streamworker.leases.dynamodb.cpu import platform_cpu
        from streamworker.leases.dynamodb.fleet import Kcl3Fleet
        from streamworker.leases.dynamodb.former_streams import FormerStreamLeases
        from streamworker.leases.dynamodb.kcl3 import Kcl3Reader
        from streamworker.leases.dynamodb.table import LeaseTable
        from streamworker.leases.dynamodb.worker_metrics import WorkerMetrics

        dynamodb = clients.dynamodb or make_client("dynamodb", clients.session)
        table = LeaseTable(dynamodb, config.table_name, clock=clock)
        kcl3 = Kcl3Fleet(table, config.worker_id, Kcl3Reader(dynamodb, config.application_name, table),
                         lambda: WorkerMetrics(config.worker_id, platform_cpu()[1]), clock,
                         failover_time=config.failover_time, max_leases=config.max_leases_for_worker,
                         log=structlog.get_logger("streamworker.kcl3").bind(worker_id=config.worker_id))
        start_checks.append(_prepare_table(table, kcl3, config.client_version))
        dynamo = DynamoDBCoordinator(
            table, config.worker_id, listener, failover_time=config.failover_time,
            take_interval=config.take_interval, steady_take_interval=config.steady_take_interval,
            max_leases=config.max_leases_for_worker, figures_of=figures_of,
            max_steal=config.max_leases_to_steal_at_one_time, clock=clock, stream=config.stream_label,
            checkpoint_mirror=read.kafka_source.mirror_checkpoint if read.kafka_source is not None else None,
            stream_name=stream_name(config.stream or "") if config.source == "kinesis" else None,
            kcl3=kcl3,
        )
        if config.multi_stream:
            dynamo.streams = frozenset()
        former = None
        if config.multi_stream and config.delete_former_stream_leases_after is not None:
            former = FormerStreamLeases(table, config.delete_former_stream_leases_after, clock, config.failover_time)
        sync = ShardSync(table, dynamo, config.initial_position, source=None if streams else source,
                         streams=streams, former=former, cleanup=config.cleanup_finished_leases)
        coordinator = lease_coordinator = dynamo
    else:
        from streamworker.leases.kafka_group import KafkaGroupCoordinator

        assert read.kafka_source is not None  # the config allows kafka-group only for Kafka
        coordinator = KafkaGroupCoordinator(
            read.kafka_source, config.worker_id, listener, initial_position=config.initial_position,
            initial_timestamp=config.initial_timestamp, revoke_timeout=config.shutdown_timeout,
            stream=config.stream_label, clock=clock)

    def kinesis_sources() -> list[KinesisSource]:
        if streams is not None:
            return list(streams.sources.values())
        return [read.kinesis_source] if read.kinesis_source is not None else []

    settings = ConsumerSettings(
        event_loop=event_loop,
        dead_letter=dead_letter_sink(config, read.kinesis, clients.session),
        max_pending_batches=config.max_pending_batches, processor_retries=config.processor_retries,
        parent_poll_interval=config.parent_poll_interval,
        call_process_records_even_for_empty_list=config.call_process_records_even_for_empty_list,
        initial_timestamp=config.initial_timestamp, stream=config.stream_label, worker_id=config.worker_id,
        release_halted_after=config.release_halted_after, read_ahead=config.source != "kafka",
        checkpoint_interval=config.checkpoint_interval, checkpoint_every=config.checkpoint_every,
        dead_letter_failures=config.on_error in ("dead-letter", "bisect"), bisect=config.on_error == "bisect",
        max_record_age=config.max_record_age, parallelism=config.parallelism,
        shutdown_timeout=config.shutdown_timeout,
        dead_letter_guard=GuardLimits(config.dead_letter_max_consecutive, config.dead_letter_max_ratio),
    )
    return WorkerParts(
        coordinator=coordinator, lease_coordinator=lease_coordinator, lineage=lease_coordinator,
        settings=settings, source=source, streams=streams, table=table, sync=sync, kafka=read.kafka,
        owns_kafka_poll=read.kafka is not None and config.coordinator_kind == "dynamodb",
        start_checks=start_checks, kinesis_sources=kinesis_sources,
        cloudwatch=_cloudwatch(config, clients) if config.cloudwatch_metrics else None)


def _cloudwatch(config: WorkerConfig, clients: Clients) -> Any:
    """The client KCL's metrics go out through: the worker's session (its role, profile, region)."""
    from streamworker.aws.session import new_session

    return make_client("cloudwatch", clients.session or new_session(config.region, config.profile,
                                                                     config.endpoint_url))


def dead_letter_sink(config: WorkerConfig, kinesis: Any, session: boto3.session.Session | None
                     ) -> DeadLetterSink | None:
    if not config.dead_letter or (config.on_error == "halt" and config.max_record_age is None):
        return None
    kind, target = parse_spec(config.dead_letter)
    if kind == "file":
        return JsonlSink(target, config.stream_label)
    if kind == "kinesis":
        from streamworker.dead_letter.sinks import KinesisSink

        return KinesisSink(kinesis or make_client("kinesis", session), target, config.stream_label)
    if kind == "sqs":
        from streamworker.dead_letter.sinks import SqsSink

        return SqsSink(make_client("sqs", session), target, config.stream_label)
    from streamworker.dead_letter.sinks import KafkaSink
    from streamworker.kafka.conf import kafka_conf

    return KafkaSink(kafka_conf(config), target, config.stream_label)
