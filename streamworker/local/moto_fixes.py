"""Where moto answers differently from DynamoDB for a request a migrating user's KCL sends.

KCL 1.x (and its MultiLangDaemon) writes checkpoints with the legacy ``Expected`` parameter,
``{"checkpoint": {"Value": {"S": "SHARD_END"}, "ComparisonOperator": "NE"}}``. DynamoDB compares
``Value`` with the operator; moto 5 reads ``Value`` as an equality test and refuses every KCL 1.x
checkpoint with ConditionalCheckFailed.

A request signed for a region moto does not know (a typo, ``us-east-9``) failed inside moto with
a KeyError: the client got an HTML 500 page and the server's terminal a 55-line traceback per
retry. It now gets a one-line JSON error naming the region, as a client error (400).

moto's threaded server checks a write's condition and writes in two steps, with no lock: two
workers taking the same free lease at once could both succeed (both processed the shard until one
checkpoint was refused), which DynamoDB never allows (an item's conditional writes are atomic).
Its item reads and writes are now serialized.

The fixes are applied to moto in this process only, when a local moto server starts.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from typing import Any

#: The region and service of a SigV4 signature: ``Credential=KEY/DATE/REGION/SERVICE/aws4_request``.
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


def apply() -> None:
    """Apply the fixes (idempotent)."""
    _read_expected_as_dynamodb_does()
    _refuse_unknown_regions()
    _atomic_item_operations()


#: DynamoDB's item operations that read or write items, serialized by one lock (moto is in-process
#: and GIL-bound: the lock costs nothing a server of this size notices).
_ITEM_OPERATIONS = ("put_item", "update_item", "delete_item", "get_item", "query", "scan", "batch_get_item",
                    "batch_write_item", "transact_write_items", "transact_get_items")
_ITEMS_LOCK = threading.RLock()


def _atomic_item_operations() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    for name in _ITEM_OPERATIONS:
        original = getattr(DynamoDBBackend, name, None)
        if original is None or getattr(original, "streamworker_fix", False):
            continue

        def serialized(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> Any:
            with _ITEMS_LOCK:
                return __original(self, *args, **kwargs)

        serialized.streamworker_fix = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, serialized)


def _refuse_unknown_regions() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.__call__
    if getattr(original, "streamworker_fix", False):
        return

    def call(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
        m = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        if m and not _known_region(*m.groups()):
            region, service = m.groups()
            body = json.dumps({"__type": "ValidationException",
                               "message": f"the local server (moto) has no region {region!r} for {service}: "
                                          f"use one of AWS's regions, e.g. us-east-1"}).encode()
            start_response("400 Bad Request", [("Content-Type", "application/x-amz-json-1.1"),
                                               ("Content-Length", str(len(body)))])
            return [body]
        return original(self, environ, start_response)

    call.streamworker_fix = True  # type: ignore[attr-defined]
    DomainDispatcherApplication.__call__ = call  # type: ignore[method-assign]


@functools.lru_cache(maxsize=256)
def _known_region(region: str, service: str) -> bool:
    """Whether botocore (and so moto, whose backends are per botocore region) knows ``region``."""
    import boto3

    session = boto3.session.Session()
    regions = {r for p in session.get_available_partitions() for r in session.get_available_regions(service, p)}
    return not regions or region in regions  # a service botocore lists no regions for: let moto decide


def _read_expected_as_dynamodb_does() -> None:
    """Make moto read ``Value`` + ``ComparisonOperator`` as DynamoDB does."""
    from moto.dynamodb import comparisons, models
    from moto.dynamodb.models import table

    original = comparisons.get_expected
    if getattr(original, "streamworker_fix", False):
        return

    def get_expected(expected: dict[str, Any]) -> Any:
        return original({key: _normalised(cond) for key, cond in expected.items()})

    get_expected.streamworker_fix = True  # type: ignore[attr-defined]
    for module in (comparisons, models, table):  # the last two imported it by name
        if getattr(module, "get_expected", None) is original:
            module.get_expected = get_expected  # type: ignore[attr-defined]


def _normalised(cond: dict[str, Any]) -> dict[str, Any]:
    if "Value" in cond and "ComparisonOperator" in cond and "AttributeValueList" not in cond:
        rest = {k: v for k, v in cond.items() if k != "Value"}
        return {**rest, "AttributeValueList": [cond["Value"]]}
    return cond
