"""Checkpoints: the ``Checkpointer`` a processor calls, the ``CheckpointStore`` contract it writes
through (wrapped by ``store.TimedStore``; the coordinator below fences it), the automatic
checkpoint policy, and the targets an operator rewinds to."""
