"""What the lease table raises: a refused condition, a table out of reach for now, and one this
worker cannot use at all."""

from __future__ import annotations

from typing import Any

from streamworker.errors import StreamworkerError


class LeaseConflict(StreamworkerError):
    """A conditional write failed: someone else changed the lease.

    ``current``: the row as the table saw it when it refused the write (DynamoDB's
    ``ReturnValuesOnConditionCheckFailure``), None where the table did not send it (a missing
    row, stand-ins that ignore the parameter)."""

    def __init__(self, op: str, current: dict[str, Any] | None = None) -> None:
        super().__init__(op)
        self.current = current


class LeaseTableUnavailable(StreamworkerError):
    """The lease table could not be reached within the retry deadline."""


class LeaseTableFatal(StreamworkerError):
    """The lease table cannot be used by this worker at all: it stops (see the README)."""


class LeaseTableAccessDenied(LeaseTableFatal):
    """DynamoDB refused an action on the lease table (a missing IAM permission or a bad key)."""


class LeaseTableMissing(LeaseTableFatal):
    """The lease table does not exist (it was deleted while the worker ran)."""
