"""Trainer mechanics: accumulation, clipping, schedulers, weighted metrics, hooks, history."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from treadmill import OptimizerConfig, SchedulerConfig, Trainer, TrainingConfig
from treadmill.callbacks import Callback


def regression_data(n=64, dim=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dim, generator=g)
    y = x @ torch.randn(dim, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))


def quiet(**kwargs):
    kwargs.setdefault("progress_bar", False)
    kwargs.setdefault("optimizer", OptimizerConfig("SGD", lr=0.1))
    return TrainingConfig(**kwargs)


def params_after(model, config, loader, loss_fn=None):
    Trainer(model, config, loader, loss_fn=loss_fn or nn.MSELoss()).fit()
    return [p.detach().clone() for p in model.parameters()]


def test_accumulating_4_batches_of_8_equals_one_batch_of_32():
    x, y = regression_data(32)
    big = params_after(mlp(), quiet(epochs=1), DataLoader(TensorDataset(x, y), batch_size=32))
    small = params_after(
        mlp(),
        quiet(epochs=1, gradient_accumulation_steps=4),
        DataLoader(TensorDataset(x, y), batch_size=8),
    )
    for a, b in zip(big, small, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_accumulation_with_uneven_batches_weights_by_samples():
    # 32 samples in batches of 10, 10, 10, 2 accumulated in one group == one batch of 32.
    x, y = regression_data(32)
    big = params_after(mlp(), quiet(epochs=1), DataLoader(TensorDataset(x, y), batch_size=32))
    uneven = params_after(
        mlp(),
        quiet(epochs=1, gradient_accumulation_steps=4),
        DataLoader(TensorDataset(x, y), batch_size=10),
    )
    for a, b in zip(big, uneven, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


class TokenModel(nn.Module):
    """Per-token regression over padded sequences; the loss reports its token count."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.proj = nn.Linear(4, 1)

    def forward(self, x):
        return self.proj(x).squeeze(-1)


class TokenLoss:
    def __init__(self):
        self.calls = 0

    def __call__(self, pred, target):
        values, mask = target
        err = ((pred - values) ** 2) * mask
        n_tokens = mask.sum()
        return _TokenLossOutput(err.sum() / n_tokens, n_tokens)


class _TokenLossOutput:
    def __init__(self, loss, n_tokens):
        self.loss, self.n_tokens = loss, n_tokens


