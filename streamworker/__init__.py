"""streamworker: a pure-Python, KCL-style consumer framework for Amazon Kinesis and Apache Kafka."""

from .checkpointer import Checkpointer, PreparedCheckpoint
from .config import WorkerConfig
from .errors import (
    CheckpointError,
    ConfigError,
    InvalidCheckpointError,
    LeaseLostError,
    ShardEndNotCheckpointedError,
    SourceError,
    StreamworkerError,
)
from .processor import (
    ChildShard,
    InitializationInput,
    LeaseLostInput,
    ProcessRecordsInput,
    RecordProcessor,
    ShardEndedInput,
    ShutdownReason,
    ShutdownRequestedInput,
)
from .record_failures import RecordFailures
from .records import ExtendedSequenceNumber, InitialPosition, Record
from .worker import Worker

__version__ = "0.1.0"

__all__ = [
    "Checkpointer", "CheckpointError", "ChildShard", "ConfigError", "ExtendedSequenceNumber",
    "InitialPosition", "InitializationInput", "InvalidCheckpointError", "LeaseLostError",
    "LeaseLostInput", "PreparedCheckpoint", "ProcessRecordsInput", "Record", "RecordFailures", "RecordProcessor",
    "ShardEndNotCheckpointedError", "ShardEndedInput", "ShutdownReason", "ShutdownRequestedInput",
    "SourceError", "StreamworkerError", "Worker", "WorkerConfig", "__version__",
]
