"""The Trainer: the training loop and the hook methods subclasses override, nothing else.

The whole loop, as `fit()` runs it::

    for epoch in range(start_epoch, config.epochs):
        for batch in train_dataloader:                    # moved to the device
            with autocast:
                predictions = self._forward_pass(batch)
                loss = self._compute_loss(batch, predictions)
            backward(loss * weight)                       # weight: samples, or tokens if reported
            if the accumulation group is complete (or the epoch ended):
                gradients /= group weight                 # exact: 4 x 8 samples == 1 x 32
                unscale (fp16); clip to max_grad_norm; optimizer.step()
                self._step_scheduler("step")              # schedules with interval "step"
                every validation_every_n_steps inside the epoch: validate   # history["step_validations"]
        if validation is due: val_metrics = self.evaluate(val_dataloader, prefix="val_")
                                                          # every validation_frequency epochs, or (with
                                                          # validation_every_n_steps) at a multiple / the end
        self._step_scheduler("epoch", metrics)            # interval "epoch"; ReduceLROnPlateau on val_
        on_epoch_end callbacks (early stopping, checkpoints, loggers)

The loop's support code lives in `treadmill.training` (optimizers and schedules, precision, running
means, data order, signals, checks, progress, the evaluation pass); checkpoint writing, loading and
exact resume in `treadmill.checkpoint`; callbacks, and the ones the config asks for
(`callbacks.from_config`), in `treadmill.callbacks`.

Long because: this file is the loop, read top to bottom (fit -> _run_epochs -> _train_epoch ->
_optimizer_step -> _step_scheduler -> _end_epoch), with the hooks subclasses override and the thin
public methods (evaluate, predict, state_dict, save_checkpoint, print, warn). Every helper that is
not the loop's own control flow has moved out; splitting that control flow (accumulation, DDP
no_sync and stop agreement, deferred epoch-end saves, signal stops) across files would make the
loop harder to follow, not easier.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from treadmill.activation_checkpointing import enable_activation_checkpointing
from treadmill.callbacks.base import Callback, infer_mode, missing_monitor_warning
from treadmill.callbacks.configured import from_config
from treadmill.checkpoint import (
    export_weights,
    restore_training_state,
    save_last,
    save_state,
    training_state,
    unwrap_model,
)
from treadmill.distributed import (
    DistInfo,
    all_reduce_sum,
    any_rank,
    setup_distributed,
    shard_loader,
    wrap_ddp,
)
from treadmill.fsdp import fsdp_process_group, gradient_sync, wrap_fsdp
from treadmill.sharded_checkpoint import export_sharded_weights
from treadmill.training.batches import (
    TARGET_KEYS,
    feed_model,
    loss_and_weight,
    named_metric_fns,
    targets_of,
)
from treadmill.training.checks import (
    check_embedding_inputs,
    check_finite_loss,
    diagnose_index_error,
)
from treadmill.training.compat import PytorchTreadmillMethods, warn_if_overfitting
from treadmill.training.data_order import (
    batches_in_epoch,
    epoch_iterator,
    first_batches,
    seed_epoch,
)
from treadmill.training.dir_lock import DirectoryLock
from treadmill.training.evaluation import evaluation_means, predict_outputs
from treadmill.training.hardware import HardwareMonitor
from treadmill.training.history import new_history, record_epoch
from treadmill.training.optim import build_optimizer, scheduler_for
from treadmill.training.precision import (
    autocast_context,
    make_grad_scaler,
    resolve_precision,
    step_optimizer,
)
from treadmill.training.preflight import (
    as_training_config,
    check_loader_not_empty,
    check_training_loss,
    no_batches_error,
)
from treadmill.training.progress import ProgressReporter
from treadmill.training.running_means import RunningMeans
from treadmill.training.signals import GracefulStop, TrainingInterrupted
from treadmill.utils import batch_size_of, move_to_device, resolve_device, seed_everything

if TYPE_CHECKING:
    from treadmill.config import TrainingConfig

__all__ = ["Trainer", "TARGET_KEYS"]

# Embedding inputs are range-checked on this many first training batches (and one validation batch).
_CHECKED_BATCHES = 2


class Trainer(PytorchTreadmillMethods):
    """Trains a model on a DataLoader with the documented hooks, callbacks and checkpoints."""

    def __init__(
        self,
        model: nn.Module,
        config: TrainingConfig | Mapping[str, Any] | None = None,
        train_dataloader: Iterable[Any] | None = None,
        val_dataloader: Iterable[Any] | None = None,
        loss_fn: Callable[..., Any] | None = None,
        metric_fns: Mapping[str, Callable[..., Any]] | Sequence[Callable[..., Any]] | None = None,
        callbacks: Sequence[Callback] | None = None,
    ) -> None:
        self.config = as_training_config(config)
        check_loader_not_empty(train_dataloader, "train_dataloader")
        check_loader_not_empty(val_dataloader, "val_dataloader")
        if self.config.seed is not None:
            seed_everything(self.config.seed)
        self._place(model, train_dataloader, val_dataloader)
        self.loss_fn = loss_fn
        self.metric_fns: dict[str, Callable[..., Any]] = named_metric_fns(metric_fns)
        self.precision = resolve_precision(self.config.precision, self.device, self.config.force_mixed_precision)
        self.scaler = make_grad_scaler(self.precision, self.device)
        # Without training data the trainer only evaluates: no optimizer state is allocated.
        self.optimizer: Any = None
        self.scheduler: Any = None
        if self.train_dataloader is not None:
            self.optimizer = build_optimizer(unwrap_model(self.model), self.config.optimizer)
            self.scheduler = scheduler_for(self.optimizer, self.config, self.train_dataloader)
        user_callbacks = list(callbacks or [])
        configured = from_config(self.config, user_callbacks, has_val_loader=self.val_dataloader is not None, warn=self.warn)
        self.callbacks: list[Callback] = user_callbacks + configured
        self.progress = ProgressReporter(enabled=self.config.progress_bar and self.dist.is_main, quiet=not self.dist.is_main,
                                         monitor=self.config.monitor, mode=self.monitor_mode, max_steps=self.config.max_steps)
        self.history: dict[str, Any] = new_history()
        self.global_step = 0
        self.epoch = 0
        self.should_stop = False
        self.skipped_steps = 0  # fp16 steps skipped by the grad scaler (inf/NaN gradients)
        self.last_grad_norm: float | None = None
        self.batch_in_epoch = 0
        self._grad_norm: torch.Tensor | None = None
        self._deferred_saves: list[tuple[Path, Any]] | None = None  # see _end_epoch
        self._custom_targets: Any = None  # config.custom_forward_fn's targets of the current batch
        self._warned_plateau = False
        self._running = RunningMeans()
        self._overfit_cache: list[Any] | None = None
        self._stop = GracefulStop()
        self.hardware_monitor = HardwareMonitor()
        self.training_report: Any = None  # filled by fit() (pytorch-treadmill's report)
        self.print_report = True  # the command line prints its own, fuller report instead

    def _place(self, model: nn.Module, train_dataloader: Iterable[Any] | None, val_dataloader: Iterable[Any] | None) -> None:
        """Choose the device and process group, wrap the model (DDP, FSDP) and shard the loaders."""
        self.device = resolve_device(self.config.device)
        self.sharded = self.config.strategy == "fsdp"
        self.dist = DistInfo(*fsdp_process_group(self.device)) if self.sharded else setup_distributed(self.device)
        if (self.dist.enabled or self.sharded) and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        # Seeds the per-epoch data order (see treadmill.training.data_order); saved with checkpoints.
        self.data_seed = self.config.seed if self.config.seed is not None else (0 if self.dist.enabled else torch.initial_seed() % 2**31)
        # Under FSDP, fully_shard moves each rank's shards to the device: the whole model is never there.
        self.model = model if self.sharded else model.to(self.device)
        if self.config.activation_checkpointing:
            enable_activation_checkpointing(unwrap_model(self.model))
        if self.sharded:
            self.model = wrap_fsdp(unwrap_model(self.model), self.device, self.config.precision, self.config.fsdp_wrap)
        elif self.dist.enabled:
            self.model = wrap_ddp(self.model, self.device)
        if self.dist.enabled:
            train_dataloader = shard_loader(train_dataloader, self.dist, self.data_seed)
            val_dataloader = shard_loader(val_dataloader, self.dist, self.data_seed)
        self.train_dataloader = train_dataloader
        self.val_dataloader = val_dataloader

    # ------------------------------------------------------------------ hooks subclasses override

    def _forward_pass(self, batch: Any) -> Any:
        """Run the model on a batch: tensors go in whole; (inputs, targets) pairs pass inputs;
        dict batches pass every non-target entry as a keyword argument."""
        if self.config.custom_forward_fn is not None:  # pytorch-treadmill: fn(model, batch) -> (outputs, targets)
            outputs, self._custom_targets = self.config.custom_forward_fn(self.model, batch)
            return outputs
        return feed_model(self.model, batch)

    def _targets(self, batch: Any) -> Any:
        """The targets inside a batch: the second item of a pair, or a target key of a dict."""
        if self.config.custom_forward_fn is not None:
            return self._custom_targets
        return targets_of(batch)

    def _compute_loss(self, batch: Any, predictions: Any) -> Any:
        """The loss of a batch: `loss_fn(predictions, targets)`, or the model's own `compute_loss`."""
        targets = self._targets(batch)
        if self.loss_fn is not None:
            return self.loss_fn(predictions, targets)
        model = unwrap_model(self.model)
        if hasattr(model, "compute_loss"):
            return model.compute_loss(predictions, targets)  # type: ignore[operator]
        raise ValueError(
            "No loss: pass loss_fn=... to Trainer, give the model a compute_loss(outputs, targets) "
            "method, or override Trainer._compute_loss."
        )

    def _compute_metrics(self, batch: Any, predictions: Any) -> dict[str, Any]:
        """Every metric function applied to (predictions, targets)."""
        if not self.metric_fns:
            return {}
        targets = self._targets(batch)
        return {name: fn(predictions, targets) for name, fn in self.metric_fns.items()}

    def _derive_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Metrics computed from the epoch's means (e.g. perplexity from mean NLL); identity here."""
        return metrics

    # ------------------------------------------------------------------ the loop

    def fit(self, resume_from: str | Path | None = None) -> dict[str, Any]:
        """Train for `config.epochs` epochs (or until stopped) and return the history."""
        if self.train_dataloader is None:
            raise ValueError("Trainer.fit needs train_dataloader: a Trainer built without one only evaluates.")
        if resume_from is None and self.config.resume_training:  # pytorch-treadmill's way to ask
            resume_from = "last"
        # One writer per checkpoint directory, checked writable before any work (rank 0 writes).
        claim = DirectoryLock(self.config.checkpoint_dir) if self.config.checkpoint_dir and self.dist.is_main else contextlib.nullcontext()
        with claim:
            start_epoch, skip_batches = restore_training_state(self, resume_from) if resume_from is not None else (self.epoch, 0)
            if self.config.resume_training and self.config.additional_epochs is not None:
                self.config.epochs = start_epoch + self.config.additional_epochs
            self.should_stop = False
            for cb in self.callbacks:
                cb.on_train_start(self)
            self._stop = GracefulStop()
            started, start_time = time.perf_counter(), datetime.now().astimezone()
            self.hardware_monitor.sample()
            with self._stop:
                self._run_epochs(start_epoch, skip_batches)
        for cb in self.callbacks:
            cb.on_train_end(self)
        self._finish_report(started, start_time)
        return self.history

    train = fit  # pytorch-treadmill's name

    def _run_epochs(self, start_epoch: int, skip_batches: int) -> None:
        try:
            if self._reached_max_steps():  # resumed from a run that reached this max_steps: nothing to train
                return
            for epoch in range(start_epoch, self.config.epochs):
                self.epoch = epoch
                for cb in self.callbacks:
                    cb.on_epoch_start(self, epoch)
                metrics = self._train_epoch(epoch, skip_batches)
                skip_batches = 0
                # Stopped by max_steps inside the epoch: last.pt keeps the position, before the epoch end.
                total = batches_in_epoch(self.train_dataloader, self.config.overfit_batches)
                cut_short = self._reached_max_steps() and (total is None or self.batch_in_epoch < total)
                if cut_short and self.config.checkpoint_dir and self.config.save_last_model:
                    save_last(self)
                if self.val_dataloader is not None and self._validation_due(epoch):
                    metrics.update(self._validate())
                self._end_epoch(epoch, metrics, write_last=not cut_short)
                if self._stop_now(sync=True):
                    break
        except BaseException as exc:
            self.progress.close()  # a live bar must not outlive the loop (the cursor stays hidden)
            for cb in self.callbacks:
                cb.on_exception(self, exc)
            raise

    def _train_epoch(self, epoch: int, skip_batches: int = 0) -> dict[str, float]:
        """One pass over the training data; returns the epoch's weighted-mean train metrics."""
        self.model.train()
        config, accum = self.config, self.config.gradient_accumulation_steps
        batches = self._epoch_batches(epoch, skip_batches)
        total_batches = batches_in_epoch(self.train_dataloader, config.overfit_batches)
        running = self._running
        if skip_batches == 0:
            running.reset()
        self.progress.start_epoch(epoch, config.epochs, total_batches, done=skip_batches)
        group_weight: Any = 0
        samples_seen, started = 0, time.perf_counter()
        self.batch_in_epoch = skip_batches
        for batch_idx, batch in enumerate(batches, start=skip_batches):
            batch = move_to_device(batch, self.device)
            for cb in self.callbacks:
                cb.on_batch_start(self, batch, batch_idx)
            end_of_group = (batch_idx + 1) % accum == 0 or (total_batches is not None and batch_idx + 1 == total_batches)
            with self._gradient_sync(end_of_group):
                predictions, loss, weight = self._forward_and_loss(batch, checked=self.global_step < _CHECKED_BATCHES)
                check_training_loss(loss, f"step {self.global_step} (epoch {epoch + 1}, batch {batch_idx})")
                batch_size = batch_size_of(batch)
                weight = batch_size if weight is None else weight
                if config.detect_non_finite and (self.device.type == "cpu" or self._is_log_step()):
                    self._check_finite(loss, batch)
                self._backward(loss if accum == 1 else loss * weight)
            group_weight = group_weight + weight
            running.update("loss", loss.detach(), weight)
            for name, value in self._compute_metrics_detached(batch, predictions).items():
                running.update(name, value, batch_size)
            samples_seen += batch_size
            self.batch_in_epoch = batch_idx + 1
            if end_of_group:
                self._optimizer_step(group_weight if accum > 1 else None)
                group_weight = 0
                if self._is_log_step():
                    self._log(loss, samples_seen / max(time.perf_counter() - started, 1e-9))
                last_of_epoch = total_batches is not None and batch_idx + 1 == total_batches
                if not last_of_epoch and not self._reached_max_steps() and self._validation_step_due():
                    self._validate_mid_epoch()  # at the epoch's end the epoch's own validation runs
                self._maybe_checkpoint_mid_epoch()
            for cb in self.callbacks:
                cb.on_batch_end(self, batch, batch_idx, loss.detach())
            if self._stop_now(sync=end_of_group and self._is_log_step()):
                break
        if not isinstance(group_weight, int) or group_weight:
            self._optimizer_step(group_weight if accum > 1 else None)  # loader without len: last partial group
        if self.batch_in_epoch == 0 and not self._reached_max_steps():
            raise no_batches_error("train_dataloader", f"yielded no batches in epoch {epoch + 1}")
        return self._derive_metrics(running.compute(self._all_reduce if self.dist.enabled else None))

    def _gradient_sync(self, end_of_group: bool) -> contextlib.AbstractContextManager[Any]:
        """DDP all-reduces (FSDP reduce-scatters) gradients only on the last micro-batch of a group."""
        if self.sharded:
            return gradient_sync(self.model, end_of_group)
        if self.dist.enabled and not end_of_group:
            return self.model.no_sync()  # type: ignore[operator,no-any-return]
        return contextlib.nullcontext()

    def _backward(self, scaled: torch.Tensor) -> None:
        """Backward a loss (or, accumulating, loss × weight: the step divides by the group's total
        weight, exact whatever the batch sizes or token counts in the group)."""
        if self.scaler is not None:
            scaled = self.scaler.scale(scaled)
        if self.config.custom_backward_fn is not None:  # pytorch-treadmill: fn(loss, model, optimizer)
            self.config.custom_backward_fn(scaled, self.model, self.optimizer)
        else:
            scaled.backward()

    def _forward_and_loss(self, batch: Any, checked: bool) -> tuple[Any, torch.Tensor, Any]:
        """Forward pass and loss under autocast; embedding inputs range-checked when asked."""
        try:
            with check_embedding_inputs(unwrap_model(self.model), batch) if checked and self.config.check_embedding_inputs else contextlib.nullcontext():
                with autocast_context(self.precision, self.device):
                    predictions = self._forward_pass(batch)
                    loss, weight = loss_and_weight(self._compute_loss(batch, predictions))
        except (IndexError, RuntimeError) as err:
            diagnose_index_error(unwrap_model(self.model), batch, lambda: self._forward_pass(batch), err)
            raise
        return predictions, loss, weight

    def _compute_metrics_detached(self, batch: Any, predictions: Any) -> dict[str, Any]:
        if not self.metric_fns and type(self)._compute_metrics is Trainer._compute_metrics:
            return {}
        with torch.no_grad():
            return self._compute_metrics(batch, predictions)

    def _optimizer_step(self, group_weight: Any) -> None:
        """Average accumulated gradients, unscale, clip, step optimizer and scheduler, zero grads."""
        params = [p for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if group_weight is not None and params:
            if self.dist.enabled:  # DDP/FSDP averaged over processes: divide by the mean group weight
                group_weight = all_reduce_sum(group_weight, self.device) / self.dist.world_size
            grads = [p.grad for p in params]
            divisor = group_weight.to(grads[0].dtype) if isinstance(group_weight, torch.Tensor) else float(group_weight)
            torch._foreach_div_(grads, divisor)
        for cb in self.callbacks:
            cb.on_before_optimizer_step(self)
        if self.config.max_grad_norm is not None:
            # Under FSDP the gradients are DTensor shards; the norm comes back as a replicated DTensor
            # of the global norm, which every rank clips by alike.
            norm = torch.nn.utils.clip_grad_norm_(params, self.config.max_grad_norm)
            self._grad_norm = (norm.full_tensor() if hasattr(norm, "full_tensor") else norm).detach()
        else:
            self._grad_norm = None
        stepped = step_optimizer(self.optimizer, self.scaler)
        self.optimizer.zero_grad(set_to_none=True)
        if not stepped:
            self.skipped_steps += 1  # the scheduler does not advance on a skipped step either
        else:
            self._step_scheduler("step")
        self.global_step += 1
        for cb in self.callbacks:
            cb.on_after_optimizer_step(self)

    def _step_scheduler(self, when: Literal["step", "epoch"], metrics: Mapping[str, float] | None = None) -> None:
        """Advance the LR schedule if `when` is its interval: after each optimizer step that updated
        the weights, or at the epoch end, where ReduceLROnPlateau steps on the monitored metric."""
        schedule = self.config.scheduler
        if self.scheduler is None or schedule is None or schedule.interval != when:
            return
        if metrics is None or not isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step()
        elif schedule.monitor in metrics:
            self.scheduler.step(metrics[schedule.monitor])
        elif not self._warned_plateau:
            warning = missing_monitor_warning("ReduceLROnPlateau (SchedulerConfig.monitor)", schedule.monitor, metrics)
            if warning:
                self.warn(warning + " The learning rate is not reduced.")
                self._warned_plateau = True

    def _validation_due(self, epoch: int) -> bool:
        """Whether the epoch ending now is validated: every validation_frequency epochs, or with
        validation_every_n_steps when the step count is a multiple of it or training ends here."""
        if self.config.validation_every_n_steps is None:
            return (epoch + 1) % self.config.validation_frequency == 0
        return self._validation_step_due() or self._reached_max_steps() or epoch + 1 == self.config.epochs

    def _validation_step_due(self) -> bool:
        every = self.config.validation_every_n_steps
        return every is not None and self.val_dataloader is not None and self.global_step % every == 0

    def _validate_mid_epoch(self) -> None:
        """Validation between two epoch ends (validation_every_n_steps): its metrics go to the
        callbacks' on_log and to history["step_validations"] (the epoch rows stay one per epoch)."""
        metrics = self._validate()
        self.log_scalars(metrics)
        record = self.history.setdefault("step_validations", {"step": []})
        record["step"].append(self.global_step)
        for name, value in metrics.items():
            record.setdefault(name, []).append(value)

    def _is_log_step(self) -> bool:
        return self.global_step % self.config.log_frequency == 0

    def _stop_now(self, sync: bool) -> bool:
        """Whether training ends here. Under DDP every rank must stop at the same step, so a stop one
        rank asked for (an alarm, early stopping) is agreed on only at `sync` points: log steps and
        epoch ends, where every rank arrives together."""
        if self.dist.enabled:
            if not sync:
                return self._reached_max_steps()
            self.should_stop = any_rank(self.should_stop, self.device)
        return self.should_stop or self._reached_max_steps()

    def _reached_max_steps(self) -> bool:
        return self.config.max_steps is not None and self.global_step >= self.config.max_steps

    def _log(self, loss: torch.Tensor, samples_per_s: float) -> None:
        """Scalars at a logging step: one host sync for the loss (and grad norm) here only."""
        scalars = {"loss": float(loss.detach()), "lr": self.optimizer.param_groups[0]["lr"], "samples_per_s": samples_per_s}
        if self._grad_norm is not None:
            scalars["grad_norm"] = self.last_grad_norm = float(self._grad_norm)  # before clipping
        if self.scaler is not None:
            scalars["skipped_steps"] = float(self.skipped_steps)
        self.progress.update(self.batch_in_epoch, scalars["loss"], scalars["lr"], samples_per_s, step=self.global_step)
        for cb in self.callbacks:
            cb.on_log(self, scalars)

    def _check_finite(self, loss: torch.Tensor, batch: Any) -> None:
        where = f"step {self.global_step} (epoch {self.epoch + 1}, batch {self.batch_in_epoch})"
        check_finite_loss(loss, unwrap_model(self.model), lambda: self._forward_pass(batch), where)

    def _end_epoch(self, epoch: int, metrics: dict[str, float], write_last: bool = True) -> None:
        self._step_scheduler("epoch", metrics)  # after validation: ReduceLROnPlateau needs val_ metrics
        # Full-state saves asked for by on_epoch_end hooks (ModelCheckpoint's .pt files) wait until
        # the epoch is complete, so resuming from them starts the next epoch instead of replaying
        # this one's validation, epoch scheduler step and callbacks.
        self._deferred_saves = []
        try:
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch, metrics)
        finally:
            deferred, self._deferred_saves = self._deferred_saves, None
        self._record_history(metrics)
        warn_if_overfitting(self, metrics)
        self.hardware_monitor.sample()
        self.progress.end_epoch(metrics, self.history)
        self.epoch = epoch + 1
        self.batch_in_epoch = 0
        for path, info in deferred:
            self.save_checkpoint(path, info)
        if write_last and self.config.checkpoint_dir and self.config.save_last_model:
            save_last(self)

    def _record_history(self, metrics: dict[str, float]) -> None:
        record_epoch(self.history, metrics)

    # ------------------------------------------------------------------ data order

    def _epoch_batches(self, epoch: int, skip_batches: int) -> Iterable[Any]:
        """The training batches of an epoch, starting after `skip_batches` (exact resume)."""
        loader = self.train_dataloader
        assert loader is not None, "fit() checks that a training loader was given"
        if self.config.overfit_batches:
            if self._overfit_cache is None:  # the same N batches every epoch
                self._overfit_cache = first_batches(loader, self.config.overfit_batches, self.data_seed)
            return self._overfit_cache[skip_batches:]
        seed_epoch(loader, self.data_seed, epoch)
        return epoch_iterator(loader, skip_batches)  # type: ignore[arg-type]

    def _all_reduce(self, tensor: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(tensor, self.device).to(tensor.dtype)

    def _maybe_checkpoint_mid_epoch(self) -> None:
        """Write `last` every checkpoint_every_n_steps, and stop cleanly after a signal."""
        every = self.config.checkpoint_every_n_steps
        if every and self.config.checkpoint_dir and self.global_step % every == 0:
            save_last(self)
        if self._stop.requested is None:
            return
        if self.config.checkpoint_dir:
            path = save_last(self)
            self.print(f"Saved the training state to {path}. Resume with trainer.fit(resume_from={str(path)!r}) "
                       "or `treadmill train ... training.resume_from=last`.")
        else:
            self.print("No checkpoint_dir is configured, so the training state was not saved.")
        raise TrainingInterrupted(128 + self._stop.requested)

    # ------------------------------------------------------------------ evaluation

    def _validate(self) -> dict[str, float]:
        for cb in self.callbacks:
            cb.on_validation_start(self)
        metrics = self.evaluate(self.val_dataloader, prefix="val_")  # type: ignore[arg-type]
        for cb in self.callbacks:
            cb.on_validation_end(self, metrics)
        return metrics

    def evaluate(self, dataloader: Iterable[Any] | None = None, prefix: str = "") -> dict[str, float]:
        """Loss and metrics over a loader (the validation loader by default) as a flat dict."""
        loader = dataloader if dataloader is not None else self.val_dataloader
        if loader is None:
            raise ValueError("Trainer.evaluate needs a dataloader (none given and no val_dataloader).")
        name = "val_dataloader" if loader is self.val_dataloader else "the evaluation loader"
        with self.progress.track("validating" if prefix == "val_" else "evaluating", batches_in_epoch(loader)) as bar:
            running = evaluation_means(self, loader, name, on_batch=bar.advance)
        reduce = self._all_reduce if self.dist.enabled else None
        return {f"{prefix}{k}": v for k, v in self._derive_metrics(running.compute(reduce)).items()}

    def predict(self, dataloader: Iterable[Any]) -> Any:
        """Model outputs for every batch, concatenated along dim 0 when they are tensors."""
        return predict_outputs(self, dataloader)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The full training state: everything needed to continue exactly where training is."""
        return training_state(self)

    def save_checkpoint(self, path: str | Path, additional_info: Mapping[str, Any] | None = None) -> Path:
        """Write the full training state to path atomically (on the main process only), with
        `additional_info` (plain data) stored beside it."""
        if self._deferred_saves is not None:  # called from on_epoch_end: written once the epoch ends
            self._deferred_saves.append((Path(path), additional_info))
            return Path(path)
        return save_state(self, path, additional_info)

    def export_weights(self, path: str | Path) -> Path:
        """Write the model's weights as safetensors (on the main process only; under FSDP every
        rank must call it, as all take part in gathering the full weights)."""
        if self.sharded:
            return export_sharded_weights(self.model, path, self.dist.is_main)
        if not self.dist.is_main:
            return Path(path)
        return export_weights(self.model, path)

    # ------------------------------------------------------------------ output

    def log_scalars(self, scalars: Mapping[str, float]) -> None:
        """Send extra scalars (diagnostics, ...) to every callback's `on_log` at the current step."""
        for cb in self.callbacks:
            cb.on_log(self, dict(scalars))

    def print(self, message: str) -> None:
        """Print a line of training output (main process only)."""
        if self.dist.is_main:
            print(message, flush=True)

    def warn(self, message: str) -> None:
        """Emit a warning about the run (main process only)."""
        if self.dist.is_main:
            warnings.warn(message, UserWarning, stacklevel=2)

    @property
    def monitor_mode(self) -> str:
        """'min' or 'max' for the config's monitored metric."""
        mode = self.config.monitor_mode
        return infer_mode(self.config.monitor) if mode == "auto" else mode
