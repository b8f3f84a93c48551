"""One shard's consumer: the lifecycle (initialize, process, end as done, lost or asked to hand
off), the intake from a source reader, batch or per-key delivery to the processor, retries and
record failures, progress and per-shard meters."""
