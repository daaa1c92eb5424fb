"""Diagnostics: sampled-step statistics against hand-computed values, hook lifetime, logging."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from treadmill import OptimizerConfig, Trainer, TrainingConfig
from treadmill.callbacks import Callback, Diagnostics


class SeqNet(nn.Module):
    """(batch, seq, 4) -> encoder (batch, seq, 8) -> ReLU block -> tanh head -> (batch, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8))
        self.hidden = nn.Sequential(nn.Linear(8, 8), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(8, 1), nn.Tanh())
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(self.encoder(x))).mean(1) * self.scale


def seq_loader(n: int = 32, batch_size: int = 8) -> DataLoader:
    x = torch.randn(n, 5, 4)
    return DataLoader(TensorDataset(x, x.sum((1, 2)).unsqueeze(1).tanh()), batch_size=batch_size)


def config(**kwargs) -> TrainingConfig:
    return TrainingConfig(progress_bar=False, optimizer=OptimizerConfig("AdamW", lr=0.01), **kwargs)


class Probe(Callback):
    """Records, per optimizer step, what Diagnostics should have measured (placed after it)."""

    def __init__(self, model: SeqNet) -> None:
        self.model = model
        self.outputs: dict[str, torch.Tensor] = {}
        self.records: dict[int, dict] = {}
        self._pending: dict = {}
        for name in ("encoder", "hidden.1", "head.1"):
            model.get_submodule(name).register_forward_hook(self._keeper(name))

    def _keeper(self, name):
        def hook(module, args, output):  # returns None: a returned value would replace the output
            self.outputs.setdefault(name, output.detach().clone())

        return hook

    def on_batch_start(self, trainer, batch, batch_idx):
        self.outputs.clear()

    def on_before_optimizer_step(self, trainer):
        self._pending = {
            "grads": {n: p.grad.clone() for n, p in self.model.named_parameters()},
            "before": {n: p.detach().clone() for n, p in self.model.named_parameters()},
            "outputs": dict(self.outputs),
        }

    def on_after_optimizer_step(self, trainer):
        self._pending["after"] = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        self.records[trainer.global_step] = self._pending


def module_tensors(values: dict[str, torch.Tensor], prefix: str) -> torch.Tensor:
    return torch.cat(
        [v.flatten() for n, v in values.items() if n.startswith(prefix + ".") or n == prefix]
    )


def test_sampled_step_stats_match_hand_computed_values():
    model = SeqNet()
    diag = Diagnostics(every_n_steps=3, watch=("encoder",))
    probe = Probe(model)
    Trainer(
        model, config(epochs=2), seq_loader(), loss_fn=nn.MSELoss(), callbacks=[diag, probe]
    ).fit()
    assert [step for step, _ in diag.history] == [3, 6]  # 8 optimizer steps, every third sampled
    for step, stats in diag.history:
        record = probe.records[step]
        for group in ("encoder", "hidden", "head", "scale"):
            grad = module_tensors(record["grads"], group)
            before, after = (
                module_tensors(record["before"], group),
                module_tensors(record["after"], group),
            )
            assert stats[f"grad_norm/{group}"] == pytest.approx(
                float(torch.linalg.vector_norm(grad)), rel=1e-5
            )
            assert stats[f"param_norm/{group}"] == pytest.approx(
                float(torch.linalg.vector_norm(before)), rel=1e-5
            )
            ratio = torch.linalg.vector_norm(after - before) / torch.linalg.vector_norm(before)
            assert stats[f"update_ratio/{group}"] == pytest.approx(float(ratio), rel=1e-4)
        encoded = record["outputs"]["encoder"]  # (batch, seq, features)
        assert stats["act_mean/encoder"] == pytest.approx(float(encoded.mean()), abs=1e-6)
        assert stats["act_std/encoder"] == pytest.approx(float(encoded.std(correction=0)), rel=1e-5)
        pooled = encoded.mean(1)  # (batch, features)
        expected_var = ((pooled - pooled.mean(0)) ** 2).mean(0).mean()
        assert stats["act_cross_sample_var/encoder"] == pytest.approx(float(expected_var), rel=1e-5)
        relu_out, tanh_out = record["outputs"]["hidden.1"], record["outputs"]["head.1"]
        assert stats["zero_frac/hidden.1"] == pytest.approx(float((relu_out == 0).float().mean()))
        assert stats["saturated_frac/head.1"] == pytest.approx(
            float((tanh_out.abs() >= 0.98).float().mean())
        )
    assert diag.latest == diag.history[-1][1] and diag.latest_step == 6


