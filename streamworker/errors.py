"""Exceptions raised to processors and by the worker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamworker.records import Record


class StreamworkerError(Exception):
    """Base class of every error streamworker raises on purpose."""


class ConfigError(StreamworkerError):
    """A setting is missing or invalid; the CLI exits with status 2."""


class MissingExtra(StreamworkerError):
    """An optional part is not installed: the message names the pip extra that brings it."""

    def __init__(self, command: str, extra: str, missing: str) -> None:
        super().__init__(f"{command} needs the {extra} extra: pip install 'streamworker[{extra}]' ({missing} is not "
                         f"installed)")


def require_extra(command: str, extra: str, *modules: str) -> None:
    """Raise MissingExtra unless every module can be imported."""
    import importlib.util

    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise MissingExtra(command, extra, module)


class SourceError(StreamworkerError):
    """The stream cannot be read: it does not exist, or its endpoint is unreachable."""


class CheckpointError(StreamworkerError):
    """Base of checkpoint failures. ``value`` matches amazon-kclpy's CheckpointError names."""

    value = "CheckpointError"


class LeaseLostError(CheckpointError):
    """This worker no longer holds the lease: the checkpoint was refused (fenced)."""

    value = "ShutdownException"


class InvalidCheckpointError(CheckpointError, ValueError):
    """The sequence number is behind the current checkpoint or past the last delivered record."""

    value = "InvalidStateException"


class CheckpointThrottledError(CheckpointError):
    """The lease table throttled the write after retries; the checkpoint may be retried."""

    value = "ThrottlingException"


class ShardEndNotCheckpointedError(StreamworkerError):
    """``shard_ended`` returned without checkpointing SHARD_END."""

    @classmethod
    def at(cls, shard_id: str, children: list[str]) -> ShardEndNotCheckpointedError:
        return cls(f"shard {shard_id}: shard_ended returned without checkpointing SHARD_END; call "
                   f"shard_ended_input.checkpointer.checkpoint() in shard_ended. Its child shards "
                   f"{sorted(children) or ''} cannot start until it does; retrying.")


class RecordFailures(Exception):
    """Raise this from ``process_records`` naming the records of its batch that failed (``Record``
    objects, or sequence numbers), as Lambda's ``ReportBatchItemFailures``. The records before the
    first of them count as processed and are checkpointed; the batch is delivered again from that
    record on, with the retry backoff, and after ``processor_retries`` the error policy (halt,
    dead-letter) takes what is left."""

    def __init__(self, records: Sequence[Record | str], cause: BaseException | None = None) -> None:
        self.records = list(records)
        self.cause = cause
        super().__init__(f"{len(self.records)} record(s) failed" + (f": {cause!r}" if cause is not None else ""))
