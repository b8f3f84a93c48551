"""mkdocs hook: the configuration page's table is generated from WorkerConfig at build time, so
the documented settings, flags, environment variables and defaults cannot drift from the code."""

from __future__ import annotations

from typing import Any

MARKER = "<!-- settings-table -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in markdown:
        return markdown
    from streamworker.cli.flags import reference_table

    return markdown.replace(MARKER, reference_table())
