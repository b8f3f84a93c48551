"""Decode MultiLang JSON messages into input objects."""

from __future__ import annotations

from typing import Any

from streamworker.kclpy import messages


class MalformedAction(Exception):
    """A message without an action, or with one this module does not know."""


_SERIALIZERS: dict[str, Any] = {
    "initialize": messages.InitializeInput,
    "processRecords": messages.ProcessRecordsInput,
    "leaseLost": messages.LeaseLostInput,
    "shardEnded": messages.ShardEndedInput,
    "shutdownRequested": messages.ShutdownRequestedInput,
    "checkpoint": messages.CheckpointInput,
    "record": lambda d: d,
}


def message_decode(json_dict: dict[str, Any]) -> Any:
    """``json.loads`` object hook: actions become input objects, records stay dicts until their
    ProcessRecordsInput wraps them."""
    action = json_dict.get("action")
    if action is None:
        raise MalformedAction(f"message {json_dict!r} has no action")
    try:
        return _SERIALIZERS[action](json_dict)
    except KeyError:
        raise MalformedAction(f"unknown action {action!r}; known: {', '.join(_SERIALIZERS)}") from None
