"""Local stand-ins for AWS (moto, kinesis-mock), started by the demo, the tests and benchmarks."""

from .servers import KinesisMock, MotoServer, free_port

__all__ = ["KinesisMock", "MotoServer", "free_port"]
