"""LoRA through `peft`, on any nn.Module: our own models and Hugging Face ones behind treadmill.hf.

    settings = LoraSettings(r=8, alpha=16, dropout=0.05, target_modules=("q_proj", "v_proj"))
    apply_lora(model, settings)      # in place: adapters injected, every other weight frozen
    model.state_dict()               # the adapters only (what checkpoints hold)
    merged = merge_lora(model)       # a copy with B @ A * alpha / r added into the base weights

The model keeps its class and protocol methods (peft.inject_adapter_in_model, not a PeftModel
wrapper), so Trainer, generate() and the command line use it unchanged. Its state_dict holds the
adapter weights only; load_state_dict takes such a dict and keeps the base weights it has.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from treadmill.hf._extra import require
from treadmill.validation import ConfigError, check_keys

__all__ = ["LoraSettings", "apply_lora", "merge_lora", "has_lora", "parameter_counts", "adaptable_module_names"]

# Treadmill's own attention reads the cross-attention in_proj's weight directly (queries from one
# slice, keys/values from the other), which a LoRA wrapper would not see: those are never adapted.
_READS_WEIGHT_DIRECTLY = ("cross_attn.in_proj",)
_ADAPTABLE = ("Linear", "Embedding", "Conv1D", "Conv1d", "Conv2d")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA's rank `r`, scale `alpha` (the update is B @ A * alpha / r), dropout and target modules."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = field(default=())
    # modules trained in full beside the adapters (peft's modules_to_save): new-vocabulary embeddings
    trainable: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.r, bool) or not isinstance(self.r, int) or self.r < 1:
            raise ConfigError(f"model.lora.r={self.r!r} must be an int >= 1 (the adapters' rank)", field="r")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ConfigError(f"model.lora.alpha={self.alpha!r} must be > 0", field="alpha")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.lora.dropout={self.dropout!r} must be in [0, 1)", field="dropout")
        if isinstance(self.target_modules, str) or not all(isinstance(t, str) for t in self.target_modules):
            raise ConfigError(
                f"model.lora.target_modules={self.target_modules!r} must be a list of module names, "
                "e.g. [q_proj, v_proj]", field="target_modules"
            )
        if isinstance(self.trainable, str) or not all(isinstance(t, str) for t in self.trainable):
            raise ConfigError(f"model.lora.trainable={self.trainable!r} must be a list of module names trained "
                              "in full, e.g. [tgt_embedding]", field="trainable")
        if not self.target_modules:
            raise ConfigError(
                "model.lora.target_modules is empty: name the modules to adapt, e.g. [q_proj, v_proj] "
                "(BART, Llama), [c_attn] (GPT-2), [q, v] (T5), [in_proj, out_proj] (Treadmill's models)",
                field="target_modules",
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoraSettings:
        """From a run config's `model.lora` mapping; unknown keys raise ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"model.lora must be a mapping {{r, alpha, dropout, target_modules}}, got {data!r}")
        check_keys("model.lora", data, ("r", "alpha", "dropout", "target_modules", "trainable"))
        values = dict(data)
        for key in ("target_modules", "trainable"):
            if key in values and not isinstance(values[key], str):
                values[key] = tuple(values[key])
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """The mapping from_dict reads."""
        return {"r": self.r, "alpha": self.alpha, "dropout": self.dropout, "target_modules": list(self.target_modules),
                **({"trainable": list(self.trainable)} if self.trainable else {})}


