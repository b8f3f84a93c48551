"""Source adapters: list the shards of a stream and read them."""

from streamworker.sources.base import Batch, ShardInfo, ShardReader, Source

__all__ = ["Batch", "ShardInfo", "ShardReader", "Source"]
