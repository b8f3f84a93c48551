"""Operations: what a running worker tells the outside (health, readiness, metrics, hang reports,
lag), reading the worker only through ``WorkerView``."""

from streamworker.ops.view import WorkerView

__all__ = ["WorkerView"]
