"""One classification of AWS (botocore) errors, shared by the Kinesis readers and the lease table.

Three kinds: *transient* (retry with backoff: throttling, 5xx, timeouts, broken or garbled
replies, credentials that cannot be fetched or have expired), *denied* (a permission or a key
is missing: retrying will not help, say which action on which resource) and everything else
(the caller decides; usually permanent).
"""

from __future__ import annotations

import re

import botocore.exceptions

THROTTLE_CODES = frozenset({
    "ProvisionedThroughputExceededException", "LimitExceededException", "KMSThrottlingException",
    "ThrottlingException", "Throttling", "RequestLimitExceeded", "TooManyRequestsException",
})
TRANSIENT_CODES = THROTTLE_CODES | frozenset({
    "InternalFailure", "InternalFailureException", "InternalServerError", "ServiceUnavailable",
    "ServiceUnavailableException", "RequestTimeout", "RequestTimeoutException",
    # Temporary credentials that expired between refreshes: the next refresh brings new ones.
    "ExpiredToken", "ExpiredTokenException", "RequestExpired", "IDPCommunicationError",
})
DENIED_CODES = frozenset({
    "AccessDeniedException", "AccessDenied", "UnauthorizedOperation", "UnrecognizedClientException",
    "InvalidClientTokenId", "MissingAuthenticationTokenException", "KMSAccessDeniedException",
    "KMSDisabledException", "KMSInvalidStateException", "KMSNotFoundException",
})
CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectTimeoutError,
)
#: botocore errors that describe a mistake in the call or the set-up, not a passing fault.
_PERMANENT_BOTOCORE: tuple[type[Exception], ...] = (
    botocore.exceptions.ParamValidationError,
    botocore.exceptions.ValidationError,
    botocore.exceptions.NoRegionError,
    botocore.exceptions.UnknownServiceError,
    botocore.exceptions.UnknownEndpointError,
    botocore.exceptions.ProfileNotFound,
    botocore.exceptions.InvalidConfigError,
    botocore.exceptions.DataNotFoundError,
)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a ClientError, else ''."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def http_status(exc: BaseException) -> int:
    if isinstance(exc, botocore.exceptions.ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    return 0


def is_denied(exc: BaseException) -> bool:
    """A missing permission or rejected key: retrying does not help."""
    return error_code(exc) in DENIED_CODES


def is_transient(exc: BaseException) -> bool:
    """Worth retrying with backoff. Any botocore error outside the client's own (credential
    fetch failures, a body cut short, a CRC mismatch, a timeout) is transient; so are
    throttling, 5xx and expired temporary credentials."""
    if isinstance(exc, botocore.exceptions.ClientError):
        return error_code(exc) in TRANSIENT_CODES or http_status(exc) >= 500
    if isinstance(exc, UnicodeDecodeError):  # a reply garbled on the way: botocore's parser lets it out
        return True
    if isinstance(exc, _PERMANENT_BOTOCORE):
        return False
    return isinstance(exc, botocore.exceptions.BotoCoreError)


def describe(exc: BaseException) -> str:
    """A short name for an error: its AWS code, or its class."""
    return error_code(exc) or type(exc).__name__


_ACTION = re.compile(r"perform:\s*(\S+)")
_RESOURCE = re.compile(r"on resource:\s*(\S+)")


def denied_message(exc: BaseException, service: str, operation: str, resource: str) -> str:
    """One line naming the action and the resource that were refused."""
    message = str(exc.response.get("Error", {}).get("Message", "")) if isinstance(
        exc, botocore.exceptions.ClientError) else str(exc)
    action = (m.group(1) if (m := _ACTION.search(message)) else f"{service}:{operation}").rstrip(",.")
    where = (m.group(1) if (m := _RESOURCE.search(message)) else resource).rstrip(",.")
    return f"{error_code(exc) or 'access denied'}: not allowed to perform {action} on {where} ({message or 'no message'})"
