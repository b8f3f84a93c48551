"""Where an operator sets a checkpoint: ``streamworker checkpoint set --to`` parsed once, for a
lease table and for a Kafka group alike."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from streamworker.errors import ConfigError
from streamworker.records import AT_TIMESTAMP, LATEST, TRIM_HORIZON, ExtendedSequenceNumber


@dataclass(frozen=True)
class Target:
    """Where a checkpoint is set: a sentinel, a timestamp (AT_TIMESTAMP) or a sequence number."""

    checkpoint: ExtendedSequenceNumber
    timestamp: datetime | None = None

    def __str__(self) -> str:
        if self.timestamp is not None:
            return f"{AT_TIMESTAMP}:{self.timestamp.isoformat()}"
        return str(self.checkpoint)


def parse_target(text: str) -> Target:
    """``TRIM_HORIZON``, ``LATEST``, ``AT_TIMESTAMP:ISO-8601`` or a sequence number (Kafka: an offset)."""
    t = text.strip()
    if t.upper() in (TRIM_HORIZON, LATEST):
        return Target(ExtendedSequenceNumber(t.upper()))
    if t.upper().startswith(AT_TIMESTAMP + ":"):
        raw = t[len(AT_TIMESTAMP) + 1:]
        try:
            ts = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"--to {text!r}: {raw!r} is not an ISO 8601 time (e.g. 2026-12-01T08:00:00Z)") from None
        return Target(ExtendedSequenceNumber(AT_TIMESTAMP), ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc))
    if t.isdigit():
        return Target(ExtendedSequenceNumber(t))
    raise ConfigError(f"--to {text!r}: expected TRIM_HORIZON, LATEST, AT_TIMESTAMP:ISO-8601 or a sequence number")
