"""Sharded data parallelism: PyTorch's FSDP2 (`torch.distributed.fsdp.fully_shard`) under torchrun.

`TrainingConfig(strategy="fsdp")` shards every parameter, its gradient and its optimizer state over
the processes of the job: each rank keeps 1/N of each, and a wrapping unit (a transformer block)
gathers its full parameters just for its forward and backward. The units are chosen per model
family (`default_wrap_classes`), or named by `TrainingConfig.fsdp_wrap`; the root module is
sharded last, so embeddings, heads and tied weights live in the root unit.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from treadmill.validation import ConfigError

__all__ = ["is_fsdp", "default_wrap_classes", "wrap_fsdp", "gradient_sync", "launch_command", "no_process_group_error",
           "fsdp_process_group", "full_model_state", "non_finite_local_tensors", "FORWARD_METHODS"]

# The Transformer blocks of treadmill.nn.transformer: TransformerSeq2Seq's encoder and decoder
# layers, and GPT's blocks (a DecoderBlock without cross-attention).
TRANSFORMER_BLOCKS = ("EncoderBlock", "DecoderBlock")

# Methods besides forward() that run the model (decoding): FSDP must gather the root's parameters
# (embeddings, output head) for them too.
FORWARD_METHODS = ("encode", "decode", "generate")


def is_fsdp(model: nn.Module) -> bool:
    """Whether fully_shard has been applied to this module."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def default_wrap_classes(model: nn.Module) -> list[str]:
    """The class names sharded as separate units for this model: Treadmill's Transformer blocks,
    a Hugging Face model's `_no_split_modules`, or none (the root unit alone)."""
    hf_blocks = getattr(model, "_no_split_modules", None)
    if hf_blocks:
        return list(hf_blocks)
    present = {type(m).__name__ for m in model.modules()}
    return [name for name in TRANSFORMER_BLOCKS if name in present]


def launch_command(nproc: int = 2) -> str:
    """The torchrun command that launches this program (as it was started) on `nproc` processes."""
    argv = list(getattr(sys, "orig_argv", [sys.executable, *sys.argv]))[1:]
    while argv and argv[0].startswith("-") and argv[0] != "-m":  # interpreter flags (-u, -X ...)
        argv.pop(0)
    if not argv:
        argv = ["train.py"]
    return f"torchrun --standalone --nproc_per_node={nproc} {shlex.join(argv)}"


def no_process_group_error() -> ConfigError:
    """The error for strategy='fsdp' in a process that torchrun did not launch."""
    return ConfigError(
        "TrainingConfig.strategy='fsdp' shards the model over the processes of a torchrun job, but this "
        "process has no process group: it was not launched by torchrun (RANK and WORLD_SIZE are unset) "
        "and torch.distributed is not initialised. Launch it with torchrun, for example\n"
        f"  {launch_command()}\n"
        "(--nproc_per_node=number of GPUs, or of processes on CPU), or use strategy='ddp' (the default), "
        "which trains in one process when not launched by torchrun.",
        field="strategy",
    )


def fsdp_process_group(device: torch.device) -> tuple[int, int, int]:
    """(rank, local_rank, world_size) after joining the torchrun job's process group, even one of a
    single process; a ConfigError showing the torchrun command when there is no job."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), dist.get_world_size()
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise no_process_group_error()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), local_rank, dist.get_world_size()


def _mixed_precision(precision: str, device: torch.device) -> Any:
    """A MixedPrecisionPolicy on accelerators (parameters gathered in bf16/fp16, gradients reduced
    in fp32); None on CPU, where autocast alone decides the compute dtype."""
    if device.type == "cpu" or precision == "fp32":
        return None
    from torch.distributed.fsdp import MixedPrecisionPolicy

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)


def wrap_fsdp(model: nn.Module, device: torch.device, precision: str = "fp32",
              wrap_classes: Sequence[str] | None = None) -> nn.Module:
    """Shard `model` in place with fully_shard: each module whose class is in `wrap_classes`
    (default: `default_wrap_classes`) as its own unit, then the root; returns the same module."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    if is_fsdp(model):  # a model from an earlier trainer: already sharded
        return model
    names = list(default_wrap_classes(model) if wrap_classes is None else wrap_classes)
    present = {type(m).__name__ for m in model.modules()}
    unknown = [name for name in names if name not in present]
    if wrap_classes is not None and unknown:
        raise ConfigError(
            f"TrainingConfig.fsdp_wrap names {', '.join(map(repr, unknown))}, but {type(model).__name__} has no "
            f"module of that class. Its module classes: {', '.join(sorted(present))}.",
            field="fsdp_wrap",
        )
    from torch.distributed.device_mesh import init_device_mesh

    # The mesh on this trainer's device: FSDP's default takes the accelerator whenever one exists,
    # which a CPU (gloo) run on a GPU machine must not. fully_shard moves each shard to it, so the
    # whole model never has to fit on one device.
    kwargs: dict[str, Any] = {"mesh": init_device_mesh(device.type, (dist.get_world_size(),))}
    policy = _mixed_precision(precision, device)
    if policy is not None:
        kwargs["mp_policy"] = policy
    for module in list(model.modules()):
        if module is not model and type(module).__name__ in names:
            fully_shard(module, **kwargs)
    fully_shard(model, **kwargs)
    for method in FORWARD_METHODS:
        if callable(getattr(model, method, None)):
            register_fsdp_forward_method(model, method)
    return model


@contextlib.contextmanager
def gradient_sync(model: nn.Module, sync: bool) -> Iterator[None]:
    """FSDP's `no_sync`: without sync, gradients accumulate unsharded on each rank and are
    reduce-scattered at the group's last micro-batch."""
    if sync:
        yield
        return
    model.set_requires_gradient_sync(False)  # type: ignore[operator]
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)  # type: ignore[operator]


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole (unsharded) state dict on CPU, on every rank: a collective under FSDP."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    from treadmill.checkpoint import (
        unwrap_model,  # treadmill.checkpoint imports FSDP helpers lazily too
    )

    if not is_fsdp(model):
        return {k: v.detach().cpu() for k, v in unwrap_model(model).state_dict().items()}
    # cpu_offload=False keeps every rank's copy: tests and exports need the weights everywhere.
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=False))
    return {k: v.detach().cpu() for k, v in state.items() if isinstance(v, torch.Tensor)}


def non_finite_local_tensors(model: nn.Module) -> list[str]:
    """Names of the parameters and buffers whose local shard holds NaN or inf (no collectives)."""
    from torch.distributed.tensor import DTensor

    bad = []
    for name, tensor in model.state_dict().items():
        local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
        if local.is_floating_point() and local.numel() and not bool(torch.isfinite(local).all()):
            bad.append(name)
    return bad
