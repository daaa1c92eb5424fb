"""Token-budget batch sampler: batches of similar lengths whose padded size fits a budget.

One epoch, for `set_epoch(e)` and seed s (rng seeded with (s, e)):
    perm    = random permutation of all indices
    for chunk in perm split into chunks of `bucket_size_multiplier` x (typical batch size):
        sort the chunk by length                      # similar lengths end up together
        cut it greedily into batches with len(batch) * max_length(batch) <= max_tokens
    shuffle the order of all batches
Every index appears exactly once per epoch. The same (seed, epoch) always gives the same batches,
so a resumed run that calls `set_epoch(e)` sees epoch e's order again. As with torch's
DistributedSampler, the training loop must call `set_epoch(epoch)` before each epoch; without it
every epoch repeats epoch 0's order.

Under several processes (`shard(num_replicas, rank)`, which Treadmill's Trainer calls under
torchrun), every rank builds the same epoch's batches and takes every `num_replicas`-th one,
starting at its rank. The list is first padded by repeating batches from its start so that all
ranks take the same number of steps, as DistributedDataParallel needs; like torch's
DistributedSampler, a few samples are then seen twice in an epoch.

A sample longer than `max_tokens` on its own cannot fit; it gets a batch of its own and the
constructor warns once with the count (it is not dropped, so no data disappears silently).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Yields lists of indices; each batch's len x max length is at most `max_tokens`."""

    def __init__(
        self,
        lengths: Sequence[int],
        max_tokens: int,
        shuffle: bool = True,
        seed: int = 0,
        bucket_size_multiplier: int = 100,
        max_batch_size: int | None = None,
    ) -> None:
        """`lengths[i]` is sample i's padded width (Seq2SeqDataset.lengths(): max(src, tgt))."""
        self.lengths = np.asarray(lengths, dtype=np.int64)
        if self.lengths.ndim != 1:
            raise ValueError(
                f"TokenBudgetBatchSampler: lengths must be a flat sequence of ints, "
                f"got shape {self.lengths.shape}."
            )
        if max_tokens < 1:
            raise ValueError(f"TokenBudgetBatchSampler: max_tokens must be >= 1, got {max_tokens}.")
        if bucket_size_multiplier < 1:
            raise ValueError(
                "TokenBudgetBatchSampler: bucket_size_multiplier must be >= 1, "
                f"got {bucket_size_multiplier}."
            )
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(
                f"TokenBudgetBatchSampler: max_batch_size must be >= 1 or None, got {max_batch_size}."
            )
        self.max_tokens = int(max_tokens)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.bucket_size_multiplier = int(bucket_size_multiplier)
        self.max_batch_size = max_batch_size
        n_oversize = int((self.lengths > self.max_tokens).sum())
        if n_oversize:
            warnings.warn(
                f"TokenBudgetBatchSampler: {n_oversize} sample(s) are longer than "
                f"max_tokens={self.max_tokens} (longest: {int(self.lengths.max())}); each gets a "
                "batch of its own. Raise max_tokens or filter long samples (max_src_len/max_tgt_len).",
                stacklevel=2,
            )
        self.num_replicas = 1
        self.rank = 0
        self.epoch = 0
        self._batches = self._make_batches(0)

    def shard(self, num_replicas: int, rank: int) -> TokenBudgetBatchSampler:
        """A copy that yields only process `rank`'s share of each epoch's batches."""
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(
                f"TokenBudgetBatchSampler.shard: need num_replicas >= 1 and 0 <= rank < num_replicas, "
                f"got num_replicas={num_replicas}, rank={rank}."
            )
        sharded = copy.copy(self)
        sharded.num_replicas, sharded.rank = int(num_replicas), int(rank)
        sharded._batches = sharded._make_batches(sharded.epoch)
        return sharded

    def set_epoch(self, epoch: int) -> None:
        """Select epoch `epoch`'s batches (call before iterating each epoch)."""
        self.epoch = int(epoch)
        self._batches = self._make_batches(self.epoch)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self._batches:
            yield list(batch)

    def __len__(self) -> int:
        """Number of batches in the current epoch."""
        return len(self._batches)

    def epoch_lengths(self, epochs: int) -> list[int]:
        """Number of batches in each of epochs 0 .. epochs - 1 (it varies when shuffling)."""
        if not self.shuffle:
            return [len(self._make_batches(0))] * epochs
        return [len(self._make_batches(epoch)) for epoch in range(epochs)]

    def _chunk_size(self) -> int:
        mean_len = max(1.0, float(self.lengths.mean())) if len(self.lengths) else 1.0
        typical_batch = max(1, int(self.max_tokens // mean_len))
        if self.max_batch_size is not None:
            typical_batch = min(typical_batch, self.max_batch_size)
        return typical_batch * self.bucket_size_multiplier

    def _make_batches(self, epoch: int) -> list[list[int]]:
        n = len(self.lengths)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        chunk = self._chunk_size()
        batches: list[list[int]] = []
        for start in range(0, n, chunk):
            idx = order[start : start + chunk]
            # Stable sort: equal lengths keep their random order, so batches differ per epoch.
            idx = idx[np.argsort(self.lengths[idx], kind="stable")]
            batches.extend(self._cut(idx))
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return self._rank_share(batches)

    def _rank_share(self, batches: list[list[int]]) -> list[list[int]]:
        """This rank's batches: every num_replicas-th of the list padded to a multiple of it."""
        if self.num_replicas == 1 or not batches:
            return batches
        per_rank = -(-len(batches) // self.num_replicas)
        padded = [batches[i % len(batches)] for i in range(per_rank * self.num_replicas)]
        return padded[self.rank :: self.num_replicas]

    def _cut(self, sorted_idx: np.ndarray) -> list[list[int]]:
        """Greedily cut length-sorted indices into batches within the budget."""
        batches: list[list[int]] = []
        current: list[int] = []
        current_max = 0
        for i in sorted_idx.tolist():
            length = int(self.lengths[i])
            new_max = max(current_max, length)
            full = self.max_batch_size is not None and len(current) >= self.max_batch_size
            if current and (full or (len(current) + 1) * new_max > self.max_tokens):
                batches.append(current)
                current, new_max = [], length
            current.append(i)
            current_max = new_max
        if current:
            batches.append(current)
        return batches
