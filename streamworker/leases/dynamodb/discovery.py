"""How a follower in a KCL 3 leader-mode fleet finds the leases its leader assigned to it, as
KCL 3's DynamoDBLeaseDiscoverer does: the lease keys owned by the worker, from the table's
``LeaseOwnerToLeaseKeyIndex`` (a query, not a scan of the whole table), then each key not held
yet read consistently, and taken up only if it is still the worker's and no handoff to it is
pending (``checkpointOwner`` set: the previous owner is still finishing). A table without the
index (one KCL 3 did not create, or one whose index is still being built) is scanned instead,
with one warning, and the index tried again every few minutes."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import botocore.exceptions

from streamworker.aws.errors import error_code
from streamworker.clock import Clock
from streamworker.leases.dynamodb.table import LeaseTable, LeaseTableMissing
from streamworker.leases.lease import Lease

#: KCL 3's global secondary index on the lease table: hash ``leaseOwner``, range ``leaseKey``, keys only.
OWNER_INDEX = "LeaseOwnerToLeaseKeyIndex"
#: How often a table found without a usable index is queried again (an index being added
#: answers as a missing one until it is built).
INDEX_RETRY = 300.0


class LeaseDiscovery:
    """One worker's view of the leases assigned to it."""

    def __init__(self, table: LeaseTable, worker_id: str, log: Any, clock: Clock) -> None:
        self.table, self.worker_id, self._log, self._clock = table, worker_id, log, clock
        self.indexed = True
        self._warned = False
        self._retry_at = 0.0

    def owned_keys(self) -> list[str]:
        """The lease keys the table lists for this worker (eventually consistent, as the index is)."""
        if not self.indexed and self._clock.monotonic() >= self._retry_at:
            self.indexed = True
        if self.indexed:
            try:
                return self._query()
            except (botocore.exceptions.ClientError, LeaseTableMissing) as exc:
                # DynamoDB answers ValidationException for a missing index; moto ResourceNotFound
                if isinstance(exc, LeaseTableMissing) and OWNER_INDEX not in str(exc):
                    raise
                if isinstance(exc, botocore.exceptions.ClientError) and error_code(exc) != "ValidationException":
                    raise
                self.indexed = False
                self._retry_at = self._clock.monotonic() + INDEX_RETRY
                if not self._warned:
                    self._warned = True
                    self._log.warning(f"the lease table has no usable {OWNER_INDEX} (KCL 3 creates it); finding this "
                                      "worker's leases by scanning the table instead", error=str(exc)[:200])
        return [le.lease_key for le in self.table.list_leases() if le.lease_owner == self.worker_id]

    def _query(self) -> list[str]:
        keys: list[str] = []
        args: dict[str, Any] = {"TableName": self.table.table_name, "IndexName": OWNER_INDEX,
                                "KeyConditionExpression": "leaseOwner = :o",
                                "ExpressionAttributeValues": {":o": {"S": self.worker_id}}}
        while True:
            reply = self.table.call("Query", lambda: self.table.client.query(**args))
            keys += [item["leaseKey"]["S"] for item in reply.get("Items", []) if "leaseKey" in item]
            last = reply.get("LastEvaluatedKey")
            if not last:
                return keys
            args["ExclusiveStartKey"] = last

    def newly_assigned(self, held: Collection[str]) -> list[Lease]:
        """The leases assigned to this worker that it does not hold yet and may start now."""
        found: list[Lease] = []
        for key in self.owned_keys():
            if key in held:
                continue
            lease = self.table.get(key)
            # the index lags the table: the row itself decides
            if lease is not None and lease.lease_owner == self.worker_id and lease.checkpoint_owner is None \
                    and not lease.is_finished:
                found.append(lease)
        return found
