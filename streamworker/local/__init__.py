"""Local stand-ins for AWS (moto, kinesis-mock), started by the demo, the tests and benchmarks."""

from .servers import KafkaBroker, KinesisMock, MotoServer, free_port

__all__ = ["KafkaBroker", "KinesisMock", "MotoServer", "free_port"]
