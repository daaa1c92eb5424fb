"""Training-health alarms: one line with the step and the evidence, and a summary at the end.

`HealthMonitor` reads what the trainer logs (`loss`, `grad_norm` at `on_log`; epoch metrics at
`on_epoch_end`) and the `diag/...` scalars a `Diagnostics` callback sends on its sampled steps.
Kinds, and what trips them (thresholds in `AlarmThresholds`):

    non_finite_loss        the loss is NaN/inf (also recorded when the trainer raises for it)
    non_finite_grad        a module's gradient norm is NaN/inf (names every such module)
    loss_spike             loss - median > (loss_spike_factor - 1) x |median| of the last `window` logged
                           losses (loss > factor x median when the median is positive)
    val_collapse           a val_ metric falls below collapse_fraction x its best (max-mode metrics)
    exploding_grad         a module's grad norm > explode_factor x its own recent median (or > explode_threshold)
    vanishing_grad         a module's grad norm < vanish_ratio x the largest module's (or < vanish_threshold)
    dead_activation        >= dead_fraction of a ReLU module's outputs are exactly zero
    saturated_activation   >= saturated_fraction of a Tanh/Sigmoid module's outputs sit at the asymptotes
    drift                  a watched module's output mean/std moves > drift_sigma spreads of its own history
    representation_collapse  the variance across samples of a watched output is ~0 relative to its variance

Each (kind, subject) is warned once; repeats are counted for the summary. `on_alarm` is "warn" or
"stop" for every kind, or a dict kind -> action (missing kinds warn). "stop" sets
`trainer.should_stop = True`: the run ends after the current batch (or epoch), with the usual
`on_train_end` (checkpoints, loggers, this summary) instead of an exception.

Long because: the ten kinds share one warn-once/stop/summary bookkeeping and one state to resume
from, and each check sits beside the others it is tuned against; this docstring's table of kinds
is a tenth of the file.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from treadmill.callbacks.base import Callback, infer_mode
from treadmill.callbacks.diagnostics import Diagnostics

if TYPE_CHECKING:
    from treadmill.trainer import Trainer

__all__ = ["ALARM_KINDS", "Alarm", "AlarmThresholds", "HealthMonitor"]

ALARM_KINDS = (
    "non_finite_loss",
    "non_finite_grad",
    "loss_spike",
    "val_collapse",
    "exploding_grad",
    "vanishing_grad",
    "dead_activation",
    "saturated_activation",
    "drift",
    "representation_collapse",
)
_ACTIONS = ("warn", "stop")
_NEEDS_DIAGNOSTICS = ALARM_KINDS[4:]


@dataclass
class AlarmThresholds:
    """When each alarm fires; see the module docstring for what each number means."""

    loss_spike_factor: float = 3.0
    window: int = (
        20  # recent samples (logged losses, grad norms, output stats) relative alarms compare with
    )
    min_history: int = 5
    collapse_fraction: float = 0.5
    collapse_metrics: tuple[str, ...] | None = None  # None: every val_ metric that is maximised
    explode_factor: float = 50.0
    explode_threshold: float | None = None
    vanish_ratio: float = 1e-6
    vanish_threshold: float | None = None
    dead_fraction: float = 0.99
    saturated_fraction: float = 0.9
    drift_sigma: float = 6.0
    drift_min_scale: float = (
        0.05  # moves smaller than this fraction of the output's std never count
    )
    cross_sample_ratio: float = 1e-2

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "collapse_metrics" or value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"AlarmThresholds.{f.name} must be a number > 0, got {value!r}.")
        for name in ("collapse_fraction", "dead_fraction", "saturated_fraction"):
            if getattr(self, name) > 1:
                raise ValueError(
                    f"AlarmThresholds.{name} is a fraction in (0, 1], got {getattr(self, name)!r}."
                )


@dataclass
class Alarm:
    """One alarm: what, where, when (first and last step), how often, and the first evidence."""

    kind: str
    subject: str
    step: int
    evidence: str
    action: str = "warn"
    count: int = 1
    last_step: int = 0

    def line(self) -> str:
        """The one-line message: step, kind, subject and evidence."""
        return f"[health] step {self.step}: {self.kind} in {self.subject}: {self.evidence}"


class HealthMonitor(Callback):
    """Raise named, evidenced alarms about a run's health; summarise them when it ends."""

    def __init__(
        self,
        on_alarm: str | Mapping[str, str] = "warn",
        thresholds: AlarmThresholds | None = None,
        print_summary: bool = True,
    ) -> None:
        self.actions = self._resolve_actions(on_alarm)
        self.thresholds = thresholds or AlarmThresholds()
        self.print_summary = print_summary
        self.alarms: list[Alarm] = []
        self._index: dict[tuple[str, str], Alarm] = {}
        self._losses: deque[float] = deque(maxlen=self.thresholds.window)
        self._grad_history: dict[str, deque[float]] = {}
        self._act_history: dict[tuple[str, str], deque[float]] = {}
        self._best: dict[str, float] = {}

    @staticmethod
    def _resolve_actions(on_alarm: str | Mapping[str, str]) -> dict[str, str]:
        if isinstance(on_alarm, str):
            if on_alarm not in _ACTIONS:
                raise ValueError(
                    f"HealthMonitor(on_alarm={on_alarm!r}) must be 'warn' or 'stop' (or a dict kind -> action)."
                )
            return dict.fromkeys(ALARM_KINDS, on_alarm)
        actions = dict.fromkeys(ALARM_KINDS, "warn")
        for kind, action in on_alarm.items():
            if kind not in ALARM_KINDS:
                raise ValueError(
                    f"HealthMonitor(on_alarm=...) has unknown alarm kind {kind!r}; kinds: {', '.join(ALARM_KINDS)}."
                )
            if action not in _ACTIONS:
                raise ValueError(
                    f"HealthMonitor(on_alarm[{kind!r}]={action!r}) must be 'warn' or 'stop'."
                )
            actions[kind] = action
        return actions

    # ------------------------------------------------------------------ raising alarms

    def raise_alarm(self, trainer: Trainer, kind: str, subject: str, evidence: str) -> None:
        """Record an alarm; warn (first time for this kind and subject) and stop if asked."""
        step = trainer.global_step
        existing = self._index.get((kind, subject))
        if existing is not None:
            existing.count += 1
            existing.last_step = step
        else:
            alarm = Alarm(kind, subject, step, evidence, self.actions[kind], last_step=step)
            self._index[(kind, subject)] = alarm
            self.alarms.append(alarm)
            trainer.warn(
                alarm.line()
                + (" Stopping the run (on_alarm='stop')." if alarm.action == "stop" else "")
            )
        if self.actions[kind] == "stop":
            trainer.should_stop = True

    def kinds(self) -> set[str]:
        """The kinds of alarm raised so far."""
        return {alarm.kind for alarm in self.alarms}

    # ------------------------------------------------------------------ hooks

    def on_train_start(self, trainer: Trainer) -> None:
        if not any(isinstance(cb, Diagnostics) for cb in trainer.callbacks):
            trainer.warn(
                "HealthMonitor without a Diagnostics callback checks only the loss, total gradient norm and "
                f"validation metrics; add Diagnostics(every_n_steps=...) to enable {', '.join(_NEEDS_DIAGNOSTICS)}."
            )

    def on_log(self, trainer: Trainer, scalars: dict[str, float]) -> None:
        if "loss" in scalars:
            self._check_loss(trainer, float(scalars["loss"]))
        if "grad_norm" in scalars and not math.isfinite(scalars["grad_norm"]):
            self.raise_alarm(
                trainer,
                "non_finite_grad",
                "<all parameters>",
                f"total gradient norm is {scalars['grad_norm']}",
            )
        diag: dict[str, dict[str, float]] = {}
        for key, value in scalars.items():
            if key.startswith("diag/"):
                stat, _, module = key[len("diag/") :].partition("/")
                diag.setdefault(stat, {})[module] = float(value)
        if diag:
            self._check_gradients(trainer, diag.get("grad_norm", {}))
            self._check_activations(trainer, diag)

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        wanted = self.thresholds.collapse_metrics
        for name, value in metrics.items():
            chosen = (
                name in wanted
                if wanted is not None
                # a group's metric (val_exact_match/n_demos=3) swings with its few examples: not by default
                else name.startswith("val_") and infer_mode(name) == "max" and "/" not in name
            )
            if chosen and isinstance(value, (int, float)) and math.isfinite(value):
                self._check_collapse(trainer, name, float(value), epoch)

    def on_train_end(self, trainer: Trainer) -> None:
        if self.print_summary:
            trainer.print(self.summary())

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        from treadmill.training.checks import NonFiniteLossError

        if isinstance(exception, NonFiniteLossError):
            self.raise_alarm(
                trainer, "non_finite_loss", "loss", str(exception).split(". ")[0] + "."
            )
        if self.print_summary and self.alarms:
            trainer.print(self.summary())

    # ------------------------------------------------------------------ checks

    def _check_loss(self, trainer: Trainer, loss: float) -> None:
        t = self.thresholds
        if not math.isfinite(loss):
            self.raise_alarm(trainer, "non_finite_loss", "loss", f"logged loss is {loss}")
            return
        if len(self._losses) >= t.min_history:
            median, factor = statistics.median(self._losses), t.loss_spike_factor
            # Measured as a rise above the median in units of |median|, so that losses that are
            # negative by design (minimum risk training's expected reward) do not alarm at every
            # log; for a positive median this is exactly loss > factor x median.
            if loss - median > (factor - 1) * abs(median):
                bound = (
                    f"{factor:g} x median {median:.4g}"
                    if median > 0
                    else f"median {median:.4g} + {factor - 1:g} x |median|"
                )
                self.raise_alarm(
                    trainer,
                    "loss_spike",
                    "loss",
                    f"loss {loss:.4g} > {bound} of the last {len(self._losses)} logged losses",
                )
        self._losses.append(loss)

    def _check_collapse(self, trainer: Trainer, name: str, value: float, epoch: int) -> None:
        t = self.thresholds
        maximise = infer_mode(name) == "max"
        best = self._best.get(name)
        if best is not None:
            collapsed = (
                value < t.collapse_fraction * best
                if maximise
                else value > best / t.collapse_fraction
            )
            if collapsed and best != 0:
                relation = (
                    f"< {t.collapse_fraction:.0%} of"
                    if maximise
                    else f"> {1 / t.collapse_fraction:g} x"
                )
                self.raise_alarm(
                    trainer,
                    "val_collapse",
                    name,
                    f"{name} {value:.4g} at epoch {epoch + 1} is {relation} its best {best:.4g}",
                )
        if best is None or (value > best if maximise else value < best):
            self._best[name] = value

    def _check_gradients(self, trainer: Trainer, norms: dict[str, float]) -> None:
        t = self.thresholds
        bad = [m for m, g in norms.items() if not math.isfinite(g)]
        if bad:
            also = (
                f"; also non-finite: {', '.join(repr(m) for m in bad[1:6])}" if len(bad) > 1 else ""
            )
            self.raise_alarm(
                trainer,
                "non_finite_grad",
                repr(bad[0]),
                f"gradient norm of {bad[0]!r} is {norms[bad[0]]}{also}",
            )
        finite = {m: g for m, g in norms.items() if math.isfinite(g)}
        largest = max(finite.items(), key=lambda item: item[1], default=None)
        for module, g in finite.items():
            history = self._grad_history.setdefault(module, deque(maxlen=t.window))
            if len(history) >= t.min_history and g > t.explode_factor * statistics.median(history):
                self.raise_alarm(
                    trainer,
                    "exploding_grad",
                    repr(module),
                    f"grad norm {g:.4g} > {t.explode_factor:g} x its median {statistics.median(history):.4g} over the last {len(history)} samples",
                )
            elif t.explode_threshold is not None and g > t.explode_threshold:
                self.raise_alarm(
                    trainer,
                    "exploding_grad",
                    repr(module),
                    f"grad norm {g:.4g} > explode_threshold {t.explode_threshold:g}",
                )
            history.append(g)
            if largest is not None and largest[0] != module and g < t.vanish_ratio * largest[1]:
                self.raise_alarm(
                    trainer,
                    "vanishing_grad",
                    repr(module),
                    f"grad norm {g:.3g} < {t.vanish_ratio:g} x the largest module's ({largest[0]!r}: {largest[1]:.3g})",
                )
            elif t.vanish_threshold is not None and g < t.vanish_threshold:
                self.raise_alarm(
                    trainer,
                    "vanishing_grad",
                    repr(module),
                    f"grad norm {g:.3g} < vanish_threshold {t.vanish_threshold:g}",
                )

    def _check_activations(self, trainer: Trainer, diag: dict[str, dict[str, float]]) -> None:
        t = self.thresholds
        for module, frac in diag.get("zero_frac", {}).items():
            if frac >= t.dead_fraction:
                self.raise_alarm(
                    trainer,
                    "dead_activation",
                    repr(module),
                    f"{frac:.1%} of its outputs are exactly zero (dead ReLUs)",
                )
        for module, frac in diag.get("saturated_frac", {}).items():
            if frac >= t.saturated_fraction:
                self.raise_alarm(
                    trainer,
                    "saturated_activation",
                    repr(module),
                    f"{frac:.1%} of its outputs are saturated (within 2% of the asymptotes)",
                )
        stds = diag.get("act_std", {})
        for module, mean in diag.get("act_mean", {}).items():
            if module in stds:
                self._check_drift(trainer, module, mean, stds[module])
        for module, cross in diag.get("act_cross_sample_var", {}).items():
            variance = stds.get(module, 0.0) ** 2
            if math.isfinite(cross) and cross <= t.cross_sample_ratio * variance:
                self.raise_alarm(
                    trainer,
                    "representation_collapse",
                    repr(module),
                    f"variance across samples {cross:.3g} vs output variance {variance:.3g}: every sample maps to (nearly) the same output",
                )

    def _check_drift(self, trainer: Trainer, module: str, mean: float, std: float) -> None:
        t = self.thresholds
        if not (math.isfinite(mean) and math.isfinite(std)):
            return
        std_history = self._act_history.setdefault(("act_std", module), deque(maxlen=t.window))
        scale = statistics.fmean(std_history) if std_history else std
        for stat, value in (("act_mean", mean), ("act_std", std)):
            history = self._act_history.setdefault((stat, module), deque(maxlen=t.window))
            if len(history) >= t.min_history:
                centre, spread = statistics.fmean(history), statistics.pstdev(history)
                tolerance = max(spread, t.drift_min_scale * scale, 1e-12)
                z = abs(value - centre) / tolerance
                if z > t.drift_sigma:
                    self.raise_alarm(
                        trainer,
                        "drift",
                        repr(module),
                        f"output {stat[4:]} {value:.4g} vs {centre:.4g} +- {spread:.2g} over the last {len(history)} samples ({z:.1f} spreads)",
                    )
            history.append(value)

    # ------------------------------------------------------------------ summary and state

    def summary(self) -> str:
        """A table of every alarm (kind, subject, steps, count, first evidence), or a no-alarm line."""
        if not self.alarms:
            return "Health: no alarms."
        header = ("kind", "subject", "first step", "last step", "count", "action")
        rows = [
            (a.kind, a.subject, str(a.step), str(a.last_step), str(a.count), a.action)
            for a in self.alarms
        ]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = [
            f"Health: {len(self.alarms)} alarm(s)",
            "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  evidence",
        ]
        for alarm, row in zip(self.alarms, rows, strict=True):
            lines.append(
                "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True))
                + "  "
                + alarm.evidence
            )
        return "\n".join(lines)

    def state_dict(self) -> dict[str, Any]:
        return {"alarms": [dataclasses.asdict(a) for a in self.alarms], "best": dict(self._best)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.alarms = [Alarm(**a) for a in state.get("alarms", [])]
        self._index = {(a.kind, a.subject): a for a in self.alarms}
        self._best = dict(state.get("best", {}))
