"""Async processors: a RecordProcessor whose methods are ``async def`` runs on one event loop
owned by the worker. Each shard's thread submits the coroutine and waits for it, so calls for one
shard stay strictly ordered and never concurrent, while coroutines of different shards interleave
on the loop. Inside a coroutine, ``await checkpointer.checkpoint_async(...)`` keeps the (blocking,
fenced) lease-table write off the loop."""

from __future__ import annotations

import asyncio
import inspect
import threading
from typing import Any


class EventLoopThread:
    """An asyncio loop on a daemon thread, started on first use."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="processor-loop", daemon=True).start()
                self._loop = loop
            return self._loop

    def run(self, result: Any) -> Any:
        """Wait for ``result`` if it is a coroutine (on the loop); return plain values as they are."""
        if not inspect.iscoroutine(result):
            return result
        return asyncio.run_coroutine_threadsafe(result, self.loop()).result()

    def stop(self) -> None:
        with self._lock:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._loop = None
