"""amazon-kclpy's v3 processor interface (lease_lost / shard_ended / shutdown_requested)."""

from __future__ import annotations

from typing import Any

from streamworker.kclpy.messages import ShutdownInput


class RecordProcessorBase:
    """v3, the current interface; mirrors KCL 2.x's ShardRecordProcessor."""

    version = 3

    def initialize(self, initialize_input: Any) -> None:
        raise NotImplementedError

    def process_records(self, process_records_input: Any) -> None:
        raise NotImplementedError

    def lease_lost(self, lease_lost_input: Any) -> None:
        raise NotImplementedError

    def shard_ended(self, shard_ended_input: Any) -> None:
        raise NotImplementedError

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        raise NotImplementedError


class V2toV3Processor(RecordProcessorBase):
    """Runs a v2 processor behind the v3 interface."""

    def __init__(self, delegate: Any) -> None:
        self.delegate = delegate

    def initialize(self, initialize_input: Any) -> None:
        self.delegate.initialize(initialize_input)

    def process_records(self, process_records_input: Any) -> None:
        self.delegate.process_records(process_records_input)

    def lease_lost(self, lease_lost_input: Any) -> None:
        self.delegate.shutdown(ShutdownInput.zombie())

    def shard_ended(self, shard_ended_input: Any) -> None:
        self.delegate.shutdown(ShutdownInput.terminate(shard_ended_input.checkpointer))

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        self.delegate.shutdown_requested(shutdown_requested_input)
