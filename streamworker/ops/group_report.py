"""A Kafka consumer group for people and scripts: what ``streamworker leases``, ``status`` and
``status --web`` show for ``--coordinator kafka-group``, read the way ``kafka-consumer-groups
--describe`` reads it (members, each partition's owner, committed offset, log-end offset, lag),
and the same document the status page shows for a lease table.

Kafka's convention throughout: the committed offset is the next offset to read (a worker that
processed offset 1131 has committed 1132), and the log-end offset is the high watermark, so the
lag is what Kafka's tools and a KEDA scaler count. Read from the brokers alone: no worker needs
to run.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

from streamworker.clock import Clock, SystemClock
from streamworker.errors import SourceError
from streamworker.kafka.keys import kafka_key
from streamworker.ops.fleet import LocalShard


@dataclass(frozen=True)
class Member:
    worker: str  # the member's client.id: a streamworker worker's id
    host: str
    member_id: str
    partitions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class PartitionRow:
    shard: str  # TOPIC:PARTITION
    owner: str | None
    committed: int | None  # the next offset to read; None: nothing committed
    log_end: int | None
    lag: int | None
    #: A pending checkpoint a streamworker worker left in the commit's metadata
    pending: str | None = None


@dataclass(frozen=True)
class GroupSnapshot:
    group: str
    state: str
    members: list[Member]
    partitions: list[PartitionRow]

    def as_json(self) -> dict[str, Any]:
        return {"group": self.group, "state": self.state, "members": [asdict(m) for m in self.members],
                "partitions": [asdict(p) for p in self.partitions]}


def snapshot(admin: Any, group: str, topics: list[str], timeout: float = 15.0) -> GroupSnapshot:
    """The group's members, and every partition of ``topics`` and of the topics it committed to."""
    from confluent_kafka import ConsumerGroupTopicPartitions, IsolationLevel, KafkaException, TopicPartition
    from confluent_kafka.admin import OffsetSpec  # type: ignore[attr-defined]

    try:
        desc = admin.describe_consumer_groups([group], request_timeout=timeout)[group].result()
        offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                    request_timeout=timeout)[group].result()
    except KafkaException as exc:
        raise SourceError(f"consumer group {group!r}: {exc.args[0].str() if exc.args else exc}") from None
    members = []
    owner: dict[str, str] = {}
    for m in sorted(desc.members, key=lambda m: (m.client_id, m.member_id)):
        parts = sorted(kafka_key(tp.topic, tp.partition) for tp in (m.assignment.topic_partitions or []))
        members.append(Member(m.client_id or m.member_id, m.host or "", m.member_id, parts))
        owner.update({p: m.client_id or m.member_id for p in parts})
    committed: dict[tuple[str, int], tuple[int, str]] = {
        (tp.topic, tp.partition): (int(tp.offset), str(tp.metadata or ""))
        for tp in offsets.topic_partitions or [] if tp.offset >= 0}
    wanted = set(topics) | {t for t, _ in committed} | {m.split(":", 1)[0] for m in owner}
    try:
        meta = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise SourceError(f"cannot reach Kafka: {exc.args[0].str() if exc.args else exc}") from None
    missing = sorted(t for t in topics if t not in meta.topics or meta.topics[t].error is not None)
    if missing:
        raise SourceError(f"Kafka topic(s) {', '.join(missing)} not found")
    tps = [TopicPartition(t, p) for t in sorted(wanted) if t in meta.topics and meta.topics[t].error is None
           for p in sorted(meta.topics[t].partitions)]
    ends: dict[tuple[str, int], int] = {}
    if tps:
        futures = admin.list_offsets({tp: OffsetSpec.latest() for tp in tps},  # type: ignore[no-untyped-call]
                                     isolation_level=IsolationLevel.READ_UNCOMMITTED, request_timeout=timeout)
        for tp, fut in futures.items():
            try:
                ends[(tp.topic, tp.partition)] = int(fut.result().offset)
            except KafkaException:
                continue
    rows = []
    from streamworker.leases.kafka_group import PENDING_PREFIX

    for tp in tps:
        key = (tp.topic, tp.partition)
        at, meta_text = committed.get(key, (None, ""))
        end = ends.get(key)
        # with nothing committed Kafka's tool shows no lag; a worker would start per its initial position
        lag = max(0, end - at) if end is not None and at is not None else None
        pending = meta_text[len(PENDING_PREFIX):] if meta_text.startswith(PENDING_PREFIX) else None
        shard = kafka_key(*key)
        rows.append(PartitionRow(shard, owner.get(shard), at, end, lag, pending))
    state = str(getattr(desc.state, "name", desc.state))
    return GroupSnapshot(group, state, members, rows)


def render(snap: GroupSnapshot, out: TextIO) -> None:
    headers = ["partition", "owner", "committed", "log-end", "lag"]
    table = [[r.shard, r.owner or "-", "-" if r.committed is None else str(r.committed),
              "-" if r.log_end is None else str(r.log_end), "-" if r.lag is None else str(r.lag)]
             for r in snap.partitions]
    widths = [max(len(h), *(len(row[i]) for row in table)) if table else len(h) for i, h in enumerate(headers)]
    out.write("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + "\n")
    for row in table:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + "\n")
    out.write(f"\nmembers ({snap.state}): " + (", ".join(f"{m.worker}={len(m.partitions)}" for m in snap.members)
                                               or "none") + "\n")
    for r in snap.partitions:
        if r.pending:
            out.write(f"pending checkpoint {r.shard}: {r.pending}\n")


