"""What the lease table raises: a refused condition, a table out of reach for now, and one this
worker cannot use at all."""

from __future__ import annotations

from streamworker.errors import StreamworkerError


class LeaseConflict(StreamworkerError):
    """A conditional write failed: someone else changed the lease."""


class LeaseTableUnavailable(StreamworkerError):
    """The lease table could not be reached within the retry deadline."""


class LeaseTableFatal(StreamworkerError):
    """The lease table cannot be used by this worker at all: it stops (see the README)."""


class LeaseTableAccessDenied(LeaseTableFatal):
    """DynamoDB refused an action on the lease table (a missing IAM permission or a bad key)."""


class LeaseTableMissing(LeaseTableFatal):
    """The lease table does not exist (it was deleted while the worker ran)."""
