"""The ``streamworker`` command line: its parser (commands, flags, one-line errors)."""

from __future__ import annotations

import argparse
from typing import Any

from streamworker.cli import flags as run_flags

#: The exit status of a usage error (argparse's, and streamworker's configuration errors).
EXIT_USAGE = 2


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


def _kafka_args(parser: argparse.ArgumentParser, when: str) -> None:
    """--bootstrap-servers and -X for the commands that may talk to Kafka themselves."""
    parser.add_argument("--bootstrap-servers", help=f"{when}: the brokers")
    parser.add_argument("-X", dest="kafka_properties", action="append", default=[], metavar="KEY=VALUE",
                        help=f"{when}: librdkafka property (repeatable)")
