"""The passes over a loader without training that `Trainer.evaluate` and `Trainer.predict` run.

Both go through the trainer's hooks (`_forward_pass`, `_compute_loss`, `_compute_metrics`), so a
subclass that changes how a batch is fed or scored is evaluated the way it is trained.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from treadmill.checkpoint import unwrap_model
from treadmill.training.batches import loss_and_weight
from treadmill.training.checks import (
    EmbeddingIndexError,
    check_embedding_inputs,
    diagnose_index_error,
)
from treadmill.training.precision import autocast_context
from treadmill.training.preflight import no_batches_error
from treadmill.training.running_means import RunningMeans
from treadmill.utils import batch_size_of, move_to_device

if TYPE_CHECKING:
    from treadmill.trainer import Trainer

__all__ = ["eval_mode", "evaluation_means", "predict_outputs"]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode inside the block, back in the mode it was in after it."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def evaluation_means(trainer: Trainer, loader: Iterable[Any], name: str = "the evaluation loader",
                     on_batch: Callable[[], None] | None = None) -> RunningMeans:
    """Loss (weighted like training) and metrics over every batch of the loader, as running means;
    `on_batch()` after each batch (a progress bar's advance)."""
    running = RunningMeans()
    model = unwrap_model(trainer.model)
    batches = 0
    with eval_mode(trainer.model), torch.inference_mode():
        for index, batch in enumerate(loader):
            batch = move_to_device(batch, trainer.device)
            checked = index == 0 and trainer.config.check_embedding_inputs
            try:
                with check_embedding_inputs(model, batch) if checked else contextlib.nullcontext():
                    with autocast_context(trainer.precision, trainer.device):
                        predictions = trainer._forward_pass(batch)
                        loss, weight = loss_and_weight(trainer._compute_loss(batch, predictions))
            except (IndexError, RuntimeError) as err:  # any batch: name the loader, the batch and the embedding
                found = _embedding_error(model, batch, lambda batch=batch: trainer._forward_pass(batch), err)
                if found is None:
                    raise
                raise EmbeddingIndexError(f"In {name}, batch {index}: {found}") from err
            batch_size = batch_size_of(batch)
            running.update("loss", loss, batch_size if weight is None else weight)
            for metric, value in trainer._compute_metrics(batch, predictions).items():
                running.update(metric, value, batch_size)
            batches += 1
            if on_batch is not None:
                on_batch()
    if batches == 0:
        raise no_batches_error(name, "yielded no batches")
    return running


def _embedding_error(model: nn.Module, batch: Any, run_forward: Any, err: BaseException) -> EmbeddingIndexError | None:
    """The EmbeddingIndexError behind `err` (itself, or found by re-running with checks), else None."""
    if isinstance(err, EmbeddingIndexError):
        return err
    try:
        diagnose_index_error(model, batch, run_forward, err)
    except EmbeddingIndexError as diagnosed:
        return diagnosed
    return None


def predict_outputs(trainer: Trainer, loader: Iterable[Any]) -> Any:
    """The trainer's forward pass on every batch, concatenated along dim 0 when they are tensors."""
    outputs = []
    with eval_mode(trainer.model), torch.inference_mode(), autocast_context(trainer.precision, trainer.device):
        for batch in loader:
            outputs.append(trainer._forward_pass(move_to_device(batch, trainer.device)))
    if outputs and all(isinstance(o, torch.Tensor) for o in outputs):
        try:
            return torch.cat(outputs, dim=0)
        except RuntimeError:
            return outputs
    return outputs
