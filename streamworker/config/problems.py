"""What a bad setting is told: one line naming it, where it can be set, and the setting a typo
most likely meant."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping

from pydantic import ValidationError

from streamworker.config.secrets import redact
from streamworker.errors import ConfigError

#: STREAMWORKER_* variables that are not settings (read by ./dev, the local servers, the tests)
OTHER_VARIABLES = frozenset({"STREAMWORKER_CACHE", "STREAMWORKER_VENV", "STREAMWORKER_TEST_JOBS"})


def closest_setting(name: str, settings: Collection[str]) -> str | None:
    """The setting ``name`` most likely meant (a typo), if any is close."""
    close = difflib.get_close_matches(name.lower(), list(settings), n=1)
    return close[0] if close else None


def did_you_mean(name: str, settings: Collection[str]) -> str:
    close = closest_setting(name, settings)
    return f" (did you mean {close!r}?)" if close else ""


def check_environment(environ: Mapping[str, str], settings: Collection[str]) -> None:
    """A ``STREAMWORKER_*`` variable that names no setting is an error, as an unknown TOML key is:
    a typo must not be silently ignored."""
    for key in sorted(environ):
        if key.startswith("STREAMWORKER_") and key not in OTHER_VARIABLES:
            name = key.removeprefix("STREAMWORKER_").lower()
            if name not in settings:
                close = closest_setting(name, settings)
                raise ConfigError(f"unknown environment variable {key}"
                                  + (f" (did you mean STREAMWORKER_{close.upper()}?)" if close else ""))


def describe_validation_error(exc: ValidationError, settings: Collection[str]) -> str:
    """One line per problem pydantic found, naming the setting and where it can be set."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "config"
        msg = err["msg"]
        if err["type"] == "value_error" and not err["loc"]:
            parts.append(msg.removeprefix("Value error, "))
        elif err["type"] == "missing":
            parts.append(f"{loc} is required (flag --{loc.replace('_', '-')}, "
                         f"env STREAMWORKER_{loc.upper()}, or the config file)")
        elif err["type"] == "extra_forbidden":
            parts.append(f"unknown setting {loc!r}{did_you_mean(loc, settings)}")
        else:
            parts.append(f"invalid setting {loc}: {msg.removeprefix('Value error, ')} "
                         f"(got {redact(err.get('input'))!r})")
    return "; ".join(parts)
