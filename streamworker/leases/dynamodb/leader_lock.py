"""The leader lock of a KCL 3 fleet, held as AWS's DynamoDB lock client holds it, so that KCL 3
workers and streamworker workers elect one leader among them.

The lock is one item (key ``Leader``) with ``ownerName``, ``leaseDuration`` (milliseconds, as a
string) and ``recordVersionNumber`` (a fresh UUID on every write). Its holder heartbeats by
rewriting the version number, conditional on the one it wrote last; a contender remembers the
version it saw and takes the lock, conditional on that version, only once it has seen it unchanged
for the lease duration the item itself states (a deleted or ``isReleased`` item is free at once).
Releasing deletes the item, conditional on owner and version, so the next worker takes it on its
next try instead of waiting out the duration. KCL 3.5 keeps the item in the lease table (key
``leaseKey``, ``entityType`` ``LEADER``); KCL 3.0–3.4 in ``<app>-CoordinatorState`` (key ``key``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamworker.clock import Clock
from streamworker.leases.dynamodb.table import LeaseConflict, LeaseTable

LEADER_KEY = "Leader"
#: KCL's dynamoDbLockBasedLeaderLeaseDurationInMillis and ...HeartbeatPeriodInMillis.
KCL_LOCK_DURATION = 120.0
KCL_HEARTBEAT = 30.0


@dataclass(frozen=True)
class LockRow:
    owner: str
    version: str
    duration: float  # seconds
    released: bool = False


class LeaderLock:
    """One worker's side of the lock. Not thread-safe: one thread (the take loop) drives it."""

    def __init__(self, table: LeaseTable, worker_id: str, clock: Clock, *, table_name: str | None = None,
                 key_name: str = "leaseKey", entity_type: str | None = "LEADER", duration: float = KCL_LOCK_DURATION,
                 new_version: Callable[[], str] = lambda: str(uuid.uuid4())) -> None:
        self.table, self.worker_id, self.clock = table, worker_id, clock
        self.table_name = table_name or table.table_name
        self.key_name, self.entity_type = key_name, entity_type
        self.duration = duration
        self._new_version = new_version
        #: The version we last wrote while we hold the lock, else None.
        self.version: str | None = None
        self._held_since_write: float | None = None
        #: A lock of another worker: its version and when we first saw it.
        self._seen: tuple[str, float] | None = None
        #: Who holds the lock as last read (None: nobody).
        self.holder: str | None = None

    @property
    def held(self) -> bool:
        """True while our last write is younger than the duration we wrote into the lock."""
        return (self.version is not None and self._held_since_write is not None
                and self.clock.monotonic() - self._held_since_write < self.duration)

    def _key(self) -> dict[str, Any]:
        return {self.key_name: {"S": LEADER_KEY}}

    def read(self) -> LockRow | None:
        reply = self.table.call("GetItem", lambda: self.table.client.get_item(
            TableName=self.table_name, Key=self._key(), ConsistentRead=True))
        item = reply.get("Item")
        if not item:
            return None
        try:
            duration = float(item["leaseDuration"]["S"]) / 1000.0
        except (KeyError, TypeError, ValueError):
            duration = KCL_LOCK_DURATION
        return LockRow(str(item.get("ownerName", {}).get("S", "")), str(item.get("recordVersionNumber", {}).get("S", "")),
                       duration, bool(item.get("isReleased", {}).get("BOOL", False)))

    def try_acquire(self) -> bool:
        """Heartbeat the lock if we hold it, else take it if it is free or stale; True if held."""
        if self.version is not None:
            if self._heartbeat():
                return True
        row = self.read()
        now = self.clock.monotonic()
        if row is None:
            return self._write(None)
        if row.owner == self.worker_id and row.version == self.version:
            return self._heartbeat()
        self.holder = row.owner
        if row.released:
            return self._write(row.version)
        if self._seen is None or self._seen[0] != row.version:
            self._seen = (row.version, now)
            return False
        if now - self._seen[1] >= row.duration:
            return self._write(row.version)
        return False

    def _write(self, expected: str | None) -> bool:
        """Put the lock with us as owner: absent, or still at the version we saw."""
        version = self._new_version()
        item: dict[str, Any] = {**self._key(), "ownerName": {"S": self.worker_id},
                                "leaseDuration": {"S": str(int(self.duration * 1000))},
                                "recordVersionNumber": {"S": version}}
        if self.entity_type:
            item["entityType"] = {"S": self.entity_type}
        if expected is None:
            cond: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(#k)",
                                    "ExpressionAttributeNames": {"#k": self.key_name}}
        else:
            cond = {"ConditionExpression": "#v = :v", "ExpressionAttributeNames": {"#v": "recordVersionNumber"},
                    "ExpressionAttributeValues": {":v": {"S": expected}}}
        started = self.clock.monotonic()
        try:
            self.table.call("PutItem", lambda: self.table.client.put_item(
                TableName=self.table_name, Item=item, **cond))
        except LeaseConflict:
            self._seen = None
            return False
        self.version, self._held_since_write, self._seen, self.holder = version, started, None, self.worker_id
        return True

    def _heartbeat(self) -> bool:
        version = self._new_version()
        started = self.clock.monotonic()
        try:
            self.table.call("UpdateItem", lambda: self.table.client.update_item(
                TableName=self.table_name, Key=self._key(),
                UpdateExpression="SET #v = :new, #d = :d",
                ConditionExpression="#v = :old AND #o = :me",
                ExpressionAttributeNames={"#v": "recordVersionNumber", "#d": "leaseDuration", "#o": "ownerName"},
                ExpressionAttributeValues={":new": {"S": version}, ":old": {"S": self.version or ""},
                                           ":me": {"S": self.worker_id}, ":d": {"S": str(int(self.duration * 1000))}}))
        except LeaseConflict:
            self.version = self._held_since_write = None
            return False
        self.version, self._held_since_write = version, started
        return True

    def release(self) -> bool:
        """Delete the lock if we still hold it (the next worker takes it at once); True if we did."""
        if self.version is None:
            return False
        version, self.version, self._held_since_write = self.version, None, None
        try:
            self.table.call("DeleteItem", lambda: self.table.client.delete_item(
                TableName=self.table_name, Key=self._key(),
                ConditionExpression="#v = :v AND #o = :me",
                ExpressionAttributeNames={"#v": "recordVersionNumber", "#o": "ownerName"},
                ExpressionAttributeValues={":v": {"S": version}, ":me": {"S": self.worker_id}}))
        except LeaseConflict:
            return False
        self.holder = None
        return True
