"""Weighted sampling by an example field (seed 003's depth weights `{0: 1, 1: 2, 2: 3, 3: 4}`).

    weights = example_weights(task.fields["train"]["depth"], {"0": 1, "1": 2, "2": 3, "3": 4})
    sampler = WeightedEpochSampler(weights, seed=0)       # DataLoader(..., sampler=sampler)

Each epoch draws len(dataset) indices with replacement, P(i) proportional to weights[i], from a
generator seeded with (seed, epoch) alone: `set_epoch(e)` (which the Trainer calls through
`training.data_order.seed_epoch`) gives epoch e's draws again, so a resumed run skips to exactly
the batch it stopped at.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

__all__ = ["WeightedEpochSampler", "example_weights", "realised_distribution"]


def example_weights(values: Sequence[Any], weights: Mapping[str, float], default: float = 1.0) -> list[float]:
    """Per example the weight of its field value (by `str(value)`); values not listed get `default`."""
    return [float(weights.get(str(v), default)) for v in values]


class WeightedEpochSampler(Sampler[int]):
    """`num_samples` indices per epoch, drawn with replacement with probabilities ~ `weights`."""

    def __init__(self, weights: Sequence[float], num_samples: int | None = None, seed: int = 0) -> None:
        w = np.asarray(weights, dtype=np.float64)
        if w.ndim != 1 or not len(w) or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise ValueError("WeightedEpochSampler: weights must be a non-empty flat list of finite numbers >= 0 "
                             "with a positive sum.")
        self.probabilities = w / w.sum()
        self.num_samples = len(w) if num_samples is None else int(num_samples)
        self.seed, self.epoch = int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch `epoch`'s indices on the next iteration."""
        self.epoch = int(epoch)

    def indices(self, epoch: int) -> np.ndarray:
        """Epoch `epoch`'s draws (the same for the same seed and epoch)."""
        rng = np.random.default_rng([self.seed, epoch, 0x5EED])
        return rng.choice(len(self.probabilities), size=self.num_samples, replace=True, p=self.probabilities)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices(self.epoch).tolist())

    def __len__(self) -> int:
        return self.num_samples


def realised_distribution(values: Sequence[Any], indices: Iterable[int]) -> dict[str, float]:
    """The share of each field value among the drawn `indices`, by value."""
    counts = Counter(str(values[int(i)]) for i in indices)
    total = max(1, sum(counts.values()))
    return {value: counts[value] / total for value in sorted(counts, key=_natural)}


def _natural(value: str) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)
