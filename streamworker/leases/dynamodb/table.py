"""DynamoDB I/O for the KCL lease table. Every mutation is conditional on the lease counter.

A write that fails its condition raises ``LeaseConflict``, carrying the row as the table saw it
(``after_conflict`` reads it where the table sends none); transient faults (throttling, 5xx,
timeouts, refused connections, credentials that cannot be had for a moment) are retried with
jittered backoff for up to ``retry_deadline`` seconds and then raise ``LeaseTableUnavailable``.
A refused permission raises ``LeaseTableAccessDenied`` and a table that is gone
``LeaseTableMissing``: retrying those helps nobody (``calls.py``). The caller decides what a
conflict means.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import botocore.exceptions
import structlog

from streamworker.aws.errors import error_code
from streamworker.clock import Clock, SystemClock
from streamworker.leases.dynamodb.calls import TableCalls
from streamworker.leases.dynamodb.errors import (
    LeaseConflict,
    LeaseTableAccessDenied,
    LeaseTableFatal,
    LeaseTableMissing,
    LeaseTableUnavailable,
)
from streamworker.leases.lease import (
    CHECKPOINT,
    CHECKPOINT_OWNER,
    CHECKPOINT_SUB,
    CHECKPOINT_TIMESTAMP,
    CHILD_SHARD_IDS,
    ENTITY_TYPE,
    HALTED,
    LEASE_COUNTER,
    LEASE_KEY,
    LEASE_OWNER,
    MILLIS_BEHIND,
    OWNER_SWITCHES,
    PENDING_CHECKPOINT,
    PENDING_CHECKPOINT_STATE,
    PENDING_CHECKPOINT_SUB,
    RECORDS_PER_SECOND,
    THROUGHPUT_KBPS,
    Lease,
    MalformedLease,
    is_lease_item,
    lease_from_item,
    lease_to_item,
    number,
)
from streamworker.records import ExtendedSequenceNumber

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

__all__ = ["LeaseConflict", "LeaseTable", "LeaseTableAccessDenied", "LeaseTableFatal", "LeaseTableMissing",
           "LeaseTableUnavailable"]

log = structlog.get_logger("streamworker.lease_table")

T = TypeVar("T")


class LeaseTable:
    """The lease table of one application."""

    def __init__(self, client: DynamoDBClient, table_name: str, *, retry_deadline: float = 5.0,
                 clock: Clock | None = None) -> None:
        self.client = client
        self.table_name = table_name
        self._call = TableCalls(table_name, retry_deadline, clock or SystemClock())
        #: Rows of the last scan that could not be read, by lease key: the problem.
        self.malformed: dict[str, str] = {}
        self._reported: set[tuple[str, str]] = set()
        #: Count of DynamoDB calls by operation, for the cost figures.
        self.calls = self._call.counts
        #: KCL 3.5's rows of the last scan that are not leases: its workers (the worker id of
        #: each WORKER_METRIC_STATS row, with the wall-clock second it last reported) and the
        #: leader lock (owner and record version), None when no leader row is present.
        self.kcl3_workers: dict[str, float | None] = {}
        self.kcl3_leader: tuple[str, str] | None = None

    def parallel_calls(self, wanted: int) -> int:
        """How many calls to make at once: ``wanted``, or half the client's connection pool if
        that is less. A client passed to ``Worker`` keeps botocore's 10 connections: 20 renewal
        threads opened and discarded one connection per renewal beyond them (a TLS handshake
        each on AWS, and urllib3's "Connection pool is full" warning). The renewer and the
        taker each use at most half, so together they stay within the pool."""
        config: Any = getattr(getattr(self.client, "meta", None), "config", None)
        try:
            pool = int(config.max_pool_connections)
        except (AttributeError, TypeError, ValueError):
            return wanted
        return max(1, min(wanted, pool // 2))

    def call(self, op: str, fn: Callable[[], T]) -> T:
        """One DynamoDB call (counted), with the errors and retries the module describes."""
        return self._call(op, fn)

    # -- table -----------------------------------------------------------------------------

    def ensure_table(self, wait_seconds: float = 60.0) -> bool:
        """Create the table (PAY_PER_REQUEST) if missing; return True if this call created it."""
        created = False
        try:
            self.client.describe_table(TableName=self.table_name)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise
            try:
                self.client.create_table(
                    TableName=self.table_name,
                    KeySchema=[{"AttributeName": LEASE_KEY, "KeyType": "HASH"}],
                    AttributeDefinitions=[{"AttributeName": LEASE_KEY, "AttributeType": "S"}],
                    BillingMode="PAY_PER_REQUEST",
                )
                created = True
                log.info("created lease table", table=self.table_name)
            except botocore.exceptions.ClientError as exc2:
                if error_code(exc2) != "ResourceInUseException":  # another worker created it
                    raise
        waiter = self.client.get_waiter("table_exists")
        waiter.wait(TableName=self.table_name,
                    WaiterConfig={"Delay": 1, "MaxAttempts": max(1, int(wait_seconds))})
        return created

    # -- reads -----------------------------------------------------------------------------

    def list_leases(self, *, consistent: bool = False) -> list[Lease]:
        """Every lease. Eventually consistent by default (half the read units): a stale row can
        only delay a decision, since every write that acts on one is conditional on its counter."""
        leases: list[Lease] = []
        args: dict[str, Any] = {"TableName": self.table_name, "ConsistentRead": consistent}
        malformed: dict[str, str] = {}
        workers: dict[str, float | None] = {}
        leader: tuple[str, str] | None = None
        while True:
            resp = self.call("Scan", lambda: self.client.scan(**args))
            # Only lease rows: other rows a KCL version may keep in the table are left alone.
            for item in resp.get("Items", []):
                if not is_lease_item(item):
                    kind = item.get(ENTITY_TYPE, {}).get("S")
                    key = item.get(LEASE_KEY, {}).get("S")
                    if kind == "WORKER_METRIC_STATS" and key:
                        workers[key] = number(item, "lut")
                    elif kind == "LEADER":
                        leader = (str(item.get("ownerName", {}).get("S", "")),
                                  str(item.get("recordVersionNumber", {}).get("S", "")))
                    continue
                try:
                    leases.append(lease_from_item(item))
                except MalformedLease as exc:
                    malformed[exc.lease_key] = exc.problem
                    self._report(exc)
            last = resp.get("LastEvaluatedKey")
            if not last:
                self.malformed = malformed
                self.kcl3_workers, self.kcl3_leader = workers, leader
                return leases
            args["ExclusiveStartKey"] = last

    def _report(self, exc: MalformedLease) -> None:
        """One error per row and problem, not one per scan."""
        if (exc.lease_key, exc.problem) not in self._reported:
            self._reported.add((exc.lease_key, exc.problem))
            log.error(str(exc), table=self.table_name, lease_key=exc.lease_key)

    def after_conflict(self, conflict: LeaseConflict, lease_key: str) -> Lease | None:
        """The lease as it is after ``conflict`` refused a write to it: the row the refusal
        carried, else read (a GetItem) where the table did not send one. Raises MalformedLease."""
        return self.get(lease_key) if conflict.current is None else self._lease(conflict.current)

    def get(self, lease_key: str) -> Lease | None:
        resp = self.call("GetItem", lambda: self.client.get_item(
            TableName=self.table_name, Key={LEASE_KEY: {"S": lease_key}}, ConsistentRead=True))
        item = resp.get("Item")
        return self._lease(item) if item else None

    def _lease(self, item: dict[str, Any]) -> Lease:
        """A row read back, its problem reported once if it is not a lease (MalformedLease)."""
        try:
            return lease_from_item(item)
        except MalformedLease as exc:
            self._report(exc)
            raise

    # -- writes ----------------------------------------------------------------------------

    def create_if_absent(self, lease: Lease) -> bool:
        try:
            self.call("PutItem", lambda: self.client.put_item(
                TableName=self.table_name, Item=lease_to_item(lease),
                ConditionExpression="attribute_not_exists(#k)", ExpressionAttributeNames={"#k": LEASE_KEY}))
            return True
        except LeaseConflict:
            return False

    def _update(self, op: str, lease_key: str, counter: int, update: str, condition: str,
                names: dict[str, str], values: dict[str, Any]) -> dict[str, Any]:
        names = {"#c": LEASE_COUNTER, **names}
        values = {":c": {"N": str(counter)}, ":c1": {"N": str(counter + 1)}, **values}
        request: dict[str, Any] = {
            "TableName": self.table_name, "Key": {LEASE_KEY: {"S": lease_key}}, "UpdateExpression": update,
            "ConditionExpression": f"#c = :c AND ({condition})" if condition else "#c = :c",
            "ExpressionAttributeNames": names, "ExpressionAttributeValues": values, "ReturnValues": "ALL_NEW"}
        return dict(self._call.update_item(op, self.client, request).get("Attributes", {}))

    @staticmethod
    def _holder_condition(as_checkpoint_owner: bool) -> tuple[str, dict[str, str]]:
        if as_checkpoint_owner:
            return "#co = :me", {"#co": CHECKPOINT_OWNER}
        return "#o = :me AND attribute_not_exists(#co)", {"#o": LEASE_OWNER, "#co": CHECKPOINT_OWNER}

    def renew(self, lease_key: str, counter: int, owner: str, *, as_checkpoint_owner: bool = False,
              records_per_second: float | None = None, millis_behind_latest: int | None = None,
              throughput_kbps: float | None = None) -> Lease:
        """Bump the counter; also record the shard's records/s, millis behind and KCL 3's
        throughput (same write, no extra cost)."""
        cond, names = self._holder_condition(as_checkpoint_owner)
        values: dict[str, Any] = {":me": {"S": owner}}
        update = "SET #c = :c1"
        figures: tuple[tuple[str, float | None, Callable[[float], str]], ...] = (
            (RECORDS_PER_SECOND, records_per_second, lambda v: f"{v:.1f}"),
            (THROUGHPUT_KBPS, throughput_kbps, lambda v: repr(float(v))),
            (MILLIS_BEHIND, millis_behind_latest, lambda v: str(int(v))))
        for i, (attr, value, encode) in enumerate(figures):
            if value is not None:
                update += f", #f{i} = :f{i}"
                names = {**names, f"#f{i}": attr}
                values[f":f{i}"] = {"N": encode(value)}
        item = self._update("Renew", lease_key, counter, update, cond, names, values)
        return lease_from_item(item)

    def take(self, lease: Lease, owner: str) -> Lease:
        """Take an expired or unowned lease (also ends a stalled handoff)."""
        update = "SET #c = :c1, #o = :me REMOVE #co, #h"
        names = {"#o": LEASE_OWNER, "#co": CHECKPOINT_OWNER, "#h": HALTED}
        values: dict[str, Any] = {":me": {"S": owner}}
        if lease.lease_owner not in (None, owner) or lease.checkpoint_owner is not None:
            update = "SET #c = :c1, #o = :me ADD #sw :one REMOVE #co, #h"
            names["#sw"] = OWNER_SWITCHES
            values[":one"] = {"N": "1"}
        return lease_from_item(self._update("Take", lease.lease_key, lease.lease_counter, update, "",
                                            names, values))

    def request_handoff(self, lease: Lease, new_owner: str, *, kcl3: bool = False) -> Lease:
        """Steal gracefully: the current owner keeps the shard as checkpoint owner until it has
        checkpointed, then clears ``checkpointOwner`` and the new owner starts.

        ``kcl3``: the owner is a KCL 3 worker, asked as KCL 3's own leader asks
        (``initiateGracefulLeaseHandoff``): the counter is left alone, so the owner's renewals go
        on, find ``checkpointOwner`` and run its graceful shutdown (``shutdownRequested``); a
        bumped counter would fail its renewal and end the shard as lost. Otherwise (streamworker,
        KCL 2.x, which knows no ``checkpointOwner``) the counter is bumped: a KCL 2 owner loses
        the lease at its next renewal instead of renewing it forever."""
        if lease.lease_owner is None:
            raise ValueError("an unowned lease is taken, not handed off")
        # Fenced on the owner, not the counter (as KCL 3 asks): the owner renews every failover/3,
        # so a request fenced on a counter read one scan ago lost the race for most leases of a
        # large table and a joining worker needed one cycle per few leases.
        update = "SET #o = :new, #co = :old" if kcl3 else "SET #o = :new, #co = :old, #c = #c + :one"
        values: dict[str, Any] = {":new": {"S": new_owner}, ":old": {"S": lease.lease_owner}}
        if not kcl3:
            values[":one"] = {"N": "1"}
        resp = self.call("Handoff", lambda: self.client.update_item(
            TableName=self.table_name,
            Key={LEASE_KEY: {"S": lease.lease_key}},
            UpdateExpression=update,
            ConditionExpression="attribute_exists(#k) AND #o = :old AND attribute_not_exists(#co)",
            ExpressionAttributeNames={"#k": LEASE_KEY, "#o": LEASE_OWNER, "#co": CHECKPOINT_OWNER,
                                      **({} if kcl3 else {"#c": LEASE_COUNTER})},
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        ))
        return lease_from_item(dict(resp.get("Attributes", {})))

    def checkpoint(self, lease_key: str, counter: int, owner: str, checkpoint: ExtendedSequenceNumber,
                   pending: ExtendedSequenceNumber | None, *, as_checkpoint_owner: bool = False) -> Lease:
        cond, names = self._holder_condition(as_checkpoint_owner)
        names = {**names, "#cp": CHECKPOINT, "#cps": CHECKPOINT_SUB, "#sw": OWNER_SWITCHES,
                 "#p": PENDING_CHECKPOINT, "#ps": PENDING_CHECKPOINT_SUB, "#pst": PENDING_CHECKPOINT_STATE}
        values: dict[str, Any] = {
            ":me": {"S": owner}, ":cp": {"S": checkpoint.sequence_number},
            ":cps": {"N": str(checkpoint.sub_sequence_number)}, ":zero": {"N": "0"},
        }
        names["#ts"] = CHECKPOINT_TIMESTAMP
        update = "SET #c = :c1, #cp = :cp, #cps = :cps, #sw = :zero"
        if pending is None:
            update += " REMOVE #p, #ps, #pst, #ts"
        else:
            update += ", #p = :p, #ps = :ps REMOVE #ts"
            values[":p"] = {"S": pending.sequence_number}
            values[":ps"] = {"N": str(pending.sub_sequence_number)}
            del names["#pst"]
        return lease_from_item(self._update("Checkpoint", lease_key, counter, update, cond, names, values))

    def set_checkpoint(self, lease: Lease, to: ExtendedSequenceNumber, timestamp: float | None = None) -> Lease:
        """An operator's rewind (or skip ahead): write ``to`` as the checkpoint whoever holds the
        lease, fenced on the counter read in ``lease`` (LeaseConflict if it moved since). The
        counter bump and the removed owner take the lease from its holder (its renewal and
        checkpoints are refused: ``lease_lost``) and free it, so the next taker starts at ``to``."""
        names = {"#cp": CHECKPOINT, "#cps": CHECKPOINT_SUB, "#sw": OWNER_SWITCHES, "#o": LEASE_OWNER,
                 "#co": CHECKPOINT_OWNER, "#p": PENDING_CHECKPOINT, "#ps": PENDING_CHECKPOINT_SUB,
                 "#pst": PENDING_CHECKPOINT_STATE, "#h": HALTED, "#ts": CHECKPOINT_TIMESTAMP}
        values: dict[str, Any] = {":cp": {"S": to.sequence_number}, ":cps": {"N": str(to.sub_sequence_number)},
                                  ":zero": {"N": "0"}}
        update = "SET #c = :c1, #cp = :cp, #cps = :cps, #sw = :zero"
        if timestamp is not None:
            update += ", #ts = :ts"
            values[":ts"] = {"N": f"{timestamp:.3f}"}
        update += " REMOVE #o, #co, #p, #ps, #pst, #h"
        if timestamp is None:
            update += ", #ts"
        return lease_from_item(self._update("SetCheckpoint", lease.lease_key, lease.lease_counter, update, "",
                                            names, values))

    def prepare_checkpoint(self, lease_key: str, counter: int, owner: str, pending: ExtendedSequenceNumber,
                           *, as_checkpoint_owner: bool = False) -> Lease:
        cond, names = self._holder_condition(as_checkpoint_owner)
        names = {**names, "#p": PENDING_CHECKPOINT, "#ps": PENDING_CHECKPOINT_SUB}
        values = {":me": {"S": owner}, ":p": {"S": pending.sequence_number},
                  ":ps": {"N": str(pending.sub_sequence_number)}}
        return lease_from_item(self._update("PrepareCheckpoint", lease_key, counter,
                                            "SET #c = :c1, #p = :p, #ps = :ps", cond, names, values))

    def set_child_shards(self, lease_key: str, counter: int, owner: str, children: list[str],
                         *, as_checkpoint_owner: bool = False) -> Lease:
        cond, names = self._holder_condition(as_checkpoint_owner)
        names = {**names, "#ch": CHILD_SHARD_IDS}
        values = {":me": {"S": owner}, ":ch": {"SS": sorted(children)}}
        return lease_from_item(self._update("SetChildShards", lease_key, counter,
                                            "SET #c = :c1, #ch = :ch", cond, names, values))

    def release(self, lease_key: str, counter: int, owner: str, *, as_checkpoint_owner: bool = False) -> Lease:
        """Give the lease up at once: the next taker needs no failover wait. A handing-off
        holder clears ``checkpointOwner`` so the new owner starts."""
        cond, names = self._holder_condition(as_checkpoint_owner)
        update = "SET #c = :c1 REMOVE #co, #h" if as_checkpoint_owner else "SET #c = :c1 REMOVE #o, #h"
        names = {**names, "#h": HALTED}
        if not as_checkpoint_owner:
            names["#o"] = LEASE_OWNER
        return lease_from_item(self._update("Release", lease_key, counter, update, cond, names,
                                            {":me": {"S": owner}}))

    def mark_halted(self, lease_key: str, counter: int, owner: str, reason: str | None, *,
                    as_checkpoint_owner: bool = False) -> Lease:
        """Record (or clear) why the holder halted the shard; take and release clear it too."""
        cond, names = self._holder_condition(as_checkpoint_owner)
        names = {**names, "#h": HALTED}
        values: dict[str, Any] = {":me": {"S": owner}}
        if reason is None:
            update = "SET #c = :c1 REMOVE #h"
        else:
            update = "SET #c = :c1, #h = :h"
            values[":h"] = {"S": reason[:1000]}
        return lease_from_item(self._update("MarkHalted", lease_key, counter, update, cond, names, values))

    def delete(self, lease_key: str, counter: int) -> bool:
        """Delete a lease if its counter is still ``counter`` (nobody renewed or took it since)."""
        try:
            self.call("DeleteItem", lambda: self.client.delete_item(
                TableName=self.table_name, Key={LEASE_KEY: {"S": lease_key}}, ConditionExpression="#c = :c",
                ExpressionAttributeNames={"#c": LEASE_COUNTER},
                ExpressionAttributeValues={":c": {"N": str(counter)}}))
            return True
        except LeaseConflict:
            return False

    def delete_all(self) -> None:
        """Remove every lease (tests and the demo only)."""
        for lease in self.list_leases():
            self.client.delete_item(TableName=self.table_name, Key={LEASE_KEY: {"S": lease.lease_key}})
