"""The ``streamworker`` command: run, leases, status, checkpoint, dead-letters, local, demo."""

from streamworker.cli.commands import main

__all__ = ["main"]
