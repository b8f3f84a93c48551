"""The ``run`` command's flags: one per ``WorkerConfig`` setting, named after it
(``failover_time`` is ``--failover-time``), its help the setting's description, choices and
default. The configuration reference in the docs is generated from the same table, so a setting,
its flag, its environment variable and its TOML key cannot drift apart."""

from __future__ import annotations

import argparse
import enum
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from streamworker.config import WorkerConfig


@dataclass(frozen=True)
class Flag:
    """How one setting is given on the command line."""

    setting: str
    names: tuple[str, ...]
    dest: str
    metavar: str | None
    help: str
    choices: tuple[str, ...] | None = None
    kind: type = str
    repeatable: bool = False
    switch: bool = False


#: Groups of ``streamworker run --help``, in order; a setting not named lands in the last.
GROUPS: dict[str, tuple[str, ...]] = {
    "what to read": ("source", "stream", "stream_pattern", "retrieval", "topics", "topic_pattern", "initial_position",
                     "initial_timestamp", "processors", "multilang_protocol"),
    "the application and its leases": (
        "application_name", "lease_table", "coordinator", "worker_id", "failover_time", "client_version", "take_interval",
        "steady_take_interval", "max_leases_for_worker", "max_leases_to_steal_at_one_time", "shard_sync_interval",
        "parent_poll_interval", "cleanup_finished_leases", "delete_former_stream_leases_after", "shutdown_timeout"),
    "AWS region and credentials": ("region", "profile", "endpoint_url", "role_arn", "role_session_name",
                                   "external_id"),
    "Kafka": ("bootstrap_servers", "group_id", "kafka_properties", "kafka_auth", "static_membership",
              "kafka_buffer_bytes"),
    "reading and processing": ("max_records", "idle_time_between_reads", "max_pending_batches",
                               "call_process_records_even_for_empty_list", "processor_retries", "processor_timeout"),
    "checkpoints and failures": (
        "checkpoint_interval", "checkpoint_every", "on_error", "dead_letter", "max_record_age",
        "dead_letter_max_consecutive", "dead_letter_max_ratio", "release_halted_after"),
    "operations": ("metrics_port", "metrics_host", "status_page", "gc_threshold", "log_level", "log_format"),
    "KCL's metrics in CloudWatch": ("cloudwatch_metrics", "metrics_namespace", "metrics_level",
                                    "metrics_enabled_dimensions", "metrics_buffer_time", "metrics_max_queue_size"),
}

#: Settings whose flag is not simply ``--name`` (None: no flag of its own).
_SPECIAL: dict[str, dict[str, Any] | None] = {
    "processor": None,  # the positional MODULE:CLASS
    "streams": None,  # --stream, repeated
    "stream": {"names": ("--stream",), "dest": "stream_list", "metavar": "STREAM", "repeatable": True,
               "help": "Kinesis stream name or ARN; repeat it to read several streams in one worker (KCL multi-stream)"},
    "topics": {"names": ("--topic",), "metavar": "TOPIC", "repeatable": True, "help": "Kafka topic (repeatable)"},
    "processors": {"names": ("--processor-for",), "metavar": "STREAM=MODULE:CLASS", "repeatable": True,
                   "help": "a processor class for one stream or topic (repeatable); others use MODULE:CLASS"},
    "kafka_properties": {"names": ("-X",), "metavar": "KEY=VALUE", "repeatable": True,
                         "help": "a librdkafka property, passed through (repeatable; VALUE @PATH reads a file)"},
}
_SECONDS = ("time", "interval", "timeout", "_after", "age")


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> X."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return annotation


