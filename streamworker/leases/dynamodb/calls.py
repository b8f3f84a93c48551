"""One DynamoDB call to the lease table: counted, retried while the fault is transient, and its
error mapped to what the lease layer raises (see ``table.py``); an update asks for the row back
with a refusal where the endpoint allows it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import botocore.exceptions
import structlog

from streamworker.aws.errors import denied_message, describe, error_code, is_denied, is_transient
from streamworker.backoff import Backoff
from streamworker.clock import Clock
from streamworker.leases.dynamodb.errors import (
    LeaseConflict,
    LeaseTableAccessDenied,
    LeaseTableMissing,
    LeaseTableUnavailable,
)

T = TypeVar("T")

log = structlog.get_logger("streamworker.lease_table")

#: The DynamoDB API call behind each of our operations (for error messages).
_API = {"Renew": "UpdateItem", "Take": "UpdateItem", "Handoff": "UpdateItem", "Checkpoint": "UpdateItem",
        "SetCheckpoint": "UpdateItem", "PrepareCheckpoint": "UpdateItem", "SetChildShards": "UpdateItem", "Release": "UpdateItem",
        "MarkHalted": "UpdateItem", "Scan": "Scan", "GetItem": "GetItem", "PutItem": "PutItem",
        "DeleteItem": "DeleteItem"}


class TableCalls:
    """Calls to one table; ``counts`` is the number made, by operation (for the cost figures)."""

    def __init__(self, table_name: str, retry_deadline: float, clock: Clock) -> None:
        self.table_name, self.retry_deadline, self.clock = table_name, retry_deadline, clock
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        #: Ask for the row with a refused update (off once an endpoint refuses the parameter).
        self._row_on_refusal = True

    def update_item(self, op: str, client: Any, request: dict[str, Any]) -> dict[str, Any]:
        """``client.update_item(**request)`` as ``op``; a refusal carries the row where the
        endpoint sends it (``ReturnValuesOnConditionCheckFailure``: no read units, no GetItem to
        learn whether a refused renewal was a handoff request or the lease lost)."""
        if not self._row_on_refusal:
            return self(op, lambda: client.update_item(**request))
        asked = {**request, "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
        try:
            return self(op, lambda: client.update_item(**asked))
        except botocore.exceptions.ClientError as exc:
            # an endpoint that predates the parameter (DynamoDB has it since 2023); decided on
            # this request's parameter, not the flag: writes in flight at once all meet it
            if error_code(exc) != "ValidationException" or "ReturnValuesOnConditionCheckFailure" not in str(exc):
                raise
            with self._lock:
                first, self._row_on_refusal = self._row_on_refusal, False
            if first:
                log.warning("the lease table's endpoint refuses ReturnValuesOnConditionCheckFailure; a refused "
                            "write now reads the row instead (a GetItem)", table=self.table_name,
                            error=str(exc)[:200])
            return self(op, lambda: client.update_item(**request))

    def __call__(self, op: str, fn: Callable[[], T]) -> T:
        backoff = Backoff(base=0.05, cap=1.0)
        deadline = self.clock.monotonic() + self.retry_deadline
        while True:
            with self._lock:
                self.counts[op] = self.counts.get(op, 0) + 1
            try:
                return fn()
            except Exception as exc:
                code = error_code(exc)
                if code == "ConditionalCheckFailedException":
                    raise LeaseConflict(op, refused_row(exc)) from None
                api = _API.get(op, op)
                if is_denied(exc):
                    raise LeaseTableAccessDenied(
                        f"lease table {self.table_name!r}: "
                        f"{denied_message(exc, 'dynamodb', api, f'table/{self.table_name}')}") from None
                if code == "ResourceNotFoundException":
                    raise LeaseTableMissing(f"lease table {self.table_name!r} does not exist ({api}: {exc})") from None
                if not is_transient(exc):
                    raise
                err: BaseException = exc
            delay = backoff.next_delay()
            if self.clock.monotonic() + delay > deadline:
                raise LeaseTableUnavailable(
                    f"lease table {self.table_name!r}: {op} failed: {describe(err)}: {str(err)[:200]}"
                ) from None
            self.clock.sleep(delay)


def refused_row(exc: BaseException) -> dict[str, Any] | None:
    """The row a ConditionalCheckFailedException carries (``ReturnValuesOnConditionCheckFailure``)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        item = exc.response.get("Item")
        if isinstance(item, dict) and item:
            return item
    return None
