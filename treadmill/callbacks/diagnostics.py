"""Training diagnostics sampled every N optimizer steps: gradients, weights, updates, activations.

On a sampled step (and only then) `Diagnostics` measures, per module group:

    grad_norm/<m>      ||g||  of the group's gradients (unscaled, accumulation-averaged, before clipping)
    param_norm/<m>     ||p||  of its trainable parameters before the step
    update_ratio/<m>   ||p_after - p_before|| / ||p_before||  (the step's relative size)

and, from forward hooks attached just before the sampled step's first forward pass and removed
right after it, for each watched module (e.g. "encoder")::

    act_mean/<m>, act_std/<m>       over every element of the module's output
    act_cross_sample_var/<m>        variance ACROSS SAMPLES of the output pooled over positions,
                                    averaged over features (seed 004's encoder_cross_sample_var)

and for every ReLU-like / tanh / sigmoid module: `zero_frac/<m>` (exact zeros: dead units) and
`saturated_frac/<m>` (outputs within 2% of the asymptotes). Non-sampled steps cost one integer
test per hook call. Values are gathered with a single host sync per sampled step, kept in
`latest` (keys as above) and sent to the loggers via `trainer.log_scalars` under "diag/".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from treadmill.callbacks.base import Callback
from treadmill.checkpoint import unwrap_model
from treadmill.utils import iter_tensors

if TYPE_CHECKING:
    from treadmill.trainer import Trainer

__all__ = ["Diagnostics", "RELU_LIKE", "SATURATING"]

RELU_LIKE: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)
SATURATING: tuple[type[nn.Module], ...] = (nn.Tanh, nn.Sigmoid)
# An output counts as saturated within this distance of an asymptote, in units of the output range.
_SATURATION_MARGIN = 0.01
_DEFAULT_WATCH = ("encoder",)


def _group_name(param_name: str, depth: int) -> str:
    """The module group of a parameter: its first `depth` module-path components."""
    parts = param_name.split(".")
    module_parts = parts[:-1]
    return ".".join(module_parts[:depth]) if module_parts else parts[-1]


def _first_float_tensor(output: Any) -> torch.Tensor | None:
    for _, tensor in iter_tensors(output):
        if tensor.is_floating_point():
            return tensor
    return None


class Diagnostics(Callback):
    """Per-module gradient / parameter / update norms and activation statistics on sampled steps.

    `every_n_steps`: sample the optimizer steps whose 1-based number is a multiple of it (the
    steps the trainer logs when it equals `log_frequency`). `watch`: module paths (as in
    `model.named_modules()`) whose output statistics are recorded; the default ("encoder",) is
    skipped silently when the model has no `encoder`, an explicit name that matches nothing is an
    error. `depth`: parameters are grouped by their first `depth` module-path components (1: the
    top-level children); watched modules get a group too. `activation_checks`: also hook every
    ReLU/ReLU6 (dead units) and Tanh/Sigmoid (saturation) module on sampled steps.
    """

    def __init__(
        self,
        every_n_steps: int = 100,
        watch: Sequence[str] = _DEFAULT_WATCH,
        depth: int = 1,
        activation_checks: bool = True,
        log: bool = True,
    ) -> None:
        if (
            isinstance(every_n_steps, bool)
            or not isinstance(every_n_steps, int)
            or every_n_steps < 1
        ):
            raise ValueError(
                f"Diagnostics(every_n_steps={every_n_steps!r}) must be an integer >= 1."
            )
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(
                f"Diagnostics(depth={depth!r}) must be an integer >= 1 (1 = top-level modules)."
            )
        if isinstance(watch, str):
            raise ValueError(
                f"Diagnostics(watch={watch!r}) must be a sequence of module names, e.g. ({watch!r},)."
            )
        self.every_n_steps = every_n_steps
        self._explicit_watch = watch is not _DEFAULT_WATCH
        self.watch = tuple(watch)
        self.depth = depth
        self.activation_checks = activation_checks
        self.log = log
        self.latest: dict[str, float] = {}
        self.latest_step: int | None = None
        self.history: list[tuple[int, dict[str, float]]] = []
        self._params: list[nn.Parameter] = []
        self._group_names: list[str] = []
        self._group_indices: list[list[int]] = []
        self._grads_present: list[bool] = []
        self._index_tensors: list[torch.Tensor] = []  # per group: indices into _params
        self._hooked: list[tuple[str, nn.Module]] = []
        self._handles: list[Any] = []
        self._acts: dict[str, list[torch.Tensor]] = {}
        self._grad_sq: torch.Tensor | None = None
        self._before: list[torch.Tensor] | None = None

    # ------------------------------------------------------------------ set-up

    def on_train_start(self, trainer: Trainer) -> None:
        model = unwrap_model(trainer.model)
        modules = dict(model.named_modules())
        missing = [name for name in self.watch if name not in modules]
        if missing and self._explicit_watch:
            children = ", ".join(name for name, _ in model.named_children())
            raise ValueError(
                f"Diagnostics(watch=...) names {missing}, which the model does not have. "
                f"Top-level modules: {children}; deeper ones use dotted paths as in model.named_modules()."
            )
        self.watch = tuple(name for name in self.watch if name in modules)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self._params = [p for _, p in named]
        groups: dict[str, list[int]] = {}
        for index, (name, _) in enumerate(named):
            groups.setdefault(_group_name(name, self.depth), []).append(index)
        for watched in self.watch:
            inside = [i for i, (n, _) in enumerate(named) if n.startswith(watched + ".")]
            if inside and watched not in groups:
                groups[watched] = inside
        self._group_names = list(groups)
        self._group_indices = list(groups.values())
        device = self._params[0].device if self._params else torch.device("cpu")
        self._index_tensors = [torch.tensor(indices, device=device) for indices in groups.values()]
        hooked = [(name, modules[name]) for name in self.watch]
        if self.activation_checks:
            hooked += [
                (n, m)
                for n, m in model.named_modules()
                if isinstance(m, RELU_LIKE + SATURATING) and n not in self.watch
            ]
        self._hooked = hooked

    def is_sampled(self, step: int) -> bool:
        """Whether the optimizer step with this 1-based number is sampled."""
        return step % self.every_n_steps == 0

    # ------------------------------------------------------------------ forward hooks

    def on_batch_start(self, trainer: Trainer, batch: Any, batch_idx: int) -> None:
        # Hooks exist only during the first forward pass of a sampled step (first micro-batch).
        if self._handles or self._acts or not self.is_sampled(trainer.global_step + 1):
            return
        self._handles = [
            module.register_forward_hook(self._make_hook(name, module))
            for name, module in self._hooked
        ]

    def on_batch_end(
        self, trainer: Trainer, batch: Any, batch_idx: int, loss: torch.Tensor
    ) -> None:
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _make_hook(self, name: str, module: nn.Module) -> Callable[..., None]:
        watched = name in self.watch

        def hook(_module: nn.Module, _args: Any, output: Any) -> None:
            tensor = _first_float_tensor(output)
            if tensor is None:
                return
            with torch.no_grad():
                stats = (
                    self._watched_stats(tensor)
                    if watched
                    else self._activation_stats(module, tensor)
                )
            if stats is not None:
                self._acts.setdefault(name, []).append(stats)

        return hook

    @staticmethod
    def _watched_stats(output: torch.Tensor) -> torch.Tensor:
        """[mean, std, cross-sample variance] of a (batch, ..., features) output; NaN variance for batch < 2."""
        x = output.detach().float()
        std, mean = torch.std_mean(x, correction=0)
        if x.ndim >= 2 and x.shape[0] >= 2:
            pooled = x.reshape(x.shape[0], -1, x.shape[-1]).mean(1)  # (batch, features)
            cross = pooled.var(dim=0, correction=0).mean()
        else:
            cross = torch.full_like(mean, float("nan"))
        return torch.stack([mean, std, cross])

    @staticmethod
    def _activation_stats(module: nn.Module, output: torch.Tensor) -> torch.Tensor | None:
        """[count, numel] of dead (exact zero) or saturated outputs of an activation module."""
        x = output.detach()
        if isinstance(module, RELU_LIKE):
            count = (x == 0).sum()
        elif isinstance(module, nn.Tanh):
            count = (x.abs() >= 1 - 2 * _SATURATION_MARGIN).sum()
        else:  # sigmoid: (0, 1)
            count = ((x <= _SATURATION_MARGIN) | (x >= 1 - _SATURATION_MARGIN)).sum()
        return torch.stack([count.float(), torch.tensor(float(x.numel()), device=x.device)])

    # ------------------------------------------------------------------ gradients and updates

    def on_before_optimizer_step(self, trainer: Trainer) -> None:
        if not self.is_sampled(trainer.global_step + 1) or not self._params:
            return
        self._remove_hooks()  # a forward pass that never reached on_batch_end must not keep them
        zero = self._params[0].new_zeros((), dtype=torch.float32)
        squares = [
            torch.linalg.vector_norm(p.grad, dtype=torch.float32) ** 2
            if p.grad is not None
            else zero
            for p in self._params
        ]
        self._grad_sq = torch.stack(squares)
        self._grads_present = [
            any(self._params[i].grad is not None for i in group) for group in self._group_indices
        ]
        self._before = [p.detach().clone() for p in self._params]

    def on_after_optimizer_step(self, trainer: Trainer) -> None:
        if self._before is None or self._grad_sq is None:
            self._acts.clear()
            return
        param_sq = torch.stack(
            [torch.linalg.vector_norm(b, dtype=torch.float32) ** 2 for b in self._before]
        )
        update_sq = torch.stack(
            [
                torch.linalg.vector_norm(p.detach() - b, dtype=torch.float32) ** 2
                for p, b in zip(self._params, self._before, strict=True)
            ]
        )
        squares = torch.stack([self._grad_sq, param_sq, update_sq])  # (3, n_params)
        # Summed by index, not by a 0/1 matmul: NaN * 0 would smear one module's NaN over every group.
        norms = torch.stack(
            [squares[:, index].sum(1) for index in self._index_tensors], dim=1
        ).sqrt()  # (3, n_groups)
        act_names = list(self._acts)
        act_values = [
            torch.stack(self._acts[name]).sum(0) if name not in self.watch else self._acts[name][0]
            for name in act_names
        ]
        flat = torch.cat([norms.flatten(), *[v.flatten().to(norms.device) for v in act_values]])
        values = flat.tolist()  # the one host sync of a sampled step
        self._before, self._grad_sq = None, None
        self._acts.clear()
        self.latest = self._assemble(values, act_names)
        self.latest_step = trainer.global_step
        self.history.append((trainer.global_step, dict(self.latest)))
        if self.log:
            trainer.log_scalars({f"diag/{key}": value for key, value in self.latest.items()})

    def _assemble(self, values: list[float], act_names: list[str]) -> dict[str, float]:
        """Name the flat values: group norms first, then each hooked module's statistics."""
        n = len(self._group_names)
        grads, params, updates = values[:n], values[n : 2 * n], values[2 * n : 3 * n]
        stats: dict[str, float] = {}
        for i, group in enumerate(self._group_names):
            if self._grads_present[i]:
                stats[f"grad_norm/{group}"] = grads[i]
            stats[f"param_norm/{group}"] = params[i]
            stats[f"update_ratio/{group}"] = (
                updates[i] / params[i] if params[i] > 0 else float("nan")
            )
        offset = 3 * n
        modules = dict(self._hooked)
        for name in act_names:
            if name in self.watch:
                mean, std, cross = values[offset : offset + 3]
                offset += 3
                stats[f"act_mean/{name}"], stats[f"act_std/{name}"] = mean, std
                if cross == cross:  # not NaN: the batch had at least two samples
                    stats[f"act_cross_sample_var/{name}"] = cross
            else:
                count, numel = values[offset : offset + 2]
                offset += 2
                kind = "zero_frac" if isinstance(modules[name], RELU_LIKE) else "saturated_frac"
                stats[f"{kind}/{name}"] = count / max(numel, 1.0)
        return stats

    # ------------------------------------------------------------------ clean-up

    def on_train_end(self, trainer: Trainer) -> None:
        self._remove_hooks()
        self._acts.clear()
        self._before = None

    def on_exception(self, trainer: Trainer, exception: BaseException) -> None:
        self.on_train_end(trainer)
