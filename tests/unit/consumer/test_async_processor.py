"""async def processors: same order and checkpoint guarantees, coroutines of shards interleave."""

from __future__ import annotations

import asyncio
from typing import Any

from streamworker import RecordProcessor
from streamworker.consumer.event_loop import EventLoopThread
from streamworker.consumer.shard_consumer import ConsumerSettings, ShardConsumer
from streamworker.leases.memory import MemoryLeases
from streamworker.records import ExtendedSequenceNumber as ESN
from streamworker.sources.base import Batch

from .test_shard_consumer import FakeSource, recs, wait_for


class AsyncRecorder(RecordProcessor):
    def __init__(self, log: Any) -> None:
        self.log = log

    async def initialize(self, i: Any) -> None:
        self.shard = i.shard_id
        self.log.append((self.shard, "initialize"))

    async def process_records(self, p: Any) -> None:
        for r in p.records:
            await asyncio.sleep(0.001)  # yields to the other shard's coroutine
            self.log.append((self.shard, r.sequence_number))
        await p.checkpointer.checkpoint_async()

    async def shutdown_requested(self, i: Any) -> None:
        self.log.append((self.shard, "shutdown_requested"))
        await i.checkpointer.checkpoint_async()


def test_async_processors_keep_per_shard_order_and_checkpoint() -> None:
    log: list[Any] = []
    loop = EventLoopThread()
    settings = ConsumerSettings(retry_backoff=0.01, worker_id="w", event_loop=loop)
    consumers = []
    for shard in ("s-a", "s-b"):
        leases = MemoryLeases("w")
        c = ShardConsumer(leases.acquire(shard), AsyncRecorder(log),
                          FakeSource([Batch(recs(1, 2, 3)), Batch(recs(4, 5))]), leases, settings)
        consumers.append((c, leases))
        c.start()
    wait_for(lambda: sum(1 for _, seq in log if seq.isdigit()) == 10)
    for c, _ in consumers:
        c.request_shutdown()
        assert c.join(5)
    loop.stop()
    for shard in ("s-a", "s-b"):
        mine = [x for s, x in log if s == shard]
        assert mine == ["initialize", "1", "2", "3", "4", "5", "shutdown_requested"]
    for c, leases in consumers:
        assert leases.history(c.lease.lease_key) == [ESN("3"), ESN("5"), ESN("5")] and leases.released
