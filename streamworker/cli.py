"""The ``streamworker`` command: ``run`` a processor, or the ``demo``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from .config import WorkerConfig
from .errors import ConfigError, SourceError, StreamworkerError
from .loader import load_processor
from .log import configure_logging
from .records import InitialPosition

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SIGNAL = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2
        self.exit(EXIT_USAGE, f"streamworker: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="streamworker", description="KCL-style stream consumers in pure Python.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run a RecordProcessor over a Kinesis stream or Kafka topics")
    run.add_argument("processor", nargs="?", help="MODULE:CLASS or path/to/file.py:CLASS")
    run.add_argument("--config", help="TOML file with settings (flags and STREAMWORKER_* env win)")
    run.add_argument("--properties", help="a KCL MultiLangDaemon .properties file (its executableName runs "
                                          "as a MultiLang child per shard unless PROCESSOR is given)")
    run.add_argument("--multilang-protocol", choices=["v1", "v2"],
                     help="MultiLang messages for the child: v2 (KCL 2.x/3.x, amazon-kclpy >= 2; default) or v1 "
                          "(KCL 1.x, amazon-kclpy 1.x)")
    run.add_argument("--source", choices=["kinesis", "kafka"], help="default kinesis")
    run.add_argument("--coordinator", choices=["dynamodb", "kafka-group"],
                     help="who decides shard ownership (default: dynamodb for Kinesis, kafka-group for Kafka)")
    run.add_argument("--stream", dest="stream_list", action="append",
                     help="Kinesis stream name or ARN (repeatable: one worker, several streams)")
    run.add_argument("--retrieval", choices=["polling", "fanout"],
                     help="Kinesis reads: polling (GetRecords, default) or enhanced fan-out")
    run.add_argument("--stream-pattern", help="Kinesis stream-name regex (streams appearing or going are followed)")
    run.add_argument("--delete-former-stream-leases-after", type=float, metavar="SECONDS",
                     help="multi-stream: delete the leases of a stream gone this long (default: keep them)")
    run.add_argument("--processor-for", dest="processors", action="append", metavar="STREAM=MODULE:CLASS",
                     help="a processor class for one stream or topic (repeatable)")
    run.add_argument("--topic", dest="topics", action="append", help="Kafka topic (repeatable)")
    run.add_argument("--topic-pattern", help="Kafka topic regex (new matching topics are picked up)")
    run.add_argument("--bootstrap-servers", help="Kafka bootstrap servers HOST:PORT[,HOST:PORT]")
    run.add_argument("--group-id", help="Kafka consumer group (default: the application name)")
    run.add_argument("-X", dest="kafka_properties", action="append", metavar="KEY=VALUE",
                     help="librdkafka property, passed through (repeatable)")
    run.add_argument("--kafka-auth", choices=["aws-msk-iam"],
                     help="Amazon MSK with IAM: OAUTHBEARER tokens signed from AWS credentials, refreshed before expiry "
                          "(needs the msk-iam extra)")
    run.add_argument("--static-membership", action="store_true", default=None,
                     help="Kafka static membership: group.instance.id = worker id")
    run.add_argument("--application-name", help="application name; also the lease table name")
    run.add_argument("--role-arn", help="assume this IAM role for every AWS call (credentials refreshed while running)")
    run.add_argument("--role-session-name", help="the assumed role's session name (default streamworker)")
    run.add_argument("--external-id", help="the external id the role's trust policy requires")
    run.add_argument("--lease-table", help="lease table name (default: the application name)")
    run.add_argument("--initial-position", choices=[p.value for p in InitialPosition])
    run.add_argument("--initial-timestamp", help="ISO 8601 time, with --initial-position AT_TIMESTAMP")
    run.add_argument("--worker-id", help="default: host:pid:random")
    run.add_argument("--failover-time", type=float, metavar="SECONDS", help="lease expiry (default 10)")
    run.add_argument("--max-records", type=int, help="GetRecords limit (default 10000)")
    run.add_argument("--idle-time-between-reads", type=float, metavar="SECONDS",
                     help="wait after an empty read (default 1.5, min 0.2)")
    run.add_argument("--shutdown-timeout", type=float, metavar="SECONDS",
                     help="graceful shutdown bound (default 20)")
    run.add_argument("--metrics-port", type=int, help="serve /metrics, /healthz and /readyz on this port")
    run.add_argument("--on-error", choices=["halt", "dead-letter", "bisect"],
                     help="when process_records keeps raising (default halt)")
    run.add_argument("--dead-letter", help="file:PATH.jsonl, kinesis:STREAM, kafka:TOPIC or sqs:QUEUE")
    run.add_argument("--processor-retries", type=int, help="redeliveries before the error policy (default 3)")
    run.add_argument("--max-record-age", type=float, metavar="SECONDS",
                     help="dead-letter records older than this (arrival time) instead of processing them")
    run.add_argument("--dead-letter-max-consecutive", type=int, metavar="N",
                     help="halt the shard rather than dead-letter more than N records in a row")
    run.add_argument("--dead-letter-max-ratio", type=float, metavar="FRACTION",
                     help="halt the shard rather than dead-letter more than this fraction of its last 1000 records")
    run.add_argument("--checkpoint-interval", type=float, metavar="SECONDS",
                     help="checkpoint processed batches every this long (default: only the processor checkpoints)")
    run.add_argument("--checkpoint-every", type=int, metavar="RECORDS",
                     help="checkpoint processed batches every this many records")
    run.add_argument("--processor-timeout", type=float, metavar="SECONDS",
                     help="report (with its stack) a processor call that runs longer")
    run.add_argument("--release-halted-after", type=float, metavar="SECONDS",
                     help="release a halted shard's lease after this long (default: keep it)")
    run.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument("--log-format", choices=["auto", "json", "console"])

    for name, helptext in (("leases", "show the lease table and each worker's share"),
                           ("status", "show the lease table of a running fleet, refreshed")):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("--application-name", required=True)
        cmd.add_argument("--lease-table", help="default: the application name")
        if name == "leases":
            cmd.add_argument("--json", action="store_true", help="machine-readable output")
        else:
            cmd.add_argument("--interval", type=float, default=2.0)
            cmd.add_argument("--failover-time", type=float, default=10.0, metavar="SECONDS",
                             help="the fleet's failover_time: a lease whose counter stands still this long "
                                  "is shown expired (default 10)")
            cmd.add_argument("--count", type=int, help="refreshes before exiting (default: until Ctrl-C)")

    cp = sub.add_parser("checkpoint", help="set checkpoints: rewind or skip ahead, also while workers run")
    cp.add_argument("action", choices=["set"])
    cp.add_argument("--application-name", required=True)
    cp.add_argument("--lease-table", help="default: the application name")
    cp.add_argument("--shard", dest="shards", action="append", default=[],
                    help="a lease key or shard id; Kafka: TOPIC:PARTITION (repeatable)")
    cp.add_argument("--all-shards", action="store_true", help="every lease of the table (Kafka: of --topic)")
    cp.add_argument("--to", required=True, metavar="TRIM_HORIZON|LATEST|AT_TIMESTAMP:ISO|SEQ",
                    help="the new checkpoint: processing resumes after SEQ (Kafka: at offset SEQ)")
    cp.add_argument("--dry-run", action="store_true", help="show the change, write nothing")
    cp.add_argument("--json", action="store_true", help="machine-readable output")
    cp.add_argument("--coordinator", choices=["dynamodb", "kafka-group"], default="dynamodb",
                    help="where the checkpoints are: the lease table (default) or a Kafka consumer group")
    _kafka_args(cp, "kafka-group")
    cp.add_argument("--topic", dest="topics", action="append", default=[], help="kafka-group: topic (repeatable)")
    cp.add_argument("--group-id", help="kafka-group: the group (default: the application name)")

    dl = sub.add_parser("dead-letters", help="replay dead-lettered records onto a stream or topic")
    dl.add_argument("action", choices=["replay"])
    dl.add_argument("source", metavar="FILE|sqs:QUEUE", help="a file: or sqs: dead-letter target's records")
    dl.add_argument("--to", required=True, metavar="kinesis:STREAM|kafka:TOPIC")
    _kafka_args(dl, "kafka")
    dl.add_argument("--dry-run", action="store_true", help="count what a file holds, write nothing")

    local = sub.add_parser("local", help="local servers (no Docker) for running your own processor")
    local.add_argument("servers", choices=["aws", "kafka", "all"],
                       help="aws: DynamoDB + Kinesis (moto); kafka: Apache Kafka (Java + Maven) or tansu; all: both")
    local.add_argument("--faithful", action="store_true",
                       help="Kinesis from kinesis-mock (resharding, fan-out) instead of moto")

    demo = sub.add_parser("demo", help="the metrics demo on embedded local servers")
    demo.add_argument("--duration", type=float, default=40.0, help="seconds (default 40)")
    demo.add_argument("--shards", type=int, default=4)
    demo.add_argument("--source", choices=["kinesis", "kafka"], default="kinesis")
    return p


def _kafka_args(parser: argparse.ArgumentParser, when: str) -> None:
    """--bootstrap-servers and -X for the commands that may talk to Kafka themselves."""
    parser.add_argument("--bootstrap-servers", help=f"{when}: the brokers")
    parser.add_argument("-X", dest="kafka_properties", action="append", default=[], metavar="KEY=VALUE",
                        help=f"{when}: librdkafka property (repeatable)")


def _kafka_conf(args: argparse.Namespace) -> dict[str, str]:
    conf = dict(p.partition("=")[::2] for p in args.kafka_properties)
    if args.bootstrap_servers:
        conf["bootstrap.servers"] = args.bootstrap_servers
    return conf


def _run(args: argparse.Namespace) -> int:
    flags = {k: getattr(args, k) for k in (
        "processor", "source", "coordinator", "topics", "topic_pattern", "bootstrap_servers", "group_id",
        "kafka_properties", "kafka_auth", "static_membership", "role_arn", "role_session_name", "external_id", "stream_pattern",
        "delete_former_stream_leases_after", "processors", "retrieval", "application_name", "lease_table", "initial_position", "initial_timestamp",
        "worker_id", "failover_time", "max_records", "idle_time_between_reads", "shutdown_timeout", "metrics_port",
        "on_error", "dead_letter", "processor_retries", "processor_timeout",
        "checkpoint_interval", "checkpoint_every", "max_record_age", "dead_letter_max_consecutive",
        "dead_letter_max_ratio", "release_halted_after", "multilang_protocol",
        "log_level", "log_format")}
    if args.stream_list:
        flags["stream"] = args.stream_list[0]
        flags["streams"] = args.stream_list[1:] or None
    props = None
    if args.properties:
        from .kcl_properties import load_properties

        props = load_properties(args.properties)
    config = WorkerConfig.load(flags, args.config, props.settings if props else None)
    configure_logging(config.log_level, config.log_format)
    import structlog

    for warning in props.warnings if props else ():
        structlog.get_logger("streamworker.properties").warning(warning)
    factory: Any
    if config.processor:
        factory = load_processor(config.processor)
    elif config.processors:
        factory = None  # every stream or topic has its own (the worker checks as leases arrive)
    elif props is not None and props.command:
        from .multilang import MultiLangProcessor

        command, workdir, protocol = props.command, props.workdir, config.multilang_protocol
        factory = lambda: MultiLangProcessor(command, workdir, protocol=protocol)  # noqa: E731
    else:
        raise ConfigError("no processor given: streamworker run MODULE:CLASS (or `processor` in the config, "
                          "or executableName in --properties)")

    from .builder import make_client
    from .worker import Worker

    clients: dict[str, Any] = {}
    if props is not None and (props.region or props.credentials or props.kinesis_endpoint or props.dynamodb_endpoint):
        from .credentials import session_for

        default = props.credentials.get("default")
        if default is None and config.role_arn:
            from .credentials import CredentialSpec

            default = CredentialSpec(role_arn=config.role_arn, session_name=config.role_session_name,
                                     external_id=config.external_id)
        session = session_for(default, props.region)  # Kinesis, and the dead-letter sinks
        if config.source == "kinesis":
            clients["kinesis_client"] = make_client("kinesis", session, props.kinesis_endpoint)
        dynamodb = props.credentials.get("dynamodb")  # KCL's AwsCredentialsProviderDynamoDB: its own
        clients["dynamodb_client"] = make_client("dynamodb", session if dynamodb is None else
                                                 session_for(dynamodb, props.region), props.dynamodb_endpoint)
        clients["session"] = session
    worker = Worker(config, factory, **clients)
    tune_gc(config.gc_threshold)
    signals = {"count": 0}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        signals["count"] += 1
        if signals["count"] > 1:
            sys.stderr.write("streamworker: second signal, exiting now\n")
            os._exit(EXIT_SIGNAL)
        worker.request_shutdown()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.start()
    while not worker.wait(0.5):
        pass
    if worker.failure is not None:
        sys.stderr.write(f"streamworker: error: {worker.failure}\n")
        return EXIT_ERROR
    return EXIT_OK


def _checkpoint(args: argparse.Namespace) -> int:
    from .checkpoint_set import parse_target, set_checkpoints

    to = parse_target(args.to)
    configure_logging("WARNING")
    if args.coordinator == "kafka-group":
        from .kafka.offset_reset import reset_offsets

        conf = _kafka_conf(args)
        if "bootstrap.servers" not in conf:
            raise ConfigError("--coordinator kafka-group needs --bootstrap-servers")
        return reset_offsets(conf, args.group_id or args.application_name, args.topics, args.shards,
                             args.all_shards, to, dry_run=args.dry_run, as_json=args.json, out=sys.stdout)
    from .builder import make_client
    from .coordinators.lease_table import LeaseTable

    table = LeaseTable(make_client("dynamodb"), args.lease_table or args.application_name)
    return set_checkpoints(table, args.shards, args.all_shards, to, dry_run=args.dry_run, as_json=args.json,
                           out=sys.stdout)


def tune_gc(threshold: int | None) -> None:
    """Collect young objects every ``threshold`` allocations, with what was loaded frozen.

    Every record is a tracked object that lives until its batch is processed, so at the default
    threshold (700) the collector runs every few hundred records and walks the buffered ones
    again and again: on Kafka that halved throughput. The process is ours under
    ``streamworker run``; a library user tunes their own process."""
    if threshold is None:
        return
    import gc

    gc.freeze()  # modules, the processor, the clients: never garbage, never walked again
    _, second, third = gc.get_threshold()
    gc.set_threshold(threshold, second, third)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return _run(args)
        if args.command in ("leases", "status"):
            from .builder import make_client
            from .coordinators.lease_table import LeaseTable
            from .lease_report import leases_command, status_command

            configure_logging("WARNING")  # to stderr: stdout is the table (or JSON for scripts)
            table = LeaseTable(make_client("dynamodb"), args.lease_table or args.application_name)
            if args.command == "leases":
                return leases_command(table, args.json)
            return status_command(table, args.interval, args.count, failover_time=args.failover_time)
        if args.command == "checkpoint":
            return _checkpoint(args)
        if args.command == "dead-letters":
            from .builder import make_client
            from .dead_letter_replay import replay

            configure_logging("WARNING")
            return replay(args.source, args.to, kafka_conf=_kafka_conf(args), dry_run=args.dry_run, out=sys.stdout,
                          make_client=make_client)
        if args.command == "local":
            from .local.run import run_local

            return run_local(args.servers, faithful=args.faithful)
        if args.command == "demo":
            from .demo import run_demo

            if args.source == "kafka":
                from .demo_kafka import run_kafka_demo

                return run_kafka_demo(duration=args.duration, partitions=args.shards)
            return run_demo(duration=args.duration, shards=args.shards)
    except ConfigError as exc:
        sys.stderr.write(f"streamworker: configuration error: {exc}\n")
        return EXIT_USAGE
    except (SourceError, StreamworkerError) as exc:
        sys.stderr.write(f"streamworker: error: {exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_SIGNAL
    except Exception as exc:  # one clear line, not a traceback
        sys.stderr.write(f"streamworker: error: {type(exc).__name__}: {exc}\n")
        if os.environ.get("STREAMWORKER_LOG_LEVEL", "").upper() == "DEBUG":
            raise
        return EXIT_ERROR
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
