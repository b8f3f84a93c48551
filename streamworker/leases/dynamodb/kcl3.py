"""KCL 3.x's mode, and whether a KCL 3 fleet in leader mode is alive, so a mixed fleet is never
unsafe and a stopped one can still be continued.

Where KCL 3 keeps its state depends on its version: 3.5 writes it into the lease table itself
(rows with an ``entityType``: ``Migration3.0`` with the client version ``cv``, one
``WORKER_METRIC_STATS`` row per worker, and a ``LEADER`` row while a leader holds the lock);
3.0–3.4 used ``<app>-CoordinatorState`` (``Migration3.0``, the leader lock) and
``<app>-WorkerMetricStats``. Both are read.

In ``CLIENT_VERSION_2X`` and ``CLIENT_VERSION_UPGRADE_FROM_2X`` (KCL 3 configured
``CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X``) every worker takes and steals leases itself, as
KCL 2 and streamworker do, and they share the table. In ``CLIENT_VERSION_3X`` and
``CLIENT_VERSION_3X_WITH_ROLLBACK`` one elected leader assigns every lease to the workers that
report metrics, which streamworker does not: joining such a fleet would fight its leader. So
streamworker refuses, but only while that fleet is alive: a KCL 3 worker reported its metrics
within KCL's own expiry (two reporting periods of 30 s, the rule KCL's leader applies), or a
lease's counter moves while streamworker watches (KCL renews every failover/3; no streamworker
worker runs in leader mode). A stopped KCL 3 fleet's table is continued, which is how most
teams migrate: stop the Java fleet, start streamworker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import botocore.exceptions
import structlog

from streamworker.aws.errors import error_code, is_denied
from streamworker.clock import Clock, SystemClock
from streamworker.leases.dynamodb.table import LeaseTable, LeaseTableFatal

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


log = structlog.get_logger("streamworker.kcl3")

MIGRATION_KEY = "Migration3.0"
#: The leader lock's key (KCL's LeaderLock.LEADER_HASH_KEY), in either place.
LEADER_KEY = "Leader"
#: KCL 3 client versions in which its workers balance leases themselves (KCL 2's algorithm).
WORKER_BALANCED = frozenset({"CLIENT_VERSION_2X", "CLIENT_VERSION_UPGRADE_FROM_2X", "CLIENT_VERSION_INIT"})
#: KCL's leader drops a worker whose metrics are older than two reporting periods (30 s each by
#: default: workerMetricsReporterFreqInMillis, DEFAULT_NO_OF_SKIP_STAT_FOR_DEAD_WORKER_THRESHOLD).
METRICS_EXPIRY = 60.0


class Kcl3LeaderMode(LeaseTableFatal):
    """The application's KCL 3 workers assign leases through a leader; streamworker cannot join."""


def coordinator_state_table(application_name: str) -> str:
    return f"{application_name}-CoordinatorState"


def worker_metrics_table(application_name: str) -> str:
    return f"{application_name}-WorkerMetricStats"


@dataclass(frozen=True)
class Kcl3State:
    """What KCL 3 left in an application's tables."""

    #: ``Migration3.0``'s client version (None: no KCL 3 worker ever ran here), and where it was read
    client_version: str | None = None
    where: str | None = None
    #: KCL 3 workers by id, with the wall-clock second each last reported its metrics
    workers: dict[str, float | None] = field(default_factory=dict)
    #: The worker holding (or that last held) the leader lock; None when no lock row exists
    leader: str | None = None

    @property
    def leader_mode(self) -> bool:
        return self.client_version is not None and self.client_version not in WORKER_BALANCED


