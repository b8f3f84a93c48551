"""The streams of a multi-stream worker: which it consumes, under which lease-key prefix.

A stream is known by KCL's identifier ``account:stream:creationEpoch``; a re-created stream (same
name, new creation time) is a new stream whose old leases are not ours any more.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

import botocore.exceptions
import structlog

from streamworker.errors import SourceError
from streamworker.leases.base import LeaseTableCoordinator
from streamworker.leases.keys import key_prefix_of, stream_name
from streamworker.sources.kinesis.reader import KinesisSource

log = structlog.get_logger("streamworker.coordinator.streams")


class StreamTracker:
    """Follows the wanted streams (a list, or a name pattern), one source per stream."""

    def __init__(self, make_source: Callable[[str], KinesisSource], streams: Iterable[str],
                 pattern: str | None = None, list_streams: Callable[[], list[str]] | None = None,
                 on_retired: Callable[[str], None] | None = None, log_context: dict[str, str] | None = None) -> None:
        self._make_source = make_source
        self._wanted: list[str] = list(streams)
        self._pattern = re.compile(pattern) if pattern else None
        self._list_streams = list_streams
        self._on_retired = on_retired
        #: Sources by stream name, and each stream's key prefix.
        self.sources: dict[str, KinesisSource] = {}
        self.prefixes: dict[str, str] = {}
        self._log = log.bind(**(log_context or {}))

    def set_streams(self, streams: Iterable[str]) -> None:
        """Replace the wanted list (applied at the next sync)."""
        self._wanted = list(streams)

    def desired(self) -> list[str]:
        names = list(self._wanted)
        if self._pattern is not None and self._list_streams is not None:
            names += [s for s in self._list_streams() if self._pattern.fullmatch(s) and s not in names]
        return names

    def owns(self, lease_key: str) -> bool:
        return key_prefix_of(lease_key) in self.prefixes.values()

    def source_of(self, name: str) -> KinesisSource:
        return self.sources[name]

    def sync(self, coordinator: LeaseTableCoordinator) -> set[str]:
        """Add new streams, retire removed ones and the old incarnation of a re-created one (its
        creation epoch changed); tell the coordinator which prefixes are ours. Returns the wanted
        names that could not be described this time (their leases are left alone)."""
        wanted = self.desired()
        wanted_names = {stream_name(w) for w in wanted}
        unknown: set[str] = set()
        for stream in wanted:
            name = stream_name(stream)
            source = self.sources.get(name) or self._make_source(stream)
            try:
                prefix = source.stream_identifier() + ":"
            except (SourceError, botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                unknown.add(name)
                self._log.warning("cannot describe a stream; will retry", failed=name, error=str(exc))
                continue
            if self.prefixes.get(name) == prefix:
                continue
            if name in self.sources:
                self.retire(name, "re-created (new creation time)")
                source = self._make_source(stream)  # the old one's fan-out consumer went with the old stream
            self.prefixes[name] = prefix
            self.sources[name] = source
            self._log.info("stream added", added=name, prefix=prefix)
        for name in set(self.sources) - wanted_names:
            self.retire(name, "removed")
        coordinator.streams = frozenset(self.prefixes.values())
        return unknown

    def retire(self, name: str, why: str) -> None:
        prefix = self.prefixes.pop(name)
        del self.sources[name]
        if self._on_retired is not None:
            self._on_retired(prefix)
        self._log.info(f"stream {why}: its shards checkpoint and are released", removed=name, prefix=prefix)
