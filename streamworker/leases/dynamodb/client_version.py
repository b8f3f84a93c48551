"""A lease table put in KCL 3's default mode (``client_version = "3x"``, KCL's
``clientVersionConfig = CLIENT_VERSION_CONFIG_3X``), as KCL 3.5 puts a table that has no KCL 3
state yet: the ``LeaseOwnerToLeaseKeyIndex`` added to it, then ``Migration3.0`` written with
``CLIENT_VERSION_3X``. The write is conditional on the row's absence: a state another worker
wrote first — a KCL worker in compatible mode, a rollback by KCL's migration script — stands,
and the worker follows that instead."""

from __future__ import annotations

from typing import Any

import botocore.exceptions

from streamworker.aws.errors import error_code
from streamworker.leases.dynamodb.discovery import OWNER_INDEX
from streamworker.leases.dynamodb.kcl3 import MIGRATION_KEY
from streamworker.leases.dynamodb.table import LeaseTable, LeaseTableAccessDenied

CLIENT_VERSION_3X = "CLIENT_VERSION_3X"


def add_owner_index(table: LeaseTable, log: Any) -> str | None:
    """Add KCL 3's owner index (hash ``leaseOwner``, range ``leaseKey``, keys only) unless the
    table has it; the index's status, or None where the table may not be changed (the worker
    then scans for its leases, as on any table without the index)."""
    described = table.call("DescribeTable", lambda: table.client.describe_table(TableName=table.table_name))["Table"]
    for index in described.get("GlobalSecondaryIndexes", []):
        if index["IndexName"] == OWNER_INDEX:
            return str(index.get("IndexStatus", "ACTIVE"))
    create: Any = {"IndexName": OWNER_INDEX,
                   "KeySchema": [{"AttributeName": "leaseOwner", "KeyType": "HASH"},
                                 {"AttributeName": "leaseKey", "KeyType": "RANGE"}],
                   "Projection": {"ProjectionType": "KEYS_ONLY"}}
    if described.get("BillingModeSummary", {}).get("BillingMode") != "PAY_PER_REQUEST":
        throughput = described.get("ProvisionedThroughput", {})  # KCL gives the index the table's capacity
        create["ProvisionedThroughput"] = {"ReadCapacityUnits": throughput.get("ReadCapacityUnits", 1),
                                           "WriteCapacityUnits": throughput.get("WriteCapacityUnits", 1)}
    try:
        reply = table.call("UpdateTable", lambda: table.client.update_table(
            TableName=table.table_name,
            AttributeDefinitions=[{"AttributeName": "leaseOwner", "AttributeType": "S"},
                                  {"AttributeName": "leaseKey", "AttributeType": "S"}],
            GlobalSecondaryIndexUpdates=[{"Create": create}]))
    except LeaseTableAccessDenied as exc:
        log.warning(f"cannot add {OWNER_INDEX} to the lease table; followers will scan it for their leases",
                    error=str(exc)[:300])
        return None
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) in ("ResourceInUseException", "LimitExceededException"):
            return "CREATING"  # another worker is adding it (a table takes one index change at a time)
        raise
    log.info(f"added {OWNER_INDEX} to the lease table", table=table.table_name)
    for index in reply.get("TableDescription", {}).get("GlobalSecondaryIndexes", []):
        if index["IndexName"] == OWNER_INDEX:
            return str(index.get("IndexStatus", "CREATING"))
    return "CREATING"


def start_in_3x(table: LeaseTable, worker_id: str, now_ms: int) -> bool:
    """Write ``Migration3.0`` with ``CLIENT_VERSION_3X`` unless the table has one; True if written.
    The row is KCL's: its history holds the state left (``CLIENT_VERSION_INIT``: none)."""
    item: dict[str, Any] = {
        "leaseKey": {"S": MIGRATION_KEY}, "entityType": {"S": "CLIENT_VERSION_MIGRATION"},
        "cv": {"S": CLIENT_VERSION_3X}, "mb": {"S": worker_id}, "mts": {"N": str(now_ms)},
        "h": {"L": [{"M": {"cv": {"S": "CLIENT_VERSION_INIT"}, "mb": {"S": worker_id}, "mts": {"N": str(now_ms)}}}]}}
    try:
        table.call("PutItem", lambda: table.client.put_item(
            TableName=table.table_name, Item=item, ConditionExpression="attribute_not_exists(leaseKey)"))
    except botocore.exceptions.ClientError as exc:
        if error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True
