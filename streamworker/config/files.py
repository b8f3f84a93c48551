"""The TOML file a worker reads its settings from (``--config``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from streamworker.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read settings from a TOML file: top-level keys or a ``[streamworker]`` table; dashes in
    names are accepted for underscores."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {p} not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {p}: invalid TOML: {exc}") from None
    section = data.get("streamworker", data)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {p}: [streamworker] must be a table")
    if section is not data and len(data) > 1:
        top = ", ".join(sorted(k for k in data if k != "streamworker"))
        raise ConfigError(f"config file {p}: settings both at the top level ({top}) and in [streamworker]; "
                          f"put them all in one place")
    return {k.replace("-", "_"): v for k, v in section.items()}
