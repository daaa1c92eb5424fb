"""GenerationConfig: every decoding knob in one validated dataclass, plus keyword overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID
from treadmill.validation import check_keys

STRATEGIES = ("greedy", "beam", "sample")
# How beam search divides a finished hypothesis' log-probability by its length |Y| (output + EOS):
# "gnmt" by ((5 + |Y|) / 6) ** alpha (Wu et al. 2016, fairseq), "length" by |Y| ** alpha (HF).
LENGTH_NORMALIZATIONS = ("gnmt", "length")

# Fields that only one strategy reads. Setting one away from its default under another strategy
# is almost always a mistake (e.g. temperature=0.7 with the default greedy strategy silently
# decodes greedily), so it raises instead of being ignored.
_STRATEGY_ONLY_FIELDS = {
    "beam": ("beam_size", "length_penalty", "length_normalization", "early_stopping"),
    "sample": ("temperature", "top_k", "top_p"),
}


def strategy_only_fields(exclude: str | None = None) -> set[str]:
    """Fields read by one strategy only, except those of `exclude`."""
    return {field for name, fields in _STRATEGY_ONLY_FIELDS.items() if name != exclude for field in fields}


@dataclass
class GenerationConfig:
    """Decoding settings for `generate()` / `stream()`; validated at construction.

    Lengths count output tokens (BOS, the prompt and EOS excluded):
      * `max_len` is a hard cap. A hypothesis that reaches it is closed with EOS, and EOS's
        log-probability is counted in its score (fairseq's convention), so every score is the
        log-probability of a complete sequence.
      * `max_len_b` (fairseq's relative length): when set, example i may produce at most
        `min(max_len, int(max_len_a * src_len_i + max_len_b))` tokens, where `src_len_i` is its
        real (unpadded) source length, or prompt length for decoder-only models.
      * EOS is blocked until `min_len` tokens exist (`max_len` wins where they conflict).
    """

    strategy: str = "greedy"
    max_len: int = 128
    max_len_a: float = 0.0
    max_len_b: int | None = None
    min_len: int = 0
    # beam search
    beam_size: int = 5
    length_penalty: float = 1.0  # GNMT alpha: score / ((5 + |Y|) / 6) ** alpha, |Y| includes EOS
    length_normalization: str = "gnmt"  # or "length": score / |Y| ** alpha, as transformers does
    early_stopping: bool = False  # False: exact stop for the n returned; True: at beam_size finished
    num_return_sequences: int = 1
    # sampling
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    seed: int | None = None
    # constraints and outputs
    no_repeat_ngram_size: int = 0  # 0 = off; n-grams are taken over the generated tokens
    use_cache: bool = True
    return_scores: bool = False
    return_attention: bool = False
    bos_id: int = BOS_ID
    eos_id: int = EOS_ID
    pad_id: int = PAD_ID

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field, its value and the allowed range."""
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"GenerationConfig.strategy={self.strategy!r} is not a strategy; "
                f"use one of {STRATEGIES}"
            )
        _check_int(self, "max_len", low=1)
        _check_int(self, "min_len", low=0)
        if self.min_len > self.max_len:
            raise ValueError(
                f"GenerationConfig.min_len={self.min_len} exceeds max_len={self.max_len}; "
                "lower min_len or raise max_len"
            )
        if not isinstance(self.max_len_a, (int, float)) or self.max_len_a < 0:
            raise ValueError(f"GenerationConfig.max_len_a={self.max_len_a!r} must be a float >= 0")
        if self.max_len_b is not None:
            _check_int(self, "max_len_b", low=0)
        _check_int(self, "beam_size", low=1)
        _check_int(self, "num_return_sequences", low=1)
        _check_int(self, "top_k", low=0)
        _check_int(self, "no_repeat_ngram_size", low=0)
        if not isinstance(self.length_penalty, (int, float)):
            raise ValueError(
                f"GenerationConfig.length_penalty={self.length_penalty!r} must be a float "
                "(GNMT alpha, typically 0.0-2.0)"
            )
        if self.length_normalization not in LENGTH_NORMALIZATIONS:
            raise ValueError(
                f"GenerationConfig.length_normalization={self.length_normalization!r} is not one of "
                f"{LENGTH_NORMALIZATIONS} (gnmt: ((5 + |Y|) / 6) ** alpha; length: |Y| ** alpha)"
            )
        if not isinstance(self.temperature, (int, float)) or not self.temperature > 0:
            raise ValueError(
                f"GenerationConfig.temperature={self.temperature!r} must be > 0; "
                "use strategy='greedy' for temperature -> 0"
            )
        if not isinstance(self.top_p, (int, float)) or not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"GenerationConfig.top_p={self.top_p!r} must be in (0, 1]")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, int)
        ):
            raise ValueError(f"GenerationConfig.seed={self.seed!r} must be an int or None")
        for name in ("bos_id", "eos_id", "pad_id"):
            _check_int(self, name, low=0)
        self._validate_strategy_fields()

    def _validate_strategy_fields(self) -> None:
        defaults = GenerationConfig.__dataclass_fields__
        for strategy, names in _STRATEGY_ONLY_FIELDS.items():
            if self.strategy == strategy:
                continue
            for name in names:
                if getattr(self, name) != defaults[name].default:
                    raise ValueError(
                        f"GenerationConfig.{name}={getattr(self, name)!r} only applies to "
                        f"strategy={strategy!r}, but strategy={self.strategy!r}; set "
                        f"strategy={strategy!r} or leave {name} at its default"
                    )
        n = self.num_return_sequences
        if self.strategy == "greedy" and n != 1:
            raise ValueError(
                f"GenerationConfig.num_return_sequences={n} needs strategy='beam' or 'sample' "
                "(greedy has one answer)"
            )
        if self.strategy == "beam" and n > self.beam_size:
            raise ValueError(
                f"GenerationConfig.num_return_sequences={n} exceeds beam_size={self.beam_size}; "
                "raise beam_size or lower num_return_sequences"
            )

    def replace(self, **overrides: Any) -> GenerationConfig:
        """Return a validated copy with `overrides` applied; unknown names raise ValueError."""
        check_field_names(overrides)
        return dataclasses.replace(self, **overrides)

    def max_lengths(self, src_lengths: torch.Tensor) -> torch.Tensor:
        """Per-example cap on output tokens, (batch,) long, from real source lengths (batch,)."""
        cap = torch.full_like(src_lengths, self.max_len)
        if self.max_len_b is None:
            return cap
        relative = (self.max_len_a * src_lengths.double() + self.max_len_b).long()
        return torch.minimum(cap, relative)


def check_field_names(overrides: dict[str, Any]) -> None:
    """Raise ValueError for a name that is not a GenerationConfig field, naming the closest."""
    check_keys("GenerationConfig", overrides, GenerationConfig.__dataclass_fields__)


def resolve_config(config: GenerationConfig | None, overrides: dict[str, Any]) -> GenerationConfig:
    """Merge a config (default: GenerationConfig()) with keyword overrides into a validated one."""
    if config is not None and not isinstance(config, GenerationConfig):
        raise ValueError(
            f"config must be a GenerationConfig, got {type(config).__name__}; build one with "
            "GenerationConfig(...) or pass options as keywords"
        )
    check_field_names(overrides)
    return (config or GenerationConfig()).replace(**overrides)


def _check_int(cfg: GenerationConfig, name: str, low: int) -> None:
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"GenerationConfig.{name}={value!r} must be an int >= {low}")