def _default(field: FieldInfo) -> str | None:
    value = field.default
    if value is PydanticUndefined or value is None or field.default_factory is not None:
        return None
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def flag(setting: str, field: FieldInfo) -> Flag | None:
    """The flag of one setting (None for the ones given otherwise)."""
    special = _SPECIAL.get(setting, {})
    if special is None:
        return None
    annotation = _unwrap(field.annotation)
    choices: tuple[str, ...] | None = None
    kind: type = str
    if typing.get_origin(annotation) is Literal:
        choices = tuple(str(a) for a in typing.get_args(annotation))
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        choices = tuple(str(m.value) for m in annotation)
    elif annotation in (int, float) and setting != "gc_threshold":
        kind = annotation
    elif annotation is datetime:
        kind = str
    switch = annotation is bool
    metavar = None
    if not choices and not switch:
        if kind is float and any(s in setting for s in _SECONDS):
            metavar = "SECONDS"
        elif kind in (int, float):
            metavar = "N"
        else:
            metavar = setting.upper().removesuffix("_NAME") if setting.endswith("_name") else setting.split("_")[-1].upper()
    help_text = special.get("help") or field.description or setting.replace("_", " ")
    default = _default(field)
    if default is not None and not special.get("repeatable"):
        help_text += f" (default {default})"
    return Flag(setting=setting, names=special.get("names", (f"--{setting.replace('_', '-')}",)),
                dest=special.get("dest", setting), metavar=special.get("metavar", metavar), help=help_text,
                choices=choices, kind=kind, repeatable=special.get("repeatable", False), switch=switch)


def flags() -> Iterator[Flag]:
    """Every setting's flag, in WorkerConfig's order."""
    for name, field in WorkerConfig.model_fields.items():
        f = flag(name, field)
        if f is not None:
            yield f


def add_to(parser: argparse.ArgumentParser) -> None:
    """Add every setting's flag to ``parser``, grouped as ``GROUPS`` says."""
    by_setting = {f.setting: f for f in flags()}
    grouped = [*((title, names) for title, names in GROUPS.items()),
               ("more", tuple(s for s in by_setting if not any(s in names for names in GROUPS.values())))]
    for title, names in grouped:
        present = [by_setting[n] for n in names if n in by_setting]
        if not present:
            continue
        group = parser.add_argument_group(title)
        for f in present:
            kw: dict[str, Any] = {"dest": f.dest, "help": f.help}
            if f.switch:
                kw.update(action=argparse.BooleanOptionalAction, default=None)
            elif f.repeatable:
                kw.update(action="append", metavar=f.metavar)
            else:
                kw.update(metavar=f.metavar, choices=f.choices, type=f.kind)
                if f.choices:
                    kw["metavar"] = "{" + ",".join(f.choices) + "}"
            group.add_argument(*f.names, **kw)


def given(args: argparse.Namespace) -> dict[str, Any]:
    """The settings given as flags (None: not given), by setting name."""
    out: dict[str, Any] = {}
    for f in flags():
        value = getattr(args, f.dest, None)
        if f.setting == "stream" and value:
            out["stream"], out["streams"] = value[0], value[1:] or None
        else:
            out[f.setting] = value
    return out


def reference_table() -> str:
    """The configuration reference as a Markdown table: every setting with its TOML key, flag,
    environment variable, default and meaning (the docs' configuration page is built from it)."""
    by_setting = {f.setting: f for f in flags()}
    rows = ["| TOML key | flag | environment variable | default | meaning |", "|---|---|---|---|---|"]
    for name, field in WorkerConfig.model_fields.items():
        f = by_setting.get(name)
        if name == "processor":
            flag_text, meaning = "`MODULE:CLASS` (the positional argument)", field.description or ""
        elif name == "streams":
            flag_text, meaning = "repeat `--stream`", field.description or ""
        else:
            assert f is not None
            usage = f.names[0] if f.switch else f"{f.names[0]} {f.metavar or '{' + ','.join(f.choices or ()) + '}'}"
            if f.switch:
                usage = f"{f.names[0]} / --no-{f.names[0][2:]}"
            flag_text = f"`{usage}`" + (" (repeatable)" if f.repeatable else "")
            meaning = (_SPECIAL.get(name) or {}).get("help") or field.description or ""
        if field.default_factory is not None and name not in ("worker_id",):
            default = "—"
        elif name == "worker_id":
            default = "`host:pid:random`"
        else:
            d = _default(field)
            default = "—" if d is None else f"`{d}`"
        if field.is_required():
            default = "required"
        choices = f" One of {', '.join(f'`{c}`' for c in f.choices)}." if f is not None and f.choices else ""
        rows.append(f"| `{name}` | {flag_text} | `STREAMWORKER_{name.upper()}` | {default} | {meaning}.{choices} |"
                    .replace("..", "."))
    return "\n".join(rows)
