"""Sequence rewards by config name: compared with a reference, checked from the source, or your own.

    reward = resolve_reward("checker", checker=task.checker)    # or exact_match, per, wer, bleu, chrf,
                                                                 # or "my_module:my_reward"
    values = reward(RewardBatch(sources, hypotheses, references, hypothesis_ids, reference_ids))

A `RewardBatch` holds one row per hypothesis (with K samples per source, each source and reference
is repeated K times): decoded text for every field, and the target token ids. The built-in rewards:

* `exact_match` (1 or 0), `per` (minus the token edit distance over the reference length),
  `wer` (the same over whitespace words), `bleu` (sentence BLEU over tokens, in [0, 1]),
  `chrf` (sentence chrF over characters, in [0, 1]);
* `checker`: a verifiable reward that needs no reference. The task checks the answer itself
  (`Task.checker(source, hypothesis) -> float`); the addition tasks compute the sum from the
  source, so a correct answer scores 1, a wrong number 0 and a malformed output -1.

A user reward `module:function` is called as `function(sources, hypotheses, references)` on text
lists and returns one number per hypothesis (a tensor, array or list of N floats).
`checked_rewards` refuses a reward of the wrong shape or with NaN/inf, naming the batch.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from treadmill.metrics.chrf import chrf_from_statistics, chrf_statistics
from treadmill.metrics.text import edit_distance, sentence_bleu
from treadmill.validation import ConfigError

__all__ = [
    "RewardBatch",
    "RewardError",
    "BUILTIN_REWARDS",
    "REWARD_ALIASES",
    "reward_names",
    "check_reward_name",
    "resolve_reward",
    "checked_rewards",
    "text_of",
]

Checker = Callable[[str, str], float]
BatchReward = Callable[["RewardBatch"], Any]


class RewardError(ConfigError):
    """A reward that cannot be used: an unknown name, a missing checker, or values of the wrong
    shape or not finite (the message names the reward and the batch)."""


@dataclass
class RewardBatch:
    """One row per hypothesis: its source, output and reference as text, and the target ids."""

    sources: list[str]
    hypotheses: list[str]
    references: list[str]
    hypothesis_ids: list[list[int]]
    reference_ids: list[list[int]]

    def __len__(self) -> int:
        return len(self.hypotheses)


def _exact_match(batch: RewardBatch) -> list[float]:
    return [1.0 if h == r else 0.0 for h, r in zip(batch.hypothesis_ids, batch.reference_ids, strict=True)]


def _per(batch: RewardBatch) -> list[float]:
    # Normalised by the reference so that a long and a short example weigh alike; 0 is perfect.
    return [-edit_distance(h, r) / max(len(r), 1) for h, r in zip(batch.hypothesis_ids, batch.reference_ids, strict=True)]


def _wer(batch: RewardBatch) -> list[float]:
    pairs = zip(batch.hypotheses, batch.references, strict=True)
    return [-edit_distance(h.split(), r.split()) / max(len(r.split()), 1) for h, r in pairs]


def _bleu(batch: RewardBatch) -> list[float]:
    out = []
    for hyp, ref in zip(batch.hypothesis_ids, batch.reference_ids, strict=True):
        if not hyp and not ref:
            out.append(1.0)  # BLEU of two empty outputs is 0 by convention, but they match exactly
            continue
        out.append(sentence_bleu(" ".join(map(str, hyp)), " ".join(map(str, ref)), tokenize="none") / 100.0)
    return out


def _chrf(batch: RewardBatch) -> list[float]:
    pairs = zip(batch.hypotheses, batch.references, strict=True)
    return [1.0 if h == r else chrf_from_statistics(chrf_statistics(h, [r])) / 100.0 for h, r in pairs]


BUILTIN_REWARDS: dict[str, BatchReward] = {
    "exact_match": _exact_match,
    "per": _per,
    "wer": _wer,
    "bleu": _bleu,
    "chrf": _chrf,
}
# The names of the first sequence-level release, still accepted.
REWARD_ALIASES = {"negative_edit_distance": "per", "sentence_bleu": "bleu"}


def reward_names() -> list[str]:
    """Every name `sequence_level.reward` accepts besides `module:function`."""
    return [*BUILTIN_REWARDS, "checker", *REWARD_ALIASES]


def _user_function(spec: str) -> Callable[..., Any]:
    module_name, _, function_name = spec.partition(":")
    if not module_name or not function_name:
        raise RewardError(f"sequence_level.reward={spec!r}: write module:function, e.g. my_rewards:length_reward.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise RewardError(f"sequence_level.reward={spec!r}: cannot import module {module_name!r} ({err}); "
                          "put it on PYTHONPATH.") from err
    function = getattr(module, function_name, None)
    if not callable(function):
        raise RewardError(f"sequence_level.reward={spec!r}: module {module_name!r} has no function {function_name!r}.")
    return function


def check_reward_name(name: Any) -> None:
    """Refuse a reward name that is neither built in nor an importable `module:function`."""
    if not isinstance(name, str):
        raise RewardError(f"sequence_level.reward must be a name, got {name!r}; known: {', '.join(reward_names())} "
                          "or module:function.")
    if ":" in name:
        _user_function(name)
    elif name not in reward_names():
        raise RewardError(f"sequence_level.reward={name!r} is not a reward. Known: {', '.join(reward_names())}, "
                          "or module:function for your own reward(sources, hypotheses, references).")


def resolve_reward(name: str, checker: Checker | None = None) -> BatchReward:
    """The batch reward called `name`; `checker` is the task's, which `checker` needs."""
    check_reward_name(name)
    if ":" in name:
        function = _user_function(name)
        return lambda batch: function(batch.sources, batch.hypotheses, batch.references)
    if name == "checker":
        if checker is None:
            raise RewardError("sequence_level.reward=checker needs a task that can check its answers "
                              "(Task.checker; the addition tasks have one); choose another reward.")
        return lambda batch: [float(checker(s, h)) for s, h in zip(batch.sources, batch.hypotheses, strict=True)]
    return BUILTIN_REWARDS[REWARD_ALIASES.get(name, name)]


def checked_rewards(reward: BatchReward, batch: RewardBatch, name: str, where: str,
                    device: torch.device | str | None = None) -> Tensor:
    """The rewards (N,) float32 of `batch`, refused (RewardError naming `where`) unless finite and (N,)."""
    raw = reward(batch)
    n = len(batch)
    try:
        values = torch.as_tensor(raw.detach().cpu() if isinstance(raw, Tensor) else raw, dtype=torch.float32)
    except (TypeError, ValueError) as err:
        raise RewardError(f"reward {name!r} at {where} returned {type(raw).__name__}, not {n} numbers: {err}") from err
    if values.shape != (n,):
        raise RewardError(f"reward {name!r} at {where} returned shape {tuple(values.shape)}; it must return one number "
                          f"per hypothesis, shape ({n},).")
    bad = (~torch.isfinite(values)).nonzero().flatten().tolist()
    if bad:
        first = bad[0]
        raise RewardError(f"reward {name!r} at {where} returned {values[first].item()} for hypothesis {first} "
                          f"({batch.hypotheses[first]!r} for source {batch.sources[first]!r}); {len(bad)} of {n} "
                          "rewards are not finite.")
    return values.to(device) if device is not None else values


def text_of(ids: Sequence[int], detokenize: Callable[[list[int]], str] | None) -> str:
    """Token ids as text: the tokenizer's decoding, or the ids joined by spaces without one."""
    return detokenize(list(ids)) if detokenize is not None else " ".join(str(int(i)) for i in ids)
