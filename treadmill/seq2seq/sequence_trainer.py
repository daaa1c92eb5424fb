"""Sequence-level fine-tuning: MRT, REINFORCE, GRPO, or the teacher-forced/free-running consistency loss.

Start from a model trained with teacher forcing, then fine-tune on what decoding is judged by. For
each source the model draws outputs itself (sampling or beam search, no gradient), a reward scores
them (`treadmill.seq2seq.rewards`: exact match, PER, WER, BLEU, chrF, the task's checker or your
own function), and the objective pushes probability towards the better ones:

* `mrt`: minimum risk training over K candidates; `reinforce`: REINFORCE with the group mean as
  baseline;
* `grpo`: group relative policy optimisation (`treadmill.seq2seq.grpo`): `group_size` samples per
  source, group-normalised advantages, the clipped ratio against the sampling policy over
  `inner_steps` updates per batch, and a k3 KL penalty `beta` towards a frozen reference (the
  model as the phase starts). Logged at each log step: reward_mean, reward_std, kl, clip_fraction,
  output_length and zero_variance_groups;
* `consistency`: cross-entropy plus `consistency_lambda` x KL(teacher-forced || free-running)
  over the model's own sampled prefixes (`treadmill.seq2seq.consistency`).

A token-level cross-entropy term (`mle_weight`) keeps MRT, REINFORCE and GRPO anchored to the
references. Encoder-decoder and decoder-only models alike; validation is Seq2SeqTrainer's.
The sampler's random state and the reference model are part of the checkpoint (exact resume).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from treadmill.checkpoint import unwrap_model
from treadmill.config import ConfigError
from treadmill.constants import EOS_ID
from treadmill.seq2seq.consistency import consistency_kl, free_running_inputs
from treadmill.seq2seq.grpo import AVERAGING, group_advantages, grpo_loss
from treadmill.seq2seq.policy import candidate_logits, scored_mask, token_logprobs
from treadmill.seq2seq.rewards import (
    RewardBatch,
    check_reward_name,
    checked_rewards,
    resolve_reward,
    text_of,
)
from treadmill.seq2seq.sequence_level import mrt_loss, pack_candidates, reinforce_loss
from treadmill.seq2seq.trainer import Seq2SeqTrainer, TokenLoss, strip_target

__all__ = ["METHODS", "SequenceLevelConfig", "SequenceLevelTrainer"]

METHODS = ("mrt", "reinforce", "grpo", "consistency")


@dataclass
class SequenceLevelConfig:
    """How outputs are drawn and scored, and which objective uses them (see the module docstring)."""

    method: str = "mrt"
    n_candidates: int = 8  # mrt, reinforce
    candidate_strategy: str = "sample"  # "sample" | "beam" (mrt, reinforce)
    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    reward: str = "exact_match"
    mrt_alpha: float = 1.0
    mle_weight: float = 0.1
    group_size: int = 8  # grpo: samples per source
    epsilon: float = 0.2  # grpo: the ratio is clipped to [1 - epsilon, 1 + epsilon]
    beta: float = 0.04  # grpo: weight of the KL to the reference (0: no reference model)
    inner_steps: int = 1  # grpo: optimizer updates per sampled batch
    scale_rewards: bool = True  # grpo: divide advantages by the group's std
    loss_averaging: str = "token"  # grpo: "token" | "sequence"
    consistency_lambda: float = 1.0  # consistency: weight of the KL term

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"SequenceLevelConfig.method must be one of {', '.join(METHODS)} (or mle in a run "
                              f"config), got {self.method!r}.", "method")
        if self.candidate_strategy not in ("sample", "beam"):
            raise ConfigError(f"SequenceLevelConfig.candidate_strategy must be 'sample' or 'beam', got {self.candidate_strategy!r}.")
        check_reward_name(self.reward)
        if self.n_candidates < 1:
            raise ConfigError(f"SequenceLevelConfig.n_candidates must be >= 1, got {self.n_candidates}.")
        if self.method == "grpo" and (not isinstance(self.group_size, int) or self.group_size < 2):
            raise ConfigError(f"SequenceLevelConfig.group_size={self.group_size!r}: GRPO compares the samples of a "
                              "source with each other, so it needs group_size >= 2 (8 is usual).", "group_size")
        if not self.temperature > 0:
            raise ConfigError(f"SequenceLevelConfig.temperature must be > 0, got {self.temperature}.", "temperature")
        if not 0 < self.epsilon < 1:
            raise ConfigError(f"SequenceLevelConfig.epsilon must be in (0, 1), got {self.epsilon}.", "epsilon")
        if self.beta < 0 or self.consistency_lambda < 0 or self.mle_weight < 0:
            raise ConfigError("SequenceLevelConfig.beta, consistency_lambda and mle_weight must be >= 0, got "
                              f"{self.beta}, {self.consistency_lambda}, {self.mle_weight}.")
        if not isinstance(self.inner_steps, int) or self.inner_steps < 1:
            raise ConfigError(f"SequenceLevelConfig.inner_steps must be an integer >= 1, got {self.inner_steps!r}.", "inner_steps")
        if self.loss_averaging not in AVERAGING:
            raise ConfigError(f"SequenceLevelConfig.loss_averaging must be one of {AVERAGING}, got {self.loss_averaging!r}.",
                              "loss_averaging")


def _flatten(outputs: list[Any], k: int) -> list[list[int]]:
    """generate's outputs as one list, k per source (it gives n-best lists only for k > 1)."""
    return [list(h) for group in outputs for h in group] if k > 1 else [list(h) for h in outputs]


