"""Whether the Kafka cluster answers the worker's consumer, for its health."""

from __future__ import annotations

import json
import threading

from streamworker.clock import Clock

#: librdkafka's join states in which the group coordinator holds a request until the rebalance
#: completes (JoinGroup waits for every member, SyncGroup for the leader's assignment).
PARKED_JOIN_STATES = frozenset({"wait-join", "wait-sync"})


class Reachability:
    """Whether the cluster answers, from librdkafka's statistics (``stats_cb``, every second on
    the poll thread). Time counts only while requests wait for an answer and none arrives: an idle
    client (nothing to fetch, no group) is not unreachable, and while the poll thread is held up
    (a rebalance callback) no statistics arrive, so no silence is counted either. A JoinGroup or
    SyncGroup the coordinator parks until every member has rejoined is not waited-on silence
    (a long rebalance is the group's state, not an outage), and each broker's replies are counted
    on their own, since librdkafka replaces broker handles (a bootstrap server, re-bootstrap)."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._rx: dict[str, int] = {}
        self._heard = self._seen = clock.monotonic()
        self._group: tuple[str, float] | None = None  # (state, seconds in it) when not "up"

    def started(self) -> None:
        with self._lock:
            self._heard = self._seen = self._clock.monotonic()

    def on_stats(self, raw: str) -> None:
        try:
            stats = json.loads(raw)
        except ValueError:
            return
        brokers = {str(name): b for name, b in (stats.get("brokers") or {}).items() if isinstance(b, dict)}
        cgrp = stats.get("cgrp") if isinstance(stats.get("cgrp"), dict) else {}
        joining = cgrp.get("join_state") in PARKED_JOIN_STATES
        rx = {name: int(b.get("rx", 0)) for name, b in brokers.items()}
        waiting = sum(int(b.get("waitresp_cnt", 0)) + int(b.get("outbuf_cnt", 0)) for name, b in brokers.items()
                      if not (joining and name == "GroupCoordinator"))
        connected = any(b.get("state") == "UP" for b in brokers.values() if int(b.get("nodeid", -1)) >= 0)
        now = self._clock.monotonic()
        with self._lock:
            if any(n > self._rx.get(name, 0) for name, n in rx.items()) or (waiting == 0 and connected):
                self._heard = now
            self._rx, self._seen = rx, now
            state = str(cgrp.get("state", "up")) if cgrp else "up"
            self._group = None if state == "up" else (state, float(cgrp.get("stateage", 0)) / 1000.0)

    def silent_for(self) -> float:
        """Seconds without an answer while requests waited, as of the last statistics."""
        with self._lock:
            return self._seen - self._heard

    def group_away_for(self) -> tuple[str, float]:
        """The consumer group's state and how long it has not been 'up' (0 when it is)."""
        with self._lock:
            return ("up", 0.0) if self._group is None else self._group
