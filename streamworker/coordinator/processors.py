"""Load a RecordProcessor class from ``package.module:Class`` or ``path/to/file.py:Class``."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from streamworker.errors import ConfigError
from streamworker.processor import PerRecordProcessor, RecordProcessor


def load_processor(spec: str) -> type[RecordProcessor]:
    """Resolve a processor spec to a class; ConfigError with one clear line on any failure."""
    if ":" not in spec:
        raise ConfigError(f"processor {spec!r}: expected MODULE:CLASS or path/to/file.py:CLASS")
    target, _, class_name = spec.rpartition(":")
    try:
        if target.endswith(".py") or "/" in target:
            path = Path(target)
            if not path.is_file():
                raise ConfigError(f"processor {spec!r}: file {target} not found")
            mod_name = f"_streamworker_user_{path.stem}"
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            if module_spec is None or module_spec.loader is None:
                raise ConfigError(f"processor {spec!r}: cannot load {target}")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[mod_name] = module
            sys.path.insert(0, str(path.resolve().parent))
            module_spec.loader.exec_module(module)
        else:
            if "" not in sys.path:
                sys.path.insert(0, "")
            module = importlib.import_module(target)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"processor {spec!r}: import failed: {type(exc).__name__}: {exc}") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(f"processor {spec!r}: {target} has no attribute {class_name!r}")
    from streamworker.kclpy.adapter import KclpyAdapter, is_kclpy_processor

    if is_kclpy_processor(cls):
        kclpy_cls = cls

        def init(self: KclpyAdapter) -> None:
            KclpyAdapter.__init__(self, kclpy_cls())

        return type(f"Kclpy{class_name}", (KclpyAdapter,), {"__init__": init})
    if not (isinstance(cls, type) and issubclass(cls, RecordProcessor)):
        # Duck typing: any class with process_record(s) is accepted, wrapped in the base defaults.
        if isinstance(cls, type) and callable(getattr(cls, "process_record", None)):
            return type(cls.__name__, (cls, PerRecordProcessor), {})
        if isinstance(cls, type) and callable(getattr(cls, "process_records", None)):
            return type(cls.__name__, (cls, RecordProcessor), {})
        raise ConfigError(f"processor {spec!r}: {class_name} is neither a RecordProcessor subclass nor a class with "
                          f"a process_records (or process_record) method")
    return cls
