"""The worker's scheduler: which shards exist (shard sync), which it holds (told by a lease
coordinator) and one shard consumer per held shard, built by ``builder`` from the settings
(the streams of a multi-stream worker in ``streams``, the user's processor class loaded by
``processors``)."""