def test_hooks_exist_only_during_the_sampled_forward_pass():
    model = SeqNet()
    seen = []

    class HookCounter(Callback):
        def on_batch_start(self, trainer, batch, batch_idx):
            seen.append(
                (
                    "start",
                    trainer.global_step + 1,
                    len(model.encoder._forward_hooks),
                    len(model.hidden[1]._forward_hooks),
                )
            )

        def on_batch_end(self, trainer, batch, batch_idx, loss):
            seen.append(
                (
                    "end",
                    trainer.global_step,
                    len(model.encoder._forward_hooks),
                    len(model.hidden[1]._forward_hooks),
                )
            )

    diag = Diagnostics(every_n_steps=2, watch=("encoder",))
    Trainer(
        model, config(epochs=1), seq_loader(), loss_fn=nn.MSELoss(), callbacks=[diag, HookCounter()]
    ).fit()
    starts = [(step, enc, relu) for kind, step, enc, relu in seen if kind == "start"]
    assert starts == [(1, 0, 0), (2, 1, 1), (3, 0, 0), (4, 1, 1)]
    assert all(enc == 0 and relu == 0 for kind, _, enc, relu in seen if kind == "end")
    assert not any(m._forward_hooks for m in model.modules())


def test_accumulation_hooks_only_the_first_micro_batch_and_samples_optimizer_steps():
    model = SeqNet()
    calls = []
    model.encoder.register_forward_hook(lambda m, a, out: calls.append(len(m._forward_hooks)))
    diag = Diagnostics(every_n_steps=1, watch=("encoder",))
    cfg = config(epochs=1, gradient_accumulation_steps=2)
    Trainer(model, cfg, seq_loader(), loss_fn=nn.MSELoss(), callbacks=[diag]).fit()
    # 4 micro-batches, 2 optimizer steps: Diagnostics' hook present on micro-batches 1 and 3 only
    assert calls == [2, 1, 2, 1]
    assert [step for step, _ in diag.history] == [1, 2]


def test_diagnostics_reach_the_loggers_through_on_log():
    model = SeqNet()
    logged = []

    class Recorder(Callback):
        def on_log(self, trainer, scalars):
            logged.append((trainer.global_step, dict(scalars)))

    Trainer(
        model,
        config(epochs=1, log_frequency=4),
        seq_loader(),
        loss_fn=nn.MSELoss(),
        callbacks=[Diagnostics(every_n_steps=2), Recorder()],
    ).fit()
    diag_steps = [step for step, scalars in logged if "diag/grad_norm/encoder" in scalars]
    loss_steps = [step for step, scalars in logged if "loss" in scalars]
    assert diag_steps == [2, 4] and loss_steps == [4]


def test_depth_groups_and_watched_submodules():
    model = SeqNet()
    diag = Diagnostics(
        every_n_steps=1, watch=("encoder", "hidden.0"), depth=2, activation_checks=False
    )
    probe = Probe(model)
    Trainer(
        model,
        config(epochs=1, max_steps=1),
        seq_loader(),
        loss_fn=nn.MSELoss(),
        callbacks=[diag, probe],
    ).fit()
    groups = {key.split("/", 1)[1] for key in diag.latest if key.startswith("grad_norm/")}
    assert groups == {"encoder.0", "encoder.1", "hidden.0", "head.0", "scale", "encoder"}
    grad = module_tensors(probe.records[1]["grads"], "encoder")
    assert diag.latest["grad_norm/encoder"] == pytest.approx(
        float(torch.linalg.vector_norm(grad)), rel=1e-5
    )
    assert "act_mean/hidden.0" in diag.latest and not any(
        k.startswith("zero_frac/") for k in diag.latest
    )


def test_watch_names_are_checked():
    mlp = nn.Sequential(nn.Linear(4, 1))
    loader = DataLoader(TensorDataset(torch.randn(8, 4), torch.randn(8, 1)), batch_size=4)
    default = Diagnostics(every_n_steps=1)  # no `encoder` in this model: skipped silently
    Trainer(mlp, config(epochs=1), loader, loss_fn=nn.MSELoss(), callbacks=[default]).fit()
    assert set(default.latest) == {"grad_norm/0", "param_norm/0", "update_ratio/0"}
    with pytest.raises(ValueError, match="'encodr'.*Top-level modules: 0"):
        Trainer(
            mlp,
            config(epochs=1),
            loader,
            loss_fn=nn.MSELoss(),
            callbacks=[Diagnostics(watch=("encodr",))],
        ).fit()
    with pytest.raises(ValueError, match="every_n_steps"):
        Diagnostics(every_n_steps=0)
    with pytest.raises(ValueError, match="sequence of module names"):
        Diagnostics(watch="encoder")


def test_batch_of_one_reports_no_cross_sample_variance():
    model = SeqNet()
    diag = Diagnostics(every_n_steps=1)
    Trainer(
        model,
        config(epochs=1, max_steps=1),
        seq_loader(4, batch_size=1),
        loss_fn=nn.MSELoss(),
        callbacks=[diag],
    ).fit()
    assert "act_mean/encoder" in diag.latest and "act_cross_sample_var/encoder" not in diag.latest
