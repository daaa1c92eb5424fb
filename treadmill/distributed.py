"""Multi-process training with torch.distributed (DDP), as launched by torchrun.

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE for each process; when they are present the Trainer
joins the process group (nccl on GPUs, gloo on CPUs), wraps the model in DistributedDataParallel,
shards the training data (a DistributedSampler, or the token-budget sampler's own sharding),
and lets only rank 0 print and write files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from treadmill.data.sampler import TokenBudgetBatchSampler
from treadmill.training.data_order import loader_settings

__all__ = [
    "DistInfo", "launched_world_size", "is_main_process", "setup_distributed", "wrap_ddp", "shard_loader", "all_reduce_sum", "any_rank",
    "all_gather_objects", "broadcast_object", "broadcast_module", "barrier",
]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        """Whether more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process does the printing and file writing."""
        return self.rank == 0


def launched_world_size() -> int:
    """How many processes torchrun started for this job (1 when it did not launch us)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Whether this process is rank 0 of a torchrun job, or the only process."""
    return launched_world_size() <= 1 or int(os.environ.get("RANK", "0")) == 0


def setup_distributed(device: torch.device) -> DistInfo:
    """Join the process group when torchrun launched us; a single-process DistInfo otherwise."""
    world_size = launched_world_size()
    if world_size <= 1 or "RANK" not in os.environ:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world_size)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return info


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """The model inside DistributedDataParallel on this process's device."""
    from torch.nn.parallel import DistributedDataParallel

    while isinstance(model, DistributedDataParallel):  # a model from an earlier trainer: one wrapper, not two
        model = model.module
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def shard_loader(loader: Any, info: DistInfo, seed: int) -> Any:
    """This process's share of a loader: a DistributedSampler, or a sharded token-budget sampler."""
    if not isinstance(loader, DataLoader) or isinstance(loader.sampler, DistributedSampler):
        return loader
    if isinstance(loader.batch_sampler, TokenBudgetBatchSampler):
        sharded = loader.batch_sampler.shard(info.world_size, info.rank)
        return DataLoader(loader.dataset, batch_sampler=sharded, **loader_settings(loader))
    if loader.batch_sampler is None or type(loader.batch_sampler).__name__ != "BatchSampler":
        return loader  # any other custom batch sampler must shard itself
    sampler: DistributedSampler[Any] = DistributedSampler(
        loader.dataset,
        num_replicas=info.world_size,
        rank=info.rank,
        shuffle=isinstance(loader.sampler, RandomSampler),
        seed=seed,
        drop_last=False,
    )
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler, drop_last=loader.drop_last,
                      **loader_settings(loader))


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_reduce_sum(value: Any, device: torch.device) -> torch.Tensor:
    """The sum of a number or tensor over all processes (the value itself when not distributed)."""
    tensor = value.detach().clone().double() if isinstance(value, torch.Tensor) else torch.tensor(float(value), dtype=torch.float64)
    if _distributed():
        tensor = tensor.to(device if device.type == "cuda" else "cpu")
        dist.all_reduce(tensor)
    return tensor


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether `flag` is true on at least one process (the flag itself when not distributed)."""
    return bool(all_reduce_sum(float(flag), device) > 0) if _distributed() else flag


def all_gather_objects(value: Any) -> list[Any]:
    """Every process's `value` (picklable), in rank order; `[value]` when not distributed."""
    if not _distributed():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_object(value: Any) -> Any:
    """Rank 0's `value` (picklable) on every process; `value` itself when not distributed."""
    if not _distributed():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def broadcast_module(module: nn.Module) -> None:
    """Overwrite every parameter and buffer with rank 0's, in place (no files, so no shared disk needed)."""
    if not _distributed():
        return
    for tensor in module.state_dict().values():
        dist.broadcast(tensor.data, src=0)


def barrier() -> None:
    """Wait for every process (no-op when not distributed)."""
    if _distributed():
        dist.barrier()
