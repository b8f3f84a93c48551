"""kinesis-mock's SubscribeToShard omits the ``initial-response`` event that real Kinesis sends
first and botocore requires. This test-side shim prepends one to the event stream."""

import struct
import zlib


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
    def __init__(self, raw):
        self._raw = raw

    def stream(self, *args, **kwargs):
        yield INITIAL_RESPONSE
        yield from self._raw.stream(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._raw, name)


def _prepend_initial_response(response_dict, **_):
    if response_dict.get("status_code") == 200:
        response_dict["body"] = _Prepended(response_dict["body"])


def install(kinesis_client) -> None:
    kinesis_client.meta.events.register("before-parse.kinesis.SubscribeToShard", _prepend_initial_response)
