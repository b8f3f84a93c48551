"""amazon-kclpy's input objects, built from the MultiLang JSON messages."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any


class MessageDispatcher:
    """An action from the daemon that knows which processor method handles it."""

    action: str

    def dispatch(self, checkpointer: Any, record_processor: Any) -> None:
        raise NotImplementedError


class InitializeInput(MessageDispatcher):
    def __init__(self, json_dict: dict[str, Any]) -> None:
        self.action = json_dict.get("action", "initialize")
        self.shard_id: str = json_dict["shardId"]
        self.sequence_number: str | None = json_dict.get("sequenceNumber")
        self.sub_sequence_number: int | None = json_dict.get("subSequenceNumber")

    def dispatch(self, checkpointer: Any, record_processor: Any) -> None:
        record_processor.initialize(self)


class Record:
    """One record; ``data`` is base64 text as on the wire, ``binary_data`` the bytes."""

    def __init__(self, json_dict: dict[str, Any]) -> None:
        self._json = json_dict
        self.sequence_number: str = json_dict["sequenceNumber"]
        self.sub_sequence_number: int = json_dict.get("subSequenceNumber") or 0
        self.timestamp_millis = int(json_dict.get("approximateArrivalTimestamp") or 0)
        self.approximate_arrival_timestamp = datetime.fromtimestamp(self.timestamp_millis / 1000.0)
        self.partition_key: str = json_dict["partitionKey"]
        self.data: str = json_dict["data"]

    @property
    def binary_data(self) -> bytes:
        return base64.b64decode(self.data)

    def get(self, field: str) -> Any:
        return self._json[field]

    def __getitem__(self, field: str) -> Any:
        return self._json[field]


class ProcessRecordsInput(MessageDispatcher):
    def __init__(self, json_dict: dict[str, Any]) -> None:
        self.action = json_dict.get("action", "processRecords")
        self.records = [Record(r) for r in json_dict.get("records", [])]
        self.millis_behind_latest: int | None = json_dict.get("millisBehindLatest")
        self.checkpointer: Any = None

    def dispatch(self, checkpointer: Any, record_processor: Any) -> None:
        self.checkpointer = checkpointer
        record_processor.process_records(self)


class LeaseLostInput(MessageDispatcher):
    def __init__(self, json_dict: dict[str, Any]) -> None:
        self.action = json_dict.get("action", "leaseLost")

    def dispatch(self, checkpointer: Any, record_processor: Any) -> None:
        record_processor.lease_lost(self)


class ShardEndedInput(MessageDispatcher):
    def __init__(self, json_dict: dict[str, Any]) -> None:
        self.action = json_dict.get("action", "shardEnded")
        self.checkpointer: Any = None

    def dispatch(self, checkpointer: Any, record_processor: Any) -> None:
        self.checkpointer = checkpointer
        record_processor.shard_ended(self)


class ShutdownRequestedInput(MessageDispatcher):
    def __init__(self, json_dict: dict[str, Any]) -> None:
        self.action = json_dict.get("action", "shutdownRequested")
        self.checkpointer: Any = None

    def dispatch(self, checkpointer: Any, record_processor: Any) -> None:
        self.checkpointer = checkpointer
        record_processor.shutdown_requested(self)


class CheckpointInput:
    """The daemon's answer to a checkpoint request."""

    def __init__(self, json_dict: dict[str, Any]) -> None:
        self.sequence_number = json_dict.get("sequenceNumber")
        self.sub_sequence_number = json_dict.get("subSequenceNumber")
        self.error: str | None = json_dict.get("error")


class LeaseLostCheckpointer:
    """Handed to v1/v2 processors on a ZOMBIE shutdown: every checkpoint fails."""

    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None:
        from streamworker.kclpy.checkpoint_error import CheckpointError

        raise CheckpointError("ShutdownException")


class ShutdownInput:
    """The v2 shutdown input: ``reason`` is TERMINATE (shard end) or ZOMBIE (lease lost)."""

    def __init__(self, reason: str, checkpointer: Any) -> None:
        self.action = "shutdown"
        self.reason = reason
        self.checkpointer = checkpointer

    @staticmethod
    def zombie() -> ShutdownInput:
        return ShutdownInput("ZOMBIE", LeaseLostCheckpointer())

    @staticmethod
    def terminate(checkpointer: Any) -> ShutdownInput:
        return ShutdownInput("TERMINATE", checkpointer)
