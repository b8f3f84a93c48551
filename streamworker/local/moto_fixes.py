"""Where moto answers differently from DynamoDB for a request a migrating user's KCL sends.

KCL 1.x (and its MultiLangDaemon) writes checkpoints with the legacy ``Expected`` parameter,
``{"checkpoint": {"Value": {"S": "SHARD_END"}, "ComparisonOperator": "NE"}}``. DynamoDB compares
``Value`` with the operator; moto 5 reads ``Value`` as an equality test and refuses every KCL 1.x
checkpoint with ConditionalCheckFailed. The fix is applied to moto in this process only, when a
local moto server starts.
"""

from __future__ import annotations

from typing import Any


def apply() -> None:
    """Make moto read ``Value`` + ``ComparisonOperator`` as DynamoDB does (idempotent)."""
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
