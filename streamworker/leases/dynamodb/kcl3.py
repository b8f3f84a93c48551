"""KCL 3.x's state in an application's tables: its client version, its workers and its leader.

Where KCL 3 keeps its state depends on its version: 3.5 writes it into the lease table itself
(rows with an ``entityType``: ``Migration3.0`` with the client version ``cv``, one
``WORKER_METRIC_STATS`` row per worker, and a ``LEADER`` row while a leader holds the lock);
3.0–3.4 used ``<app>-CoordinatorState`` (``Migration3.0``, the leader lock) and
``<app>-WorkerMetricStats``. Both are read.

In ``CLIENT_VERSION_2X`` and ``CLIENT_VERSION_UPGRADE_FROM_2X`` (KCL 3 configured
``CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X``) every worker takes and steals leases itself, as
KCL 2 and streamworker do. In ``CLIENT_VERSION_3X`` and ``CLIENT_VERSION_3X_WITH_ROLLBACK`` one
elected leader assigns every lease to the workers that report metrics; streamworker then joins
as one of those workers (``fleet.Kcl3Fleet``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import botocore.exceptions
import structlog

from streamworker.aws.errors import error_code, is_denied
from streamworker.leases.dynamodb.table import LeaseTable

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


class Kcl3Reader:
    """Reads what KCL 3 left in an application's tables; a table that cannot be read is logged
    once and counts as empty (it never stops the worker)."""

    def __init__(self, client: DynamoDBClient, application_name: str, table: LeaseTable) -> None:
        self.client = client
        self.application_name = application_name
        self.table = table
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
            log.warning(f"cannot read KCL 3's state; grant dynamodb:{action} on it if KCL 3 workers share this "
                        "lease table", table=table, error=error_code(exc))

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

    def legacy_workers(self) -> dict[str, float | None]:
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
        workers = {**self.legacy_workers(), **self.table.kcl3_workers}
        leader = self.table.kcl3_leader[0] if self.table.kcl3_leader else None
        if leader is None:  # KCL 3.0-3.4 keep the lock in the coordinator-state table
            item = self._get(coordinator_state_table(self.application_name), "key", LEADER_KEY)
            owner = item.get("ownerName") if item else None
            leader = str(owner["S"]) if isinstance(owner, dict) and owner.get("S") else None
        return Kcl3State(cv, where, workers, leader)