def test_accumulation_divides_by_target_tokens_when_reported():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 5, 4, generator=g)
    values = torch.randn(16, 5, generator=g)
    lengths = torch.randint(1, 6, (16,), generator=g)
    mask = (torch.arange(5)[None, :] < lengths[:, None]).float()
    data = [(x[i : i + 4], (values[i : i + 4], mask[i : i + 4])) for i in range(0, 16, 4)]
    whole = [(x, (values, mask))]
    big = params_after(TokenModel(), quiet(epochs=1), whole, loss_fn=TokenLoss())
    small = params_after(
        TokenModel(), quiet(epochs=1, gradient_accumulation_steps=4), data, loss_fn=TokenLoss()
    )
    for a, b in zip(big, small, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


class StepCounter(Callback):
    def __init__(self):
        self.steps = 0
        self.grad_norms = []

    def on_before_optimizer_step(self, trainer):
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        self.grad_norms.append(
            torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()
        )

    def on_after_optimizer_step(self, trainer):
        self.steps += 1


def test_last_partial_accumulation_group_steps():
    x, y = regression_data(40)
    counter = StepCounter()
    loader = DataLoader(TensorDataset(x, y), batch_size=4)  # 10 batches
    Trainer(
        mlp(),
        quiet(epochs=2, gradient_accumulation_steps=4),
        loader,
        loss_fn=nn.MSELoss(),
        callbacks=[counter],
    ).fit()
    assert counter.steps == 2 * 3  # groups of 4, 4, 2 per epoch


def test_clipping_bounds_the_gradient_and_logs_the_preclip_norm():
    x, y = regression_data(32)
    y = y * 100  # large gradients
    seen = {}

    class AfterClip(Callback):
        def on_after_optimizer_step(self, trainer):
            seen.setdefault("norm", trainer._grad_norm)

        def on_log(self, trainer, scalars):
            seen.setdefault("logged", scalars["grad_norm"])

    counter = StepCounter()
    model = mlp()
    before = [p.detach().clone() for p in model.parameters()]
    trainer = Trainer(
        model,
        quiet(epochs=1, max_grad_norm=0.5, log_frequency=1),
        DataLoader(TensorDataset(x, y), batch_size=32),
        loss_fn=nn.MSELoss(),
        callbacks=[counter, AfterClip()],
    )
    trainer.fit()
    pre_clip = counter.grad_norms[0]
    assert pre_clip > 0.5
    assert seen["logged"] == pytest.approx(pre_clip, rel=1e-4)
    # SGD with lr 0.1: the update's norm is lr * clipped norm.
    update = torch.sqrt(
        sum(((p.detach() - b) ** 2).sum() for p, b in zip(model.parameters(), before, strict=True))
    )
    assert update.item() == pytest.approx(0.1 * 0.5, rel=1e-4)


def test_step_scheduler_steps_once_per_optimizer_step():
    x, y = regression_data(40)
    loader = DataLoader(TensorDataset(x, y), batch_size=4)
    config = quiet(
        epochs=3,
        gradient_accumulation_steps=2,
        scheduler=SchedulerConfig("warmup_cosine", params={"warmup_steps": 3}),
    )
    trainer = Trainer(mlp(), config, loader, loss_fn=nn.MSELoss())
    trainer.fit()
    assert trainer.global_step == 15
    assert trainer.scheduler.last_epoch == 15
    # cosine decays to min_lr_ratio=0 at the last step
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_one_cycle_spans_every_step_when_batch_counts_vary_by_epoch():
    from treadmill.data import TokenBudgetBatchSampler

    x, y = regression_data(300)
    lengths = torch.randint(1, 30, (300,), generator=torch.Generator().manual_seed(0)).tolist()
    sampler = TokenBudgetBatchSampler(lengths, max_tokens=90, seed=2, bucket_size_multiplier=2)
    counts = sampler.epoch_lengths(4)
    assert sum(counts) > 4 * counts[0]  # epoch 0 alone would undercount: [86, 88, 88, 90]
    config = quiet(epochs=4, scheduler=SchedulerConfig("OneCycleLR", params={"max_lr": 0.02}))
    loader = DataLoader(TensorDataset(x, y), batch_sampler=sampler)
    trainer = Trainer(mlp(), config, loader, loss_fn=nn.MSELoss())
    trainer.fit()  # OneCycleLR raises if stepped past its total_steps
    assert trainer.global_step == sum(counts) == trainer.scheduler.total_steps


def test_settings_that_could_never_act_warn():
    x, y = regression_data(40)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    with pytest.warns(UserWarning, match="early_stopping_patience is set but the Trainer has no val_dataloader"):
        Trainer(mlp(), quiet(epochs=1, early_stopping_patience=2), loader, loss_fn=nn.MSELoss())
    plateau = SchedulerConfig("ReduceLROnPlateau", monitor="val_los")  # misspelt
    trainer = Trainer(mlp(), quiet(epochs=2, scheduler=plateau), loader, loader, loss_fn=nn.MSELoss())
    with pytest.warns(UserWarning, match="'val_los' is not logged; available: .*val_loss") as caught:
        trainer.fit()
    assert sum("val_los'" in str(w.message) for w in caught) == 1  # once, not every epoch


def test_warmup_reaches_peak_lr_then_decays():
    x, y = regression_data(80)
    lrs = []

    class Lr(Callback):
        def on_before_optimizer_step(self, trainer):
            lrs.append(trainer.optimizer.param_groups[0]["lr"])

    config = quiet(epochs=1, scheduler=SchedulerConfig("warmup_linear", params={"warmup_steps": 4}))
    Trainer(
        mlp(),
        config,
        DataLoader(TensorDataset(x, y), batch_size=4),
        loss_fn=nn.MSELoss(),
        callbacks=[Lr()],
    ).fit()
    assert lrs[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert lrs[4] == pytest.approx(0.1) and lrs[-1] < lrs[5]


def test_epoch_scheduler_steps_once_per_epoch():
    x, y = regression_data(40)
    config = quiet(
        epochs=3, scheduler=SchedulerConfig("StepLR", params={"step_size": 1, "gamma": 0.5})
    )
    trainer = Trainer(
        mlp(), config, DataLoader(TensorDataset(x, y), batch_size=4), loss_fn=nn.MSELoss()
    )
    trainer.fit()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)


def test_epoch_metrics_are_sample_weighted_not_mean_of_batch_means():
    x = torch.arange(10, dtype=torch.float32)[:, None]
    loader = DataLoader(TensorDataset(x, x), batch_size=4)  # batches of 4, 4, 2

    class Zero(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, inp):
            return inp * self.w

    def target_mean(predictions, targets):
        return targets.mean()

    trainer = Trainer(
        Zero(), quiet(epochs=1), loader, loader, loss_fn=nn.MSELoss(), metric_fns={"t": target_mean}
    )
    result = trainer.evaluate(loader)
    assert result["t"] == pytest.approx(4.5)  # mean of batch means would be (1.5 + 5.5 + 8.5) / 3
    assert result["loss"] == pytest.approx(float((x**2).mean()))


def test_metric_pairs_are_token_weighted():
    x = torch.ones(6, 1)
    loader = DataLoader(TensorDataset(x, x), batch_size=3)
    counts = iter([(torch.tensor(1.0), torch.tensor(1.0)), (torch.tensor(0.0), torch.tensor(3.0))])

    def pair_metric(predictions, targets):
        return next(counts)

    trainer = Trainer(
        nn.Linear(1, 1), quiet(), loader, loss_fn=nn.MSELoss(), metric_fns={"acc": pair_metric}
    )
    assert trainer.evaluate(loader)["acc"] == pytest.approx(0.25)


class CountingTrainer(Trainer):
    calls = {"forward": 0, "loss": 0, "metrics": 0}

    def _forward_pass(self, batch):
        self.calls["forward"] += 1
        return self.model(batch["x"])

    def _compute_loss(self, batch, predictions):
        self.calls["loss"] += 1
        return nn.functional.mse_loss(predictions, batch["y"])

    def _compute_metrics(self, batch, predictions):
        self.calls["metrics"] += 1
        return {"abs": (predictions - batch["y"]).abs().mean()}


def test_overridden_hooks_run_in_training_and_evaluation():
    x, y = regression_data(16)
    data = [{"x": x[i : i + 4], "y": y[i : i + 4]} for i in range(0, 16, 4)]
    trainer = CountingTrainer(mlp(), quiet(epochs=2), data, data)
    history = trainer.fit()
    assert CountingTrainer.calls == {"forward": 16, "loss": 16, "metrics": 16}
    assert len(history["val_abs"]) == 2 and len(history["abs"]) == 2


def test_model_compute_loss_is_used_without_loss_fn():
    class SelfLoss(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 1)
            self.used = 0

        def forward(self, x):
            return self.lin(x)

        def compute_loss(self, outputs, targets):
            self.used += 1
            return nn.functional.mse_loss(outputs, targets)

    x, y = regression_data(8)
    model = SelfLoss()
    Trainer(model, quiet(epochs=1), DataLoader(TensorDataset(x, y), batch_size=4)).fit()
    assert model.used == 2


def test_missing_loss_is_a_clear_error():
    x, y = regression_data(8)
    with pytest.raises(ValueError, match="loss_fn"):
        Trainer(
            nn.Linear(6, 1), quiet(epochs=1), DataLoader(TensorDataset(x, y), batch_size=4)
        ).fit()


def test_history_has_both_key_styles_and_validation_frequency():
    x, y = regression_data(16)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    trainer = Trainer(
        mlp(), quiet(epochs=4, validate_every=2), loader, loader, loss_fn=nn.MSELoss()
    )
    history = trainer.train()
    assert len(history["loss"]) == 4 and len(history["val_loss"]) == 2
    assert history["total_epochs"] == 4
    assert history["val_epochs"] == [2, 4]
    assert history["val_metrics"]["loss"] == history["val_loss"] and len(history["train_metrics"]["loss"]) == 4
    assert history["best_metrics"]["loss"] == min(history["val_loss"])


def test_eval_mode_and_inference_mode_during_evaluation():
    seen = []

    class Probe(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(6, 1)

        def forward(self, x):
            seen.append((self.training, torch.is_inference_mode_enabled()))
            return self.lin(x)

    x, y = regression_data(8)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    Trainer(Probe(), quiet(epochs=1), loader, loader, loss_fn=nn.MSELoss()).fit()
    assert seen == [(True, False), (False, True)]


def test_predict_concatenates_outputs():
    x, y = regression_data(10)
    trainer = Trainer(
        mlp(), quiet(), DataLoader(TensorDataset(x, y), batch_size=4), loss_fn=nn.MSELoss()
    )
    out = trainer.predict(DataLoader(TensorDataset(x, y), batch_size=4))
    assert out.shape == (10, 1)
    torch.testing.assert_close(out, trainer.model(x))


def test_max_steps_stops_training():
    x, y = regression_data(40)
    trainer = Trainer(
        mlp(),
        quiet(epochs=10, max_steps=7),
        DataLoader(TensorDataset(x, y), batch_size=4),
        loss_fn=nn.MSELoss(),
    )
    trainer.fit()
    assert trainer.global_step == 7


def test_loss_decreases_on_a_learnable_problem():
    x, y = regression_data(128)
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
    history = Trainer(
        mlp(),
        quiet(epochs=15, optimizer=OptimizerConfig("Adam", lr=1e-2), seed=0),
        loader,
        loss_fn=nn.MSELoss(),
    ).fit()
    assert history["loss"][-1] < 0.2 * history["loss"][0]
    assert all(math.isfinite(v) for v in history["loss"])


def test_a_trainer_without_training_data_only_evaluates_and_builds_no_optimizer():
    loader = DataLoader(TensorDataset(*regression_data()), batch_size=16)
    warmup = SchedulerConfig("warmup_cosine", params={"warmup_steps": 2})
    evaluator = Trainer(mlp(), quiet(scheduler=warmup), val_dataloader=loader, loss_fn=nn.MSELoss())
    assert evaluator.optimizer is None and evaluator.scheduler is None
    trained = Trainer(mlp(), quiet(), loader, loss_fn=nn.MSELoss())
    assert evaluator.evaluate(loader) == trained.evaluate(loader)  # same weights, same numbers
    with pytest.raises(ValueError, match="only evaluates"):
        evaluator.fit()