def _header(snap: GroupSnapshot, where: str) -> str:
    return (f"consumer group {snap.group!r} at {where} ({snap.state}, {len(snap.members)} member(s)); committed = "
            f"the next offset to read, as kafka-consumer-groups shows it\n\n")


def leases_command(admin: Any, group: str, topics: list[str], as_json: bool, out: TextIO = sys.stdout) -> int:
    snap = snapshot(admin, group, topics)
    if as_json:
        json.dump(snap.as_json(), out, indent=2)
        out.write("\n")
    else:
        render(snap, out)
    return 0


def status_command(admin: Any, group: str, topics: list[str], where: str, interval: float, count: int | None,
                   out: TextIO = sys.stdout, *, clock: Clock | None = None) -> int:
    clock = clock or SystemClock()
    n = 0
    while count is None or n < count:
        snap = snapshot(admin, group, topics)
        if out.isatty():
            out.write("\x1b[2J\x1b[H")
        out.write(f"{time.strftime('%H:%M:%S')} " + _header(snap, where))
        render(snap, out)
        out.flush()
        n += 1
        if count is None or n < count:
            clock.sleep(interval)
    return 0


class GroupView:
    """The status page's document for a consumer group (the shape ``ops.fleet.FleetView`` gives a
    lease table): rows from the brokers, records/s from the committed offsets' progress, and the
    observing worker's own partitions' live figures where it has them. Cached ``min_interval``."""

    def __init__(self, application: str, group: str, topics: list[str], admin: Callable[[], Any], *,
                 observer: str, local: Callable[[], list[LocalShard]] | None = None,
                 clock: Clock | None = None, min_interval: float = 1.0) -> None:
        self.application, self.group, self.topics, self.observer = application, group, topics, observer
        self._admin, self._local = admin, local
        self._clock = clock or SystemClock()
        self._min_interval = min_interval
        self._lock = threading.Lock()
        self._last: tuple[float, dict[str, Any]] | None = None
        self._marks: dict[str, tuple[int, float]] = {}

    def document(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock.monotonic()
            if self._last is not None and now - self._last[0] < self._min_interval:
                return self._last[1]
            doc = self._build(now)
            self._last = (now, doc)
            return doc

    def _rate(self, shard: str, committed: int | None, now: float) -> float | None:
        if committed is None:
            return None
        mark = self._marks.get(shard)
        self._marks[shard] = (committed, now)
        if mark is None or now <= mark[1] or committed < mark[0]:
            return None
        return round((committed - mark[0]) / (now - mark[1]), 1)

    def _build(self, now: float) -> dict[str, Any]:
        error = None
        snap = GroupSnapshot(self.group, "unknown", [], [])
        try:
            snap = snapshot(self._admin(), self.group, self.topics, timeout=5.0)
        except Exception as exc:  # shown on the page; no figure is invented
            error = f"cannot describe consumer group {self.group!r}: {exc}"
        mine = {s.key: s for s in (self._local() if self._local is not None else [])}
        rows: list[dict[str, Any]] = []
        for r in snap.partitions:
            s = mine.get(r.shard)
            rows.append({"shard": r.shard, "owner": r.owner, "handoff_from": None, "counter": None,
                         "checkpoint": "-" if r.committed is None else str(r.committed), "pending": r.pending,
                         "parents": [], "state": "owned" if r.owner else "free", "halted": None,
                         "records_per_second": self._rate(r.shard, r.committed, now),
                         "millis_behind_latest": None, "lag": s.lag if s is not None and s.lag is not None else r.lag,
                         "log_end": r.log_end, "processing_here": s.state if s is not None else None})
        workers = [{"worker": m.worker, "leases": len(m.partitions), "host": m.host, "expired": False,
                    "records_per_second": round(sum(float(row["records_per_second"] or 0.0) for row in rows
                                                    if row["owner"] == m.worker), 1)} for m in snap.members]
        return {"application": self.application, "observer": self.observer, "time": time.time(),
                "kind": "kafka-group", "group": self.group, "group_state": snap.state,
                "legend": f"consumer group {self.group} ({snap.state}); committed = the next offset to read",
                "labels": {"leases": "partitions", "checkpoint": "committed", "lease": "partition"},
                "failover_time": None, "error": error, "leases": rows, "workers": workers}


def lazy_admin(conf: dict[str, Any]) -> Callable[[], Any]:
    """An admin client on ``conf``'s connection settings, made on first use (a worker's status
    page may never be opened)."""
    from streamworker.kafka import factory

    made: list[Any] = []
    lock = threading.Lock()

    def get() -> Any:
        with lock:
            if not made:
                made.append(factory.admin(factory.connection_conf(conf)))
            return made[0]
    return get


def web_command(make_admin: Callable[[], Any], application: str, group: str, topics: list[str], *, port: int = 0,
                host: str = "127.0.0.1", open_browser: bool = True, out: TextIO = sys.stdout) -> int:
    """The live status page for a consumer group, from the brokers alone, until Ctrl-C."""
    from streamworker.ops.web import serve_until_interrupted

    admin = make_admin()
    snapshot(admin, group, topics)  # an unknown topic or an unreachable broker: one line, exit 1
    view = GroupView(application, group, topics, lambda: admin, observer=f"consumer group {group}")
    return serve_until_interrupted(view.document, f"consumer group {group!r}", port=port, host=host,
                                   open_browser=open_browser, out=out)
