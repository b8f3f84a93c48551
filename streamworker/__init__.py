"""streamworker: a pure-Python, KCL-style consumer framework for Amazon Kinesis and Apache Kafka."""

from streamworker.checkpoint.checkpointer import Checkpointer, PreparedCheckpoint
from streamworker.config import WorkerConfig
from streamworker.errors import (
    CheckpointError,
    ConfigError,
    InvalidCheckpointError,
    LeaseLostError,
    RecordFailures,
    ShardEndNotCheckpointedError,
    SourceError,
    StreamworkerError,
)
from streamworker.processor import (
    ChildShard,
    InitializationInput,
    LeaseLostInput,
    PerRecordProcessor,
    ProcessRecordsInput,
    RecordProcessor,
    ShardEndedInput,
    ShutdownReason,
    ShutdownRequestedInput,
)
from streamworker.records import ExtendedSequenceNumber, InitialPosition, Record
from streamworker.worker import Worker

__version__ = "0.1.0"

__all__ = [
    "Checkpointer", "CheckpointError", "ChildShard", "ConfigError", "ExtendedSequenceNumber",
    "InitialPosition", "InitializationInput", "InvalidCheckpointError", "LeaseLostError",
    "LeaseLostInput", "PerRecordProcessor", "PreparedCheckpoint", "ProcessRecordsInput", "Record", "RecordFailures", "RecordProcessor",
    "ShardEndNotCheckpointedError", "ShardEndedInput", "ShutdownReason", "ShutdownRequestedInput",
    "SourceError", "StreamworkerError", "Worker", "WorkerConfig", "__version__",
]
