"""Coordinators decide which shards a worker owns and store checkpoints."""
