"""Sequence-level fine-tuning: minimum risk training or REINFORCE on a sequence reward.

Start from a model trained with teacher forcing, then fine-tune on what decoding is judged by:
for each source, draw K candidates from the model itself (sampling or beam search, no gradient),
score them with a sequence reward (exact match, sentence BLEU, negative edit distance), and push
probability towards the better ones. Gradients flow only through the candidates' summed
log-probabilities under teacher forcing. A small token-level cross-entropy term (`mle_weight`)
keeps the model anchored to the references, as Shen et al. (2016) and Edunov et al. (2018)
recommend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from treadmill.checkpoint import unwrap_model
from treadmill.config import ConfigError
from treadmill.constants import PAD_ID
from treadmill.seq2seq.sequence_level import (
    REWARDS,
    compute_rewards,
    mrt_loss,
    pack_candidates,
    reinforce_loss,
    sequence_logprobs,
)
from treadmill.seq2seq.trainer import Seq2SeqTrainer, TokenLoss, strip_target

__all__ = ["SequenceLevelConfig", "SequenceLevelTrainer"]


@dataclass
class SequenceLevelConfig:
    """How candidates are drawn and scored, and which objective uses them."""

    method: str = "mrt"  # "mrt" | "reinforce"
    n_candidates: int = 8
    candidate_strategy: str = "sample"  # "sample" | "beam"
    temperature: float = 1.0
    reward: str = "exact_match"
    mrt_alpha: float = 1.0
    mle_weight: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in ("mrt", "reinforce"):
            raise ConfigError(f"SequenceLevelConfig.method must be 'mrt' or 'reinforce', got {self.method!r}.")
        if self.candidate_strategy not in ("sample", "beam"):
            raise ConfigError(f"SequenceLevelConfig.candidate_strategy must be 'sample' or 'beam', got {self.candidate_strategy!r}.")
        if self.reward not in REWARDS:
            raise ConfigError(f"SequenceLevelConfig.reward={self.reward!r}; choose one of {sorted(REWARDS)}.")
        if self.n_candidates < 1:
            raise ConfigError(f"SequenceLevelConfig.n_candidates must be >= 1, got {self.n_candidates}.")


class _Candidates:
    """What the training forward pass hands the loss: candidate log-probs, rewards, teacher logits."""

    def __init__(self, logprobs: Tensor, rewards: Tensor, logits: Tensor | None) -> None:
        self.logprobs, self.rewards, self.logits = logprobs, rewards, logits


class SequenceLevelTrainer(Seq2SeqTrainer):
    """A Seq2SeqTrainer whose training objective is sequence-level (validation is unchanged)."""

    def __init__(self, *args: Any, sequence_level: SequenceLevelConfig | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not self.is_encoder_decoder:
            raise ConfigError("SequenceLevelTrainer supports encoder-decoder models.")
        self.sequence_level = sequence_level or SequenceLevelConfig()

    def _draw_candidates(self, batch: dict[str, Tensor]) -> list[list[int]]:
        config = self.sequence_level
        if config.candidate_strategy == "sample":
            options = {"strategy": "sample", "temperature": config.temperature, "num_return_sequences": config.n_candidates,
                       "seed": int(torch.randint(0, 2**31 - 1, (1,), generator=self._ss_generator))}
        else:
            options = {"strategy": "beam", "beam_size": config.n_candidates, "num_return_sequences": config.n_candidates}
        hyps = self.generate_batch(batch, **options)  # per source: a list of K id lists (K > 1)
        return [h for group in hyps for h in group] if config.n_candidates > 1 else hyps

    def _forward_pass(self, batch: Any) -> Any:
        if not self.model.training:
            return super()._forward_pass(batch)
        config, k = self.sequence_level, self.sequence_level.n_candidates
        src = batch["src"]
        mask = batch.get("src_padding_mask")
        mask = src == PAD_ID if mask is None else mask
        flat = self._draw_candidates(batch)  # (batch * k) id lists
        refs = [strip_target(row.tolist()) for row in batch["tgt"] for _ in range(k)]
        rewards = compute_rewards(config.reward, flat, refs, device=self.device).view(-1, k)  # (batch, k)
        candidates = pack_candidates(flat, device=self.device)  # (batch * k, max_len)
        logprobs = sequence_logprobs(unwrap_model(self.model), src, mask, candidates).view(-1, k)  # (batch, k)
        logits = super()._forward_pass(batch) if config.mle_weight > 0 else None
        return _Candidates(logprobs, rewards, logits)

    def _compute_loss(self, batch: Any, predictions: Any) -> Any:
        if not isinstance(predictions, _Candidates):
            return super()._compute_loss(batch, predictions)
        config = self.sequence_level
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

    def _compute_metrics(self, batch: Any, predictions: Any) -> dict[str, Any]:
        if isinstance(predictions, _Candidates):
            return {"reward": predictions.rewards.mean()}
        return super()._compute_metrics(batch, predictions)
