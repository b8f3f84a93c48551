"""amazon-kclpy's CheckpointError: ``value`` names the KCL exception."""

from __future__ import annotations

try:  # one class for both import paths when amazon_kclpy is installed
    from amazon_kclpy.checkpoint_error import CheckpointError  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment

    class CheckpointError(Exception):  # type: ignore[no-redef]
        """Raised by ``Checkpointer.checkpoint``; ``value`` is 'ShutdownException',
        'ThrottlingException', 'InvalidStateException' or another KCL exception name."""

        def __init__(self, value: str) -> None:
            super().__init__(value)
            self.value = value

        def __str__(self) -> str:
            return repr(self.value)

__all__ = ["CheckpointError"]
