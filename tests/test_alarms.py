"""HealthMonitor: each alarm provoked by a model or setting built to trigger it; a healthy run is quiet."""

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from treadmill import OptimizerConfig, Trainer, TrainingConfig
from treadmill.callbacks import ALARM_KINDS, AlarmThresholds, Callback, Diagnostics, HealthMonitor
from treadmill.training.checks import NonFiniteLossError


class Shift(nn.Module):
    """Adds a buffer to its input: lets a test move the encoder's output distribution mid-run."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("amount", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.amount


class Net(nn.Module):
    """encoder (Linear, Tanh, Shift) -> ReLU block -> head."""

    def __init__(self, d_in: int = 8, d: int = 16, n_classes: int = 3) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(d_in, d), nn.Tanh(), Shift())
        self.hidden = nn.Sequential(nn.Linear(d, d), nn.ReLU())
        self.head = nn.Linear(d, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(self.encoder(x)))


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(-1) == y).float().mean()


def task(n: int = 128, batch_size: int = 16, d_in: int = 8):
    """A learnable 3-class problem: the label is the argmax of a fixed linear map."""
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, d_in, generator=generator)
    y = (x @ torch.randn(d_in, 3, generator=generator)).argmax(-1)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size), DataLoader(
        TensorDataset(x[:64], y[:64]), batch_size=64
    )


def run(
    model, callbacks, epochs=8, lr=0.01, optimizer="AdamW", loader=None, loss_fn=None, **config
):
    train, val = task() if loader is None else (loader, None)
    cfg = TrainingConfig(
        epochs=epochs,
        progress_bar=False,
        log_frequency=1,
        optimizer=OptimizerConfig(optimizer, lr=lr),
        **config,
    )
    trainer = Trainer(
        model,
        cfg,
        train,
        val,
        loss_fn=loss_fn or nn.CrossEntropyLoss(),
        metric_fns={"accuracy": accuracy},
        callbacks=callbacks,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        history = trainer.fit()
    return trainer, history


def monitored(model, on_alarm="warn", every=1, watch=("encoder",), **kwargs):
    monitor = HealthMonitor(on_alarm=on_alarm, **kwargs)
    return monitor, [Diagnostics(every_n_steps=every, watch=watch), monitor]


class AtStep(Callback):
    """Calls fn(trainer) once when the given optimizer step is about to run."""

    def __init__(self, step, fn):
        self.step, self.fn = step, fn

    def on_batch_start(self, trainer, batch, batch_idx):
        if trainer.global_step + 1 == self.step:
            self.fn(trainer)


def only(monitor, kind):
    found = [a for a in monitor.alarms if a.kind == kind]
    assert found, f"no {kind} alarm; got {[a.line() for a in monitor.alarms]}"
    return found


def test_healthy_run_raises_no_alarm(capsys):
    model = Net()
    monitor, callbacks = monitored(model)
    trainer, history = run(model, callbacks, epochs=8)
    assert history["val_accuracy"][-1] > 0.8  # it did learn
    assert monitor.alarms == [], [a.line() for a in monitor.alarms]
    assert "Health: no alarms." in capsys.readouterr().out


def test_non_finite_gradient_names_the_module():
    class SqrtOfSquare(nn.Module):
        """d/dw sqrt(w^2) at w = 0 is 0/0: a NaN gradient while the output (and loss) stay finite."""

        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(16))

        def forward(self, x):
            return x + torch.sqrt(self.w**2)

    model = Net()
    model.hidden = nn.Sequential(nn.Linear(16, 16), SqrtOfSquare(), nn.ReLU())
    monitor, callbacks = monitored(model, on_alarm="stop")
    trainer, _ = run(model, callbacks, epochs=3)
    (alarm,) = only(monitor, "non_finite_grad")
    assert alarm.subject == "'hidden'" and alarm.step == 1 and "nan" in alarm.evidence
    assert trainer.global_step == 1  # "stop" ended the run after the first step


def test_huge_learning_rate_gives_non_finite_gradient_alarm():
    monitor, callbacks = monitored(Net(), on_alarm={"non_finite_grad": "stop"})
    trainer, _ = run(Net(), callbacks, epochs=5, lr=1e12, optimizer="SGD", detect_non_finite=False)
    (alarm,) = only(monitor, "non_finite_grad")
    assert (
        alarm.subject in {"'encoder'", "'hidden'", "'head'"} and "also non-finite" in alarm.evidence
    )
    assert trainer.global_step == alarm.step < 40


def test_non_finite_loss_error_is_recorded_and_summarised(capsys):
    monitor, callbacks = monitored(Net())
    with pytest.raises(NonFiniteLossError):
        run(Net(), callbacks, epochs=5, lr=1e12, optimizer="SGD")
    assert only(monitor, "non_finite_loss")[0].evidence.startswith("Loss became")
    assert "non_finite_loss" in capsys.readouterr().out


def test_loss_spike():
    model = Net()
    factor = [1.0]

    def spiky_loss(logits, y):
        return nn.functional.cross_entropy(logits, y) * factor[0]

    monitor, callbacks = monitored(model)
    spike = [
        AtStep(25, lambda t: factor.__setitem__(0, 20.0)),
        AtStep(27, lambda t: factor.__setitem__(0, 1.0)),
    ]
    run(model, [*spike, *callbacks], epochs=4, loss_fn=spiky_loss)  # steps 25 and 26 spike
    (alarm,) = only(monitor, "loss_spike")
    assert (alarm.step, alarm.last_step, alarm.count) == (25, 26, 2)
    assert "median" in alarm.evidence


def test_loss_spike_with_negative_losses():
    # Minimum risk training logs minus the expected reward: healthy losses sit below zero.
    model = Net()
    offset = [-3.0]

    def negative_loss(logits, y):
        return nn.functional.cross_entropy(logits, y) + offset[0]

    monitor, callbacks = monitored(model)
    run(model, callbacks, epochs=4, loss_fn=negative_loss)
    assert [
        a.line() for a in monitor.alarms if a.kind == "loss_spike"
    ] == []  # the ratio test alarmed at once

    model = Net()
    monitor, callbacks = monitored(model)
    spike = [
        AtStep(25, lambda t: offset.__setitem__(0, 10.0)),
        AtStep(26, lambda t: offset.__setitem__(0, -3.0)),
    ]
    run(model, [*spike, *callbacks], epochs=4, loss_fn=negative_loss)
    (alarm,) = only(monitor, "loss_spike")
    assert (alarm.step, alarm.count) == (25, 1)
    assert "|median|" in alarm.evidence


class ScriptedVal(Callback):
    """Replaces val_accuracy with scripted values (before HealthMonitor sees the epoch)."""

    def __init__(self, values):
        self.values = values

    def on_epoch_end(self, trainer, epoch, metrics):
        metrics["val_accuracy"] = self.values[epoch]


def test_validation_collapse_from_its_best_and_stop():
    monitor = HealthMonitor(on_alarm={"val_collapse": "stop"})
    _, history = run(
        Net(), [ScriptedVal([0.3, 0.5, 0.7, 0.45, 0.0, 0.0, 0.0, 0.0]), monitor], epochs=8
    )
    (alarm,) = only(monitor, "val_collapse")
    assert (
        alarm.subject == "val_accuracy" and "0.7" in alarm.evidence and "epoch 5" in alarm.evidence
    )
    assert (
        history["total_epochs"] == 5
    )  # 0.45 is still >= 50% of 0.7; 0.0 is not, and stops the run


def test_dip_above_the_collapse_fraction_is_quiet():
    monitor = HealthMonitor()
    run(Net(), [ScriptedVal([0.3, 0.7, 0.36, 0.7]), monitor], epochs=4)
    assert monitor.alarms == []


def test_exploding_gradient_in_one_module():
    model = Net()
    factor = [1.0]
    model.hidden[0].weight.register_hook(lambda grad: grad * factor[0])
    monitor, callbacks = monitored(model)
    run(model, [AtStep(30, lambda t: factor.__setitem__(0, 1e5)), *callbacks], epochs=5)
    alarm = only(monitor, "exploding_grad")[0]
    assert alarm.subject == "'hidden'" and alarm.step == 30
    assert {a.subject for a in monitor.alarms if a.kind == "exploding_grad"} == {"'hidden'"}


def test_vanishing_gradient_in_one_module():
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(8, 8)

        def forward(self, x):
            return x + 1e-9 * self.lin(x)  # its parameters get gradients 1e-9 times the others'

    model = Net()
    model.encoder = nn.Sequential(Tiny(), nn.Linear(8, 16), nn.Tanh())
    monitor = HealthMonitor(thresholds=AlarmThresholds(vanish_ratio=1e-6))
    run(model, [Diagnostics(every_n_steps=5, watch=(), depth=2), monitor], epochs=1)
    (alarm,) = only(monitor, "vanishing_grad")
    assert alarm.subject == "'encoder.0'" and alarm.step == 5


def test_dead_relu_activations():
    model = Net()
    with torch.no_grad():
        model.hidden[0].bias.fill_(-100.0)  # pre-activations far below zero: every ReLU output is 0
    monitor, callbacks = monitored(model, every=4)
    run(model, callbacks, epochs=1)
    alarm = only(monitor, "dead_activation")[0]
    assert alarm.subject == "'hidden.1'" and alarm.step == 4 and "100.0%" in alarm.evidence


def test_saturated_tanh_activations():
    model = Net()
    with torch.no_grad():
        model.encoder[0].weight.mul_(200.0)
    monitor, callbacks = monitored(model, every=4, on_alarm={"saturated_activation": "stop"})
    trainer, _ = run(model, callbacks, epochs=2)
    alarm = only(monitor, "saturated_activation")[0]
    assert alarm.subject == "'encoder.1'" and trainer.global_step == 4


def test_drift_of_a_watched_module_output():
    model = Net()
    monitor, callbacks = monitored(model)

    def shift(trainer):
        model.encoder[2].amount.fill_(3.0)

    run(model, [AtStep(30, shift), *callbacks], epochs=5)
    alarms = only(monitor, "drift")
    assert {a.subject for a in alarms} == {"'encoder'"} and alarms[0].step == 30
    assert "output mean" in alarms[0].evidence


def test_representation_collapse_when_every_sample_maps_to_the_same_output():
    class ConstantEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.code = nn.Parameter(torch.randn(16))

        def forward(self, x):
            return self.code.expand(x.shape[0], -1)  # ignores its input

    model = Net()
    model.encoder = ConstantEncoder()
    monitor, callbacks = monitored(model, every=2)
    run(model, callbacks, epochs=1)
    alarm = only(monitor, "representation_collapse")[0]
    assert alarm.subject == "'encoder'" and alarm.step == 2


@pytest.mark.filterwarnings("ignore:.*vanishing_grad")
def test_warning_line_and_summary_table(capsys):
    model = Net()
    with torch.no_grad():
        model.hidden[0].bias.fill_(-100.0)
    monitor, callbacks = monitored(model, every=4)
    train, val = task()
    cfg = TrainingConfig(epochs=1, progress_bar=False, optimizer=OptimizerConfig(lr=0.01))
    with pytest.warns(
        UserWarning,
        match=r"\[health\] step 4: dead_activation in 'hidden.1': 100.0% of its outputs",
    ):
        Trainer(model, cfg, train, val, loss_fn=nn.CrossEntropyLoss(), callbacks=callbacks).fit()
    out = capsys.readouterr().out
    # the dead ReLU also starves every module before it of gradient
    assert "Health: 3 alarm(s)" in out and "dead_activation  'hidden.1'" in out
    assert monitor.kinds() == {"dead_activation", "vanishing_grad"}
    assert monitor.alarms[0].count == 2  # steps 4 and 8, warned once


def test_on_alarm_is_validated():
    with pytest.raises(ValueError, match="'warn' or 'stop'"):
        HealthMonitor(on_alarm="raise")
    with pytest.raises(ValueError, match="unknown alarm kind 'spike'"):
        HealthMonitor(on_alarm={"spike": "stop"})
    with pytest.raises(ValueError, match="AlarmThresholds.dead_fraction"):
        AlarmThresholds(dead_fraction=1.5)
    actions = HealthMonitor(on_alarm={"drift": "stop"}).actions
    assert actions["drift"] == "stop" and all(
        actions[k] == "warn" for k in ALARM_KINDS if k != "drift"
    )


def test_alarms_survive_a_checkpoint_round_trip():
    monitor = HealthMonitor()
    run(Net(), [ScriptedVal([0.8, 0.1]), monitor], epochs=2)
    restored = HealthMonitor()
    restored.load_state_dict(monitor.state_dict())
    assert [a.line() for a in restored.alarms] == [
        a.line() for a in monitor.alarms
    ] and restored.kinds() == {"val_collapse"}
