"""Sanity checks that turn silent or cryptic failures into errors that name the culprit."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from treadmill.utils import iter_tensors

__all__ = [
    "EmbeddingIndexError",
    "NonFiniteLossError",
    "check_embedding_inputs",
    "check_finite_loss",
    "check_finite_weights",
    "diagnose_index_error",
    "first_non_finite_module",
]


class EmbeddingIndexError(IndexError):
    """An id outside [0, num_embeddings) reached an nn.Embedding."""


class NonFiniteLossError(FloatingPointError):
    """The loss (or the weights about to be checkpointed) became NaN or infinite."""


def _source_of(ids: torch.Tensor, batch: Any) -> str | None:
    """The batch entry an embedding input came from: the same storage, or equal values."""
    try:
        storage = ids.untyped_storage().data_ptr()
    except RuntimeError:
        storage = None
    for path, tensor in iter_tensors(batch):
        if tensor.dtype != ids.dtype:
            continue
        if storage is not None and tensor.untyped_storage().data_ptr() == storage:
            return path
        if tensor.shape == ids.shape and torch.equal(tensor, ids):
            return path
    return None


@contextlib.contextmanager
def check_embedding_inputs(model: nn.Module, batch: Any) -> Iterator[None]:
    """Within the block, raise EmbeddingIndexError when an embedding gets an out-of-range id."""

    def make_hook(name: str, module: nn.Embedding) -> Callable[..., None]:
        def hook(_module: nn.Module, args: tuple[Any, ...]) -> None:
            ids = args[0]
            if not isinstance(ids, torch.Tensor) or ids.numel() == 0:
                return
            low, high = int(ids.min()), int(ids.max())
            if low >= 0 and high < module.num_embeddings:
                return
            bad = high if high >= module.num_embeddings else low
            source = _source_of(ids, batch)
            came_from = f" The ids come from {source}." if source else ""
            raise EmbeddingIndexError(
                f"Embedding '{name}' has num_embeddings={module.num_embeddings} (valid ids 0.."
                f"{module.num_embeddings - 1}) but received id {bad}.{came_from} Check that the vocabulary "
                "size given to the model counts every id the data can produce (special tokens included), "
                "and that source and target ids are numbered from separate vocabularies."
            )

        return hook

    handles = [
        module.register_forward_pre_hook(make_hook(name, module))
        for name, module in model.named_modules()
        if isinstance(module, nn.Embedding)
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _has_non_finite(output: Any) -> bool:
    return any(
        t.is_floating_point() and not bool(torch.isfinite(t).all()) for _, t in iter_tensors(output)
    )


def first_non_finite_module(model: nn.Module, run_forward: Callable[[], Any]) -> str | None:
    """Run the forward pass and return the first module (in execution order) whose output is
    non-finite, as "path (Type)"; None when every module output is finite."""
    found: list[str] = []

    def make_hook(name: str) -> Callable[..., None]:
        def hook(module: nn.Module, _args: Any, output: Any) -> None:
            if not found and _has_non_finite(output):
                found.append(f"'{name or '<model>'}' ({type(module).__name__})")

        return hook

    handles = [m.register_forward_hook(make_hook(n)) for n, m in model.named_modules()]
    try:
        with torch.no_grad():
            run_forward()
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None


def check_finite_loss(loss: torch.Tensor, model: nn.Module, run_forward: Callable[[], Any], where: str) -> None:
    """Raise NonFiniteLossError, naming the first module whose output became non-finite, if the loss is."""
    if bool(torch.isfinite(loss.detach()).all()):
        return
    culprit = first_non_finite_module(model, run_forward)
    found = (
        f"The first module whose output became non-finite is {culprit}."
        if culprit
        else "Every module output was finite: the loss function itself produced it (log(0), division by zero?)."
    )
    raise NonFiniteLossError(
        f"Loss became {float(loss.detach())} at {where}. {found} Try a lower learning rate, warm-up, "
        "max_grad_norm, or check the inputs."
    )


def check_finite_weights(model: nn.Module, where: str, target: object) -> None:
    """Raise NonFiniteLossError naming the NaN/inf weights and buffers, before `target` is written with them."""
    tensors = [(name, t) for name, t in model.state_dict().items() if t.is_floating_point() and t.numel()]
    if not tensors:
        return
    device = tensors[0][1].device
    finite = torch.stack([torch.isfinite(t).all().to(device) for _, t in tensors]).tolist()  # one host sync
    bad = [f"'{name}' ({'nan' if bool(t.isnan().any()) else 'inf'})" for (name, t), ok in zip(tensors, finite, strict=True) if not ok]
    if bad:
        raise NonFiniteLossError(
            f"Weights became non-finite at {where}: {', '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}. "
            f"{target} was not written, so the previous checkpoint is kept. Try a lower learning rate, "
            "warm-up, max_grad_norm, or check the inputs."
        )


def diagnose_index_error(model: nn.Module, batch: Any, run_forward: Callable[[], Any], err: BaseException) -> None:
    """For an "index out of range" error, re-run the forward pass with embedding checks and raise the
    EmbeddingIndexError that names the module; return when that finds nothing better to say."""
    if isinstance(err, EmbeddingIndexError) or "index out of range" not in str(err):
        return
    with torch.no_grad(), check_embedding_inputs(model, batch):
        try:
            run_forward()
        except EmbeddingIndexError as diagnosed:
            raise diagnosed from err
        except Exception:  # noqa: BLE001 - the original error is more useful then
            return
