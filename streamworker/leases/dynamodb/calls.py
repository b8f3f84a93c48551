"""One DynamoDB call to the lease table: counted, retried while the fault is transient, and its
error mapped to what the lease layer raises (see ``table.py``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import botocore.exceptions

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

#: The DynamoDB API call behind each of our operations (for error messages).
_API = {"Renew": "UpdateItem", "Take": "UpdateItem", "Handoff": "UpdateItem", "Checkpoint": "UpdateItem",
        "PrepareCheckpoint": "UpdateItem", "SetChildShards": "UpdateItem", "Release": "UpdateItem",
        "MarkHalted": "UpdateItem", "Scan": "Scan", "GetItem": "GetItem", "PutItem": "PutItem",
        "DeleteItem": "DeleteItem"}


class TableCalls:
    """Calls to one table; ``counts`` is the number made, by operation (for the cost figures)."""

    def __init__(self, table_name: str, retry_deadline: float, clock: Clock) -> None:
        self.table_name, self.retry_deadline, self.clock = table_name, retry_deadline, clock
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()

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
