"""Which settings and log fields hold credentials, and values with those masked (for an error
that echoes its input, for a log line)."""

from __future__ import annotations

import re
from typing import Any

_SECRET_WORDS = ("secret", "password", "passwd", "token", "credential", "sasl.oauthbearer.config",
                 "ssl.key.pem", "private", "api.key", "apikey")


def is_secret_key(key: str) -> bool:
    """Whether a setting or log field named ``key`` holds a credential (its value is masked)."""
    k = key.lower()
    return any(s in k for s in _SECRET_WORDS)


def redact(value: Any) -> Any:
    """``value`` with credential-like settings masked, for echoing an input in an error. A string
    that names a credential at all is reduced to its keys (a value may hold commas)."""
    if isinstance(value, dict):
        return {k: "***" if is_secret_key(str(k)) else redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, str):
        keys = re.findall(r"([A-Za-z0-9_.\-]+)\s*=", value)
        if any(is_secret_key(k) for k in keys):
            return f"<{len(keys)} KEY=VALUE pair(s) with keys {', '.join(keys)}; values not shown>"
    return value
