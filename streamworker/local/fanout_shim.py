"""kinesis-mock's SubscribeToShard omits the ``initial-response`` event that real Kinesis sends
first and botocore requires. ``install(client)`` prepends one to every subscription's event
stream of that boto3 Kinesis client (use it only against kinesis-mock)."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from typing import Any


def _frame(headers: dict[str, str], payload: bytes) -> bytes:
    encoded = b"".join(
        bytes([len(k)]) + k.encode() + b"\x07" + struct.pack(">H", len(v)) + v.encode() for k, v in headers.items())
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack(">II", total, len(encoded))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + encoded + payload
    return message + struct.pack(">I", zlib.crc32(message))


INITIAL_RESPONSE = _frame({":message-type": "event", ":event-type": "initial-response",
                           ":content-type": "application/json"}, b"{}")


class _Prepended:
    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def stream(self, *args: Any, **kwargs: Any) -> Iterator[bytes]:
        yield INITIAL_RESPONSE
        yield from self._raw.stream(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


def _prepend_initial_response(response_dict: dict[str, Any], **_: Any) -> None:
    if response_dict.get("status_code") == 200:
        response_dict["body"] = _Prepended(response_dict["body"])


def install(kinesis_client: Any) -> None:
    """Make ``kinesis_client``'s SubscribeToShard work against kinesis-mock."""
    kinesis_client.meta.events.register("before-parse.kinesis.SubscribeToShard", _prepend_initial_response)