def adaptable_module_names(model: nn.Module) -> list[str]:
    """The distinct short names of the modules LoRA can adapt (Linear, Embedding, Conv), sorted."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if name and type(module).__name__ in _ADAPTABLE})


def _targets(model: nn.Module, wanted: Sequence[str]) -> list[str]:
    """Full names of the modules `wanted` (short or dotted names) selects; refuse names that match none."""
    names = [name for name, module in model.named_modules() if name and type(module).__name__ in _ADAPTABLE]

    def matches(name: str, target: str) -> bool:
        return name == target or name.endswith("." + target)

    unmatched = [t for t in wanted if not any(matches(n, t) for n in names)]
    if unmatched:
        raise ConfigError(
            f"model.lora.target_modules {unmatched} match no module of {type(model).__name__}; "
            f"its adaptable modules are named: {', '.join(adaptable_module_names(model))}",
            field="target_modules",
        )
    return [n for n in names if any(matches(n, t) for t in wanted) and not n.endswith(_READS_WEIGHT_DIRECTLY)]


def apply_lora(model: nn.Module, settings: LoraSettings | None = None, trainable: Sequence[str] = (),
               **options: Any) -> nn.Module:
    """Inject LoRA adapters into `model` in place and freeze everything else; returns the model.

    `options` are LoraSettings fields (r, alpha, dropout, target_modules) when `settings` is None.
    Parameters whose names start with one of `trainable` (a new classification head: "head.") stay
    trainable and are saved with the adapters. The model's state_dict then holds those only.
    """
    if settings is None:
        settings = LoraSettings.from_dict(options)
    peft = require("peft", "LoRA (model.lora)")
    if has_lora(model):
        raise ConfigError(f"{type(model).__name__} already has LoRA adapters; apply_lora once per model")
    trainable = (*trainable, *_full_modules(model, settings.trainable))
    targets = [t for t in _targets(model, settings.target_modules) if not t.startswith(tuple(trainable))]
    config = peft.LoraConfig(r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                             target_modules=targets, bias="none")
    peft.inject_adapter_in_model(config, model)
    adapters = set()
    for name, param in model.named_parameters():
        keep = "lora_" in name or name.startswith(tuple(trainable))
        param.requires_grad_(keep)
        if keep:
            adapters.add(name)
    model._lora_settings = settings  # type: ignore[assignment]
    model._lora_keys = frozenset(adapters)  # type: ignore[assignment]
    model.register_state_dict_post_hook(_adapters_only)
    model.register_load_state_dict_pre_hook(_keep_base_weights)
    return model


def _full_modules(model: nn.Module, names: Sequence[str]) -> list[str]:
    """Parameter-name prefixes ("tgt_embedding.") of the modules `model.lora.trainable` names; refuse unknown ones."""
    modules = dict(model.named_modules())
    unknown = [n for n in names if not n or n not in modules]
    if unknown:
        top = sorted(n for n in modules if n and "." not in n)
        raise ConfigError(f"model.lora.trainable {unknown} name no module of {type(model).__name__}; "
                          f"its top-level modules: {', '.join(top)}", field="trainable")
    return [f"{n}." for n in names]


def has_lora(model: nn.Module) -> bool:
    """Whether apply_lora injected adapters into `model`."""
    return hasattr(model, "_lora_keys")


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def _adapters_only(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """state_dict post-hook: drop every entry that is not an adapter weight."""
    keep = {prefix + k for k in getattr(module, "_lora_keys", ())}
    for key in [k for k in state_dict if k.startswith(prefix) and k not in keep]:
        del state_dict[key]


def _keep_base_weights(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """load_state_dict pre-hook: an adapters-only dict keeps the base weights the model has."""
    own: dict[str, Any] = dict(module.named_parameters(remove_duplicate=False))
    own.update({name: b for name, b in module.named_buffers(remove_duplicate=False)
                if name.rsplit(".", 1)[-1] not in _non_persistent(module, name)})
    for name, tensor in own.items():
        state_dict.setdefault(prefix + name, tensor)


def _non_persistent(model: nn.Module, buffer_name: str) -> set[str]:
    owner = model.get_submodule(buffer_name.rsplit(".", 1)[0]) if "." in buffer_name else model
    return set(getattr(owner, "_non_persistent_buffers_set", set()))


def merge_lora(model: nn.Module) -> nn.Module:
    """A copy of `model` with every adapter merged into its base weight and the adapters removed."""
    if not has_lora(model):
        raise ConfigError(f"{type(model).__name__} has no LoRA adapters to merge (model.lora was not set)")
    tuners = require("peft", "Merging LoRA adapters").tuners.tuners_utils
    merged = copy.deepcopy(model)
    for name, module in list(merged.named_modules()):
        if isinstance(module, tuners.BaseTunerLayer):
            module.merge()
            parent_name, _, child = name.rpartition(".")
            parent = merged.get_submodule(parent_name) if parent_name else merged
            setattr(parent, child, module.get_base_layer())
    # The copy is a plain model again: its state_dict holds every weight, all trainable.
    merged._state_dict_hooks.clear()
    merged._load_state_dict_pre_hooks.clear()
    del merged._lora_keys, merged._lora_settings
    for param in merged.parameters():
        param.requires_grad_(True)
    return merged
