"""How a follower in a KCL 3 leader-mode fleet finds the leases its leader assigned to it, as
KCL 3's DynamoDBLeaseDiscoverer does: the lease keys owned by the worker, from the table's
``LeaseOwnerToLeaseKeyIndex`` (a query, not a scan of the whole table), then each key not held
yet read consistently, and taken up only if it is still the worker's and no handoff to it is
pending (``checkpointOwner`` set: the previous owner is still finishing)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from streamworker.leases.dynamodb.table import LeaseTable
from streamworker.leases.lease import Lease

#: KCL 3's global secondary index on the lease table: hash ``leaseOwner``, range ``leaseKey``, keys only.
OWNER_INDEX = "LeaseOwnerToLeaseKeyIndex"


def assigned_keys(table: LeaseTable, worker_id: str) -> list[str]:
    """The lease keys the index lists for ``worker_id`` (eventually consistent, as the index is)."""
    keys: list[str] = []
    args: dict[str, Any] = {"TableName": table.table_name, "IndexName": OWNER_INDEX,
                            "KeyConditionExpression": "leaseOwner = :o",
                            "ExpressionAttributeValues": {":o": {"S": worker_id}}}
    while True:
        reply = table.client.query(**args)
        keys += [item["leaseKey"]["S"] for item in reply.get("Items", []) if "leaseKey" in item]
        last = reply.get("LastEvaluatedKey")
        if not last:
            return keys
        args["ExclusiveStartKey"] = last


def newly_assigned(table: LeaseTable, worker_id: str, held: Collection[str]) -> list[Lease]:
    """The leases assigned to ``worker_id`` that it does not hold yet and may start now."""
    found: list[Lease] = []
    for key in assigned_keys(table, worker_id):
        if key in held:
            continue
        lease = table.get(key)
        # the index lags the table: the row itself decides
        if lease is not None and lease.lease_owner == worker_id and lease.checkpoint_owner is None:
            found.append(lease)
    return found
