"""amazon-kclpy's v2 processor interface (initialize / process_records / shutdown)."""

from __future__ import annotations

from typing import Any


class RecordProcessorBase:
    """v2: ``shutdown(shutdown_input)`` with ``reason`` TERMINATE or ZOMBIE."""

    version = 2

    def initialize(self, initialize_input: Any) -> None:
        raise NotImplementedError

    def process_records(self, process_records_input: Any) -> None:
        raise NotImplementedError

    def shutdown(self, shutdown_input: Any) -> None:
        raise NotImplementedError

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        """Optional: checkpoint before a requested shutdown."""


class V1toV2Processor(RecordProcessorBase):
    """Runs a v1 processor (``initialize(shard_id)``, ``process_records(records, checkpointer)``,
    ``shutdown(checkpointer, reason)``) behind the v2 interface."""

    def __init__(self, delegate: Any) -> None:
        self.delegate = delegate

    def initialize(self, initialize_input: Any) -> None:
        self.delegate.initialize(initialize_input.shard_id)

    def process_records(self, process_records_input: Any) -> None:
        # v1 processors get the raw record dicts, base64 data included
        records = [r._json if hasattr(r, "_json") else r for r in process_records_input.records]
        self.delegate.process_records(records, process_records_input.checkpointer)

    def shutdown(self, shutdown_input: Any) -> None:
        self.delegate.shutdown(shutdown_input.checkpointer, shutdown_input.reason)

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        handler = getattr(self.delegate, "shutdown_requested", None)
        if handler is not None:
            handler(shutdown_requested_input.checkpointer)
