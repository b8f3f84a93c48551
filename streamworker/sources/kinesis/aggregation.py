"""KPL record aggregation: split an aggregated Kinesis record into its user records.

Format (aws-kinesis-agg): magic ``F3 89 9A C2`` + protobuf ``AggregatedRecord`` + MD5 of the
protobuf bytes. A record whose magic or checksum does not match is passed through unchanged, as
the KCL does.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

MAGIC = b"\xf3\x89\x9a\xc2"
_DIGEST_LEN = 16


@dataclass(frozen=True)
class UserRecord:
    partition_key: str
    explicit_hash_key: str | None
    data: bytes


class _ProtoError(ValueError):
    pass


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise _ProtoError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise _ProtoError("varint too long")


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > len(buf):
                raise _ProtoError("truncated field")
            out.append((number, buf[pos : pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise _ProtoError(f"unsupported wire type {wire}")
    return out


def is_aggregated(data: bytes) -> bool:
    """True when ``data`` is a well-formed KPL aggregate (magic and MD5 both match)."""
    if len(data) <= len(MAGIC) + _DIGEST_LEN or not data.startswith(MAGIC):
        return False
    body = data[len(MAGIC) : -_DIGEST_LEN]
    return hashlib.md5(body).digest() == data[-_DIGEST_LEN:]


def deaggregate(data: bytes) -> list[UserRecord] | None:
    """The user records inside a KPL aggregate, or None if ``data`` is not one."""
    if not is_aggregated(data):
        return None
    body = data[len(MAGIC) : -_DIGEST_LEN]
    try:
        pk_table: list[str] = []
        ehk_table: list[str] = []
        raw_records: list[bytes] = []
        for number, value in _fields(body):
            if isinstance(value, bytes):
                if number == 1:
                    pk_table.append(value.decode())
                elif number == 2:
                    ehk_table.append(value.decode())
                elif number == 3:
                    raw_records.append(value)
        records: list[UserRecord] = []
        for raw in raw_records:
            pk_index: int | None = None
            ehk_index: int | None = None
            payload = b""
            for number, value in _fields(raw):
                if number == 1 and isinstance(value, int):
                    pk_index = value
                elif number == 2 and isinstance(value, int):
                    ehk_index = value
                elif number == 3 and isinstance(value, bytes):
                    payload = value
            if pk_index is None or pk_index >= len(pk_table):
                raise _ProtoError("record without a valid partition key index")
            ehk = ehk_table[ehk_index] if ehk_index is not None and ehk_index < len(ehk_table) else None
            records.append(UserRecord(pk_table[pk_index], ehk, payload))
        return records
    except (_ProtoError, UnicodeDecodeError):
        return None


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _encode_varint((number << 3) | 2) + _encode_varint(len(payload)) + payload


def aggregate(records: list[UserRecord]) -> bytes:
    """Build a KPL aggregate (used by the demo producer and the tests)."""
    pk_index: dict[str, int] = {}
    ehk_index: dict[str, int] = {}
    body = bytearray()
    encoded: list[bytes] = []
    for r in records:
        pk_index.setdefault(r.partition_key, len(pk_index))
        rec = _encode_varint(1 << 3) + _encode_varint(pk_index[r.partition_key])
        if r.explicit_hash_key is not None:
            ehk_index.setdefault(r.explicit_hash_key, len(ehk_index))
            rec += _encode_varint(2 << 3) + _encode_varint(ehk_index[r.explicit_hash_key])
        rec += _field(3, r.data)
        encoded.append(rec)
    for pk in pk_index:
        body += _field(1, pk.encode())
    for ehk in ehk_index:
        body += _field(2, ehk.encode())
    for rec in encoded:
        body += _field(3, rec)
    return MAGIC + bytes(body) + hashlib.md5(bytes(body)).digest()
