"""Jittered exponential backoff."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Full-jitter exponential backoff: the n-th delay is uniform in [floor, min(cap, base * 2**n)]."""

    base: float = 0.2
    cap: float = 10.0
    floor: float = 0.0
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.base * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        return self.rng.uniform(min(self.floor, ceiling), ceiling)

    def reset(self) -> None:
        self.attempts = 0
