"""Deterministic data order per epoch, and fast-forwarding inside an epoch for exact resume.

An interrupted run resumes at the exact next batch only if the epoch's order is a function of the
epoch alone, not of how much global random state was consumed before. So each epoch gives the
loader's sampler and the loader itself (worker seeds) generators seeded from (data_seed, epoch),
and the global RNG is never drawn from to order data. Skipping the batches already trained goes
through the batch sampler, which yields indices only: skipped samples are never loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, RandomSampler, Sampler

__all__ = ["seed_epoch", "epoch_iterator", "SkipBatchSampler", "loader_settings", "batches_in_epoch", "first_batches"]


def _epoch_generator(data_seed: int, epoch: int, stream: int) -> torch.Generator:
    # Distinct streams for the sampler and for worker seeds; large odd multipliers keep
    # (seed, epoch) pairs from colliding for any realistic number of epochs.
    return torch.Generator().manual_seed((data_seed * 1_000_003 + epoch * 7919 + stream) % (2**63))


def seed_epoch(loader: Any, data_seed: int, epoch: int) -> None:
    """Make the loader's order for `epoch` depend only on (data_seed, epoch)."""
    for sampler in (getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None)):
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # DistributedSampler, TokenBudgetBatchSampler
    sampler = getattr(loader, "sampler", None)
    if isinstance(sampler, RandomSampler):
        sampler.generator = _epoch_generator(data_seed, epoch, 0)
    if isinstance(loader, DataLoader):
        # Without its own generator, creating the loader's iterator draws a seed from the global
        # RNG, which would shift every dropout mask after a mid-epoch resume.
        loader.generator = _epoch_generator(data_seed, epoch, 1)


class SkipBatchSampler(Sampler[list[int]]):
    """A batch sampler that drops the first `skip` batches of another one."""

    def __init__(self, batch_sampler: Iterable[list[int]], skip: int) -> None:
        self.batch_sampler, self.skip = batch_sampler, skip

    def __iter__(self) -> Iterator[list[int]]:
        for index, batch in enumerate(self.batch_sampler):
            if index >= self.skip:
                yield batch

    def __len__(self) -> int:
        return max(0, len(self.batch_sampler) - self.skip)  # type: ignore[arg-type]


def loader_settings(loader: DataLoader) -> dict[str, Any]:
    """The DataLoader arguments other than how it batches, to rebuild it with another sampler."""
    settings: dict[str, Any] = {
        "num_workers": loader.num_workers,
        "collate_fn": loader.collate_fn,
        "pin_memory": loader.pin_memory,
        "timeout": loader.timeout,
        "worker_init_fn": loader.worker_init_fn,
        "multiprocessing_context": loader.multiprocessing_context,
        "generator": loader.generator,
        "persistent_workers": loader.persistent_workers,
    }
    if loader.num_workers > 0:
        settings["prefetch_factor"] = loader.prefetch_factor
    return settings


def _skipping_loader(loader: DataLoader, skip: int) -> DataLoader:
    """A copy of the loader whose batch sampler starts after `skip` batches."""
    settings = {**loader_settings(loader), "persistent_workers": False}  # used for one partial epoch
    return DataLoader(loader.dataset, batch_sampler=SkipBatchSampler(loader.batch_sampler, skip), **settings)  # type: ignore[arg-type]


def epoch_iterator(loader: Iterable[Any], skip: int = 0) -> Iterator[Any]:
    """Iterate the loader from batch `skip` on, without loading skipped samples when possible.

    Skipping through the batch sampler is exact when samples are loaded in this process (the
    restored global RNG already accounts for them). With worker processes, each worker's RNG
    depends on which batches it loaded before, so the skipped batches are loaded and dropped
    instead: random augmentation inside workers then matches an uninterrupted run too.
    """
    if (
        skip
        and isinstance(loader, DataLoader)
        and loader.num_workers == 0
        and loader.batch_sampler is not None
        and not isinstance(loader.dataset, IterableDataset)
    ):
        yield from _skipping_loader(loader, skip)
        return
    for index, batch in enumerate(loader):
        if index >= skip:
            yield batch


def batches_in_epoch(loader: Any, overfit_batches: int | None = None) -> int | None:
    """Training batches per epoch (at most `overfit_batches` when set); None without a len."""
    try:
        count = len(loader)
    except TypeError:
        return None
    return min(count, overfit_batches) if overfit_batches else count


def first_batches(loader: Iterable[Any], count: int, data_seed: int) -> list[Any]:
    """The first `count` batches in epoch 0's order: the fixed batches of the overfit test."""
    seed_epoch(loader, data_seed, 0)
    batches: list[Any] = []
    for batch in loader:
        if len(batches) == count:
            break
        batches.append(batch)
    return batches