class _Candidates:
    """What the training forward pass hands the loss: candidate log-probs, rewards, teacher logits."""

    def __init__(self, logprobs: Tensor, rewards: Tensor, logits: Tensor | None) -> None:
        self.logprobs, self.rewards, self.logits = logprobs, rewards, logits


@dataclass
class _Group:
    """A GRPO batch: the sampled outputs and what the objective needs of them."""

    candidates: Tensor  # (N, T) BOS..EOS PAD
    rewards: Tensor  # (B, G)
    advantages: Tensor  # (N,)
    old_logp: Tensor | None  # (N, T - 1), None: the current weights drew them (one inner step)
    ref_logp: Tensor | None  # (N, T - 1), None without a reference


@dataclass
class _Consistency:
    teacher_logits: Tensor  # the base trainer's layout (for the cross-entropy)
    teacher: Tensor  # (B, T - 1, V) at the target positions
    free: Tensor  # (B, T - 1, V) after the model's own prefixes
    mask: Tensor  # (B, T - 1)
    lengths: Tensor  # (B,)


class SequenceLevelTrainer(Seq2SeqTrainer):
    """A Seq2SeqTrainer whose training objective is sequence-level (validation is unchanged).

    `source_detokenize` turns source ids into the text rewards see (`detokenize` does targets);
    `checker(source, output)` is the task's verifiable reward, which `reward: checker` uses.
    """

    def __init__(self, *args: Any, sequence_level: SequenceLevelConfig | None = None,
                 source_detokenize: Callable[[list[int]], str] | None = None,
                 checker: Callable[[str, str], float] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sequence_level = config = sequence_level or SequenceLevelConfig()
        self.source_detokenize = source_detokenize
        self._reward = resolve_reward(config.reward, checker)
        if config.method == "grpo" and config.inner_steps > 1 and self.config.gradient_accumulation_steps > 1:
            raise ConfigError("sequence_level.inner_steps > 1 makes several updates per batch, which gradient "
                              "accumulation cannot spread over batches: set training.gradient_accumulation_steps=1.",
                              "inner_steps")
        # The reference is the policy as the phase starts, frozen; a resumed run reloads the saved one.
        self.reference_model: torch.nn.Module | None = None
        if config.method == "grpo" and config.beta > 0:
            self.reference_model = copy.deepcopy(unwrap_model(self.model)).eval().requires_grad_(False)
        self._step_stats: dict[str, float] = {}

    # ------------------------------------------------------------------ drawing and scoring

    def _where(self) -> str:
        return f"step {self.global_step} (epoch {self.epoch + 1}, batch {self.batch_in_epoch})"

    def _sample(self, batch: dict[str, Tensor], k: int) -> list[list[int]]:
        """k sampled outputs per source, grouped by source (seeds from the trainer's sampler RNG)."""
        config = self.sequence_level
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=self._ss_generator))
        hyps = self.generate_batch(batch, strategy="sample", temperature=config.temperature, top_k=config.top_k,
                                   top_p=config.top_p, num_return_sequences=k, seed=seed)
        return _flatten(hyps, k)

    def _draw_candidates(self, batch: dict[str, Tensor]) -> list[list[int]]:
        config = self.sequence_level
        if config.candidate_strategy == "sample":
            return self._sample(batch, config.n_candidates)
        hyps = self.generate_batch(batch, strategy="beam", beam_size=config.n_candidates,
                                   num_return_sequences=config.n_candidates)
        return _flatten(hyps, config.n_candidates)

    def _rewards(self, batch: dict[str, Tensor], flat: list[list[int]], k: int) -> Tensor:
        """Rewards (B * k,) of the outputs `flat` (k per source, grouped by source)."""
        refs = [strip_target(row.tolist()) for row in batch["tgt"]]
        src = batch.get("src")
        sources = [text_of(strip_target(row.tolist()), self.source_detokenize) for row in src] \
            if src is not None else [""] * len(refs)
        reference_text = [text_of(r, self.detokenize) for r in refs]
        reward_batch = RewardBatch(
            sources=[s for s in sources for _ in range(k)],
            hypotheses=[text_of(h, self.detokenize) for h in flat],
            references=[r for r in reference_text for _ in range(k)],
            hypothesis_ids=[list(h) for h in flat],
            reference_ids=[r for r in refs for _ in range(k)],
        )
        return checked_rewards(self._reward, reward_batch, self.sequence_level.reward, f"{self._where()}",
                               device=self.device)

    def _logits(self, model: torch.nn.Module, batch: dict[str, Tensor], candidates: Tensor) -> Tensor:
        return candidate_logits(model, batch, candidates, encoder_decoder=self.is_encoder_decoder)

    # ------------------------------------------------------------------ hooks

    def _forward_pass(self, batch: Any) -> Any:
        if not self.model.training:
            return super()._forward_pass(batch)
        method = self.sequence_level.method
        if method == "grpo":
            return self._grpo_forward(batch)
        if method == "consistency":
            return self._consistency_forward(batch)
        config, k = self.sequence_level, self.sequence_level.n_candidates
        flat = self._draw_candidates(batch)  # (batch * k) id lists
        rewards = self._rewards(batch, flat, k).view(-1, k)  # (batch, k)
        candidates = pack_candidates(flat, device=self.device)  # (batch * k, max_len)
        logp, _ = token_logprobs(self._logits(self.model, batch, candidates), candidates)
        logits = super()._forward_pass(batch) if config.mle_weight > 0 else None
        return _Candidates(logp.sum(dim=1).view(-1, k), rewards, logits)

    def _grpo_forward(self, batch: dict[str, Tensor]) -> _Group:
        config, g = self.sequence_level, self.sequence_level.group_size
        flat = self._sample(batch, g)
        rewards = self._rewards(batch, flat, g).view(-1, g)  # (B, G)
        candidates = pack_candidates(flat, device=self.device)  # (B * G, T)
        with torch.no_grad():
            ref_logp = None
            if self.reference_model is not None:
                ref_logp = token_logprobs(self._logits(self.reference_model, batch, candidates), candidates,
                                          config.temperature)[0]
            old_logp = None
            if config.inner_steps > 1:  # the sampling policy, before this batch's updates
                old_logp = token_logprobs(self._logits(self.model, batch, candidates), candidates, config.temperature)[0]
        group = _Group(candidates, rewards, group_advantages(rewards, config.scale_rewards).view(-1), old_logp, ref_logp)
        # All inner updates but the last run here; the trainer's own step makes the last one.
        for _ in range(config.inner_steps - 1):
            if self.config.max_steps is not None and self.global_step + 1 >= self.config.max_steps:
                break
            self._compute_loss(batch, group).loss.backward()
            self._optimizer_step(None)
        return group

    def _consistency_forward(self, batch: dict[str, Tensor]) -> _Consistency:
        samples = self._sample(batch, 1)
        tgt = batch["tgt"]
        teacher_logits = super()._forward_pass(batch)
        teacher = teacher_logits if self.is_encoder_decoder else self._logits(self.model, batch, tgt)
        free_in = free_running_inputs(samples, tgt.size(1), device=self.device)
        free = self._logits(self.model, batch, free_in)
        mask = scored_mask(tgt) & scored_mask(free_in)
        lengths = torch.tensor([len(s) for s in samples], dtype=torch.float32)
        return _Consistency(teacher_logits, teacher, free, mask, lengths)

    def _compute_loss(self, batch: Any, predictions: Any) -> Any:
        config = self.sequence_level
        if isinstance(predictions, _Consistency):
            token = super()._compute_loss(batch, predictions.teacher_logits)
            kl = consistency_kl(predictions.teacher, predictions.free, predictions.mask)
            self._step_stats = {"consistency_kl": float(kl.detach()),
                                "output_length": float(predictions.lengths.mean())}
            loss = token.loss + config.consistency_lambda * kl
            return TokenLoss(loss, token.n_tokens, token.nll_sum)
        if isinstance(predictions, _Group):
            return self._grpo_loss(batch, predictions)
        if not isinstance(predictions, _Candidates):
            return super()._compute_loss(batch, predictions)
        if config.method == "mrt":
            loss = mrt_loss(predictions.logprobs, predictions.rewards, alpha=config.mrt_alpha)
        else:
            loss = reinforce_loss(predictions.logprobs, predictions.rewards)
        n_sources = torch.tensor(predictions.logprobs.size(0), device=loss.device)
        if predictions.logits is not None:
            token = super()._compute_loss(batch, predictions.logits)
            loss = loss + config.mle_weight * token.loss
        self._last_loss = None
        return TokenLoss(loss, n_sources, loss.detach())

    def _grpo_loss(self, batch: Any, group: _Group) -> TokenLoss:
        config = self.sequence_level
        logp, mask = token_logprobs(self._logits(self.model, batch, group.candidates), group.candidates,
                                    config.temperature)
        old_logp = logp.detach() if group.old_logp is None else group.old_logp
        loss, stats = grpo_loss(logp, old_logp, group.ref_logp, group.advantages, mask,
                                epsilon=config.epsilon, beta=config.beta, averaging=config.loss_averaging)
        if config.mle_weight > 0:  # on the current weights, at every inner step
            loss = loss + config.mle_weight * super()._compute_loss(batch, super()._forward_pass(batch)).loss
        rewards = group.rewards
        self._step_stats = {
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std(dim=1, correction=0).mean()),  # within groups
            "kl": float(stats["kl"]),
            "clip_fraction": float(stats["clip_fraction"]),
            "output_length": float((mask & (group.candidates[:, 1:] != EOS_ID)).sum(dim=1).float().mean()),  # EOS not counted
            "zero_variance_groups": float((rewards.max(dim=1).values == rewards.min(dim=1).values).float().mean()),
        }
        self._last_loss = None
        n_sources = torch.tensor(rewards.size(0), device=loss.device)
        return TokenLoss(loss, n_sources, loss.detach())

    def _compute_metrics(self, batch: Any, predictions: Any) -> dict[str, Any]:
        if isinstance(predictions, _Candidates):
            return {"reward": predictions.rewards.mean()}
        if isinstance(predictions, (_Group, _Consistency)):
            return {name: torch.tensor(value) for name, value in self._step_stats.items()}
        return super()._compute_metrics(batch, predictions)

    def _log(self, loss: Tensor, samples_per_s: float) -> None:
        super()._log(loss, samples_per_s)
        if self._step_stats:  # the same steps.csv row as the loss
            self.log_scalars(self._step_stats)

    # ------------------------------------------------------------------ exact resume

    def state_dict(self) -> dict[str, Any]:
        """Seq2SeqTrainer's state with the sampler's random state and the reference model."""
        state = super().state_dict()
        state["sequence_level"] = {
            "sampler": self._ss_generator.get_state(),
            "reference": self.reference_model.state_dict() if self.reference_model is not None else None,
        }
        return state

    def restore_extra_state(self, state: dict[str, Any]) -> None:
        """Load what `state_dict` added (called by restore_training_state)."""
        extra = state.get("sequence_level")
        if extra is None:
            return
        self._ss_generator.set_state(extra["sampler"].cpu())
        if self.reference_model is not None and extra.get("reference") is not None:
            self.reference_model.load_state_dict(extra["reference"])
