"""What a step of delivery asks its shard's lifecycle to do next. A delivery never ends or halts
the shard itself: it returns one of these, and ``ShardLifecycle`` acts on it."""

from __future__ import annotations

from dataclasses import dataclass

from streamworker.sources.base import Batch


@dataclass(frozen=True)
class Wait:
    """Step again after ``seconds`` (0: at once)."""

    seconds: float


@dataclass(frozen=True)
class End:
    """End the shard: ``why`` is ``lease lost`` or ``shutdown requested``."""

    why: str
    call_processor: bool = True


@dataclass(frozen=True)
class Interrupted:
    """The shard was interrupted while a call waited: end it as lost or as stopped, whichever it is."""

    call_processor: bool = True


@dataclass(frozen=True)
class Halt:
    """Stop processing the shard, keeping its lease and checkpoint (the error policy's last word)."""

    reason: str
    call_processor: bool = False


@dataclass(frozen=True)
class BatchDone:
    """A batch was processed (or dead-lettered): what follows a batch happens (a due checkpoint,
    or the shard's end)."""

    batch: Batch


Outcome = Wait | End | Interrupted | Halt | BatchDone