class Kcl3Guard:
    """``check()`` at start raises ``Kcl3LeaderMode`` beside a live leader-mode KCL 3 fleet
    (watching lease counters for up to ``watch`` seconds when the metrics alone do not tell);
    ``recheck()``, every minute while running, does the same from the metrics alone (it never
    waits)."""

    def __init__(self, client: DynamoDBClient, application_name: str, table: LeaseTable, *,
                 watch: float = 11.0, clock: Clock | None = None, wall: Callable[[], float] = time.time) -> None:
        self.client = client
        self.application_name = application_name
        self.table = table
        self.watch = watch
        self._clock = clock or SystemClock()
        self._wall = wall
        self._warned: set[str] = set()

    # -- reading ---------------------------------------------------------------------------------

    def _get(self, table: str, key_name: str, key: str) -> dict[str, object] | None:
        """An item of one of KCL's tables; None when the table or the item is missing (or the
        table cannot be read: logged once, never stops the worker)."""
        try:
            reply = self.client.get_item(TableName=table, Key={key_name: {"S": key}}, ConsistentRead=True)
        except botocore.exceptions.ClientError as exc:
            self._unreadable(table, exc, "GetItem")
            return None
        return dict(reply.get("Item") or {}) or None

    def _unreadable(self, table: str, exc: botocore.exceptions.ClientError, action: str) -> None:
        if error_code(exc) == "ResourceNotFoundException":
            return
        if not is_denied(exc):
            raise exc
        if table not in self._warned:
            self._warned.add(table)
            log.warning(f"cannot read KCL 3's state to check that a mixed fleet is safe; grant dynamodb:{action} "
                        "on it if KCL 3 workers share this lease table", table=table, error=error_code(exc))

    def client_version(self) -> tuple[str | None, str | None]:
        """KCL 3's ``cv`` and the table it was read from: the lease table (3.5), else
        ``<app>-CoordinatorState`` (3.0–3.4)."""
        for table, key_name in ((self.table.table_name, "leaseKey"),
                                (coordinator_state_table(self.application_name), "key")):
            item = self._get(table, key_name, MIGRATION_KEY)
            cv = item.get("cv") if item else None
            if isinstance(cv, dict) and cv.get("S"):
                return str(cv["S"]), table
        return None, None

    def _legacy_workers(self) -> dict[str, float | None]:
        """KCL 3.0–3.4's workers, from ``<app>-WorkerMetricStats`` (a row per worker)."""
        table = worker_metrics_table(self.application_name)
        workers: dict[str, float | None] = {}
        args: dict[str, object] = {"TableName": table, "ProjectionExpression": "wid, lut"}
        try:
            while True:
                reply = self.client.scan(**args)  # type: ignore[arg-type]
                for item in reply.get("Items", []):
                    wid = item.get("wid", {}).get("S")
                    if wid:
                        try:
                            workers[wid] = float(item["lut"]["N"])
                        except (KeyError, TypeError, ValueError):
                            workers[wid] = None
                last = reply.get("LastEvaluatedKey")
                if not last:
                    return workers
                args["ExclusiveStartKey"] = last
        except botocore.exceptions.ClientError as exc:
            self._unreadable(table, exc, "Scan")
            return workers

    def state(self) -> Kcl3State:
        cv, where = self.client_version()
        if cv is None:
            return Kcl3State()
        self.table.list_leases(consistent=True)  # the scan records KCL 3.5's worker and leader rows
        workers = {**self._legacy_workers(), **self.table.kcl3_workers}
        leader = self.table.kcl3_leader[0] if self.table.kcl3_leader else None
        if leader is None:  # KCL 3.0-3.4 keep the lock in the coordinator-state table
            item = self._get(coordinator_state_table(self.application_name), "key", LEADER_KEY)
            owner = item.get("ownerName") if item else None
            leader = str(owner["S"]) if isinstance(owner, dict) and owner.get("S") else None
        return Kcl3State(cv, where, workers, leader)

    # -- deciding --------------------------------------------------------------------------------

    def _fresh_workers(self, state: Kcl3State) -> list[str]:
        now = self._wall()
        return sorted(w for w, lut in state.workers.items() if lut is not None and now - lut < METRICS_EXPIRY)

    def _renewing(self) -> str | None:
        """A lease whose counter moves within ``watch`` seconds, with its owner (KCL renews
        every failover/3, and no streamworker worker renews in leader mode)."""
        before = {le.lease_key: (le.lease_counter, le.lease_owner) for le in self.table.list_leases(consistent=True)
                  if le.lease_owner is not None}
        if not before:
            return None
        deadline = self._clock.monotonic() + self.watch
        while self._clock.monotonic() < deadline:
            self._clock.sleep(min(1.0, max(0.0, deadline - self._clock.monotonic())))
            for le in self.table.list_leases(consistent=True):
                was = before.get(le.lease_key)
                if was is not None and le.lease_counter != was[0]:
                    return f"{le.lease_owner or was[1]} renewed lease {le.lease_key}"
        return None

    def check(self) -> str | None:
        """At start: the client version when it is safe to run beside it; raises while a
        leader-mode KCL 3 fleet is alive."""
        state = self.state()
        if not state.leader_mode:
            return state.client_version
        fresh = self._fresh_workers(state)
        alive = None
        if fresh and state.leader is not None:
            alive = (f"{state.leader} holds its leader lock and KCL 3 worker(s) {', '.join(fresh)} reported within "
                     f"the last {METRICS_EXPIRY:.0f} s; a fleet killed with -9 counts as stopped once its metrics "
                     "are that old")
        if alive is None:
            log.info("KCL 3 left this table in leader mode; checking that none of its workers still runs",
                     client_version=state.client_version, table=state.where, seconds=self.watch)
            renewing = self._renewing()
            alive = f"KCL 3 worker {renewing}" if renewing else None
        if alive is not None:
            raise _leader_mode(state, alive)
        log.warning("KCL 3 left this table in leader mode but none of its workers runs: continuing its leases",
                    client_version=state.client_version, table=state.where)
        return state.client_version

    def recheck(self) -> str | None:
        """While running: raises if a leader-mode KCL 3 fleet has come alive beside us (a leader
        holds the lock, and its workers report metrics)."""
        state = self.state()
        if state.leader_mode and state.leader is not None:
            fresh = self._fresh_workers(state)
            if fresh:
                raise _leader_mode(state, f"{state.leader} holds its leader lock and KCL 3 worker(s) "
                                          f"{', '.join(fresh)} reported within the last {METRICS_EXPIRY:.0f} s")
        return state.client_version


def _leader_mode(state: Kcl3State, why: str) -> Kcl3LeaderMode:
    return Kcl3LeaderMode(
        f"a KCL 3 fleet runs this application in leader-based assignment ({state.where}: {state.client_version}; "
        f"{why}); streamworker can share a lease table only with KCL 2.x or KCL 3 in "
        "CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X mode, or continue it once the KCL 3 fleet is stopped (see MIGRATING.md)")
