"""Apache Kafka: topic-partitions as shards, over one consumer per worker.

``client`` owns the confluent-kafka Consumer and its poll thread; ``buffers`` hold what it
fetched per partition until the partition's shard thread reads it; ``commits`` carries
checkpoints to the poll thread and back; ``records`` wraps messages; ``source`` is the
Source adapter; ``group`` the consumer-group coordinator; ``conf`` and ``lag`` derive settings
and lag. Nothing here is imported until a worker reads Kafka (confluent-kafka is an extra).
"""
