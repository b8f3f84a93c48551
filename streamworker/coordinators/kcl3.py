"""KCL 3.x's mode, read from its coordinator-state table, so a mixed fleet is never unsafe.

KCL 3 keeps ``<application>-CoordinatorState`` beside the lease table; its ``Migration3.0`` item
says which lease assignment the fleet runs. In ``CLIENT_VERSION_2X`` and
``CLIENT_VERSION_UPGRADE_FROM_2X`` (KCL 3 configured ``CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X``)
every worker takes and steals leases itself, as KCL 2 and streamworker do, and they can share the
table. In ``CLIENT_VERSION_3X`` and ``CLIENT_VERSION_3X_WITH_ROLLBACK`` one elected leader assigns
every lease from the worker-metrics table, which streamworker does not write: its leases would be
reassigned under it and it would take them back. There streamworker refuses to run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import botocore.exceptions
import structlog

from ..aws_errors import error_code, is_denied
from .lease_table import LeaseTableFatal

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient


log = structlog.get_logger("streamworker.kcl3")

MIGRATION_KEY = "Migration3.0"
#: KCL 3 client versions in which its workers balance leases themselves (KCL 2's algorithm).
WORKER_BALANCED = frozenset({"CLIENT_VERSION_2X", "CLIENT_VERSION_UPGRADE_FROM_2X", "CLIENT_VERSION_INIT"})


class Kcl3LeaderMode(LeaseTableFatal):
    """The application's KCL 3 workers assign leases through a leader; streamworker cannot join."""


def coordinator_state_table(application_name: str) -> str:
    return f"{application_name}-CoordinatorState"


class Kcl3Guard:
    """Reads KCL 3's client version; ``check()`` raises ``Kcl3LeaderMode`` in leader mode."""

    def __init__(self, client: DynamoDBClient, application_name: str) -> None:
        self.client = client
        self.table_name = coordinator_state_table(application_name)
        self._warned = False

    def client_version(self) -> str | None:
        """KCL 3's ``cv`` for this application, or None when no KCL 3 worker ever ran on it (or
        the table cannot be read: that is logged once and never stops the worker)."""
        try:
            reply = self.client.get_item(TableName=self.table_name, Key={"key": {"S": MIGRATION_KEY}},
                                         ConsistentRead=True)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            if is_denied(exc):
                if not self._warned:
                    self._warned = True
                    log.warning("cannot read KCL 3's coordinator state to check that a mixed fleet is safe; "
                                "grant dynamodb:GetItem on it if KCL 3 workers share this lease table",
                                table=self.table_name, error=error_code(exc))
                return None
            raise
        item = reply.get("Item") or {}
        cv = item.get("cv", {}).get("S")
        return str(cv) if cv else None

    def check(self) -> str | None:
        """The client version when it is safe to run beside it; raises in KCL 3 leader mode."""
        cv = self.client_version()
        if cv is not None and cv not in WORKER_BALANCED:
            raise _leader_mode(self.table_name, cv)
        return cv


def _leader_mode(table: str, cv: str) -> Kcl3LeaderMode:
    return Kcl3LeaderMode(
        f"KCL 3 runs this application in leader-based assignment ({table}: {cv}); streamworker can share a "
        "lease table only with KCL 2.x or KCL 3 in CLIENT_VERSION_CONFIG_COMPATIBLE_WITH_2X mode (see MIGRATING.md)")
