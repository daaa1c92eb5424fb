"""Sequence-level training losses for a fine-tuning phase: minimum risk training and REINFORCE.

A step of sequence-level fine-tuning, as the trainer runs it (shapes for B sources, K candidates):

    candidates = generate(model, src, ..., num_return_sequences=K)     # no gradient
    rewards    = compute_rewards("exact_match", hyps, refs)              # (B * K,), no gradient
    tokens     = pack_candidates(hyps)                                   # (B * K, T) BOS..EOS PAD
    logprobs   = sequence_logprobs(model, src, src_padding_mask, tokens) # (B * K,), the gradient
    loss       = mrt_loss(logprobs.view(B, K), rewards.view(B, K), alpha=...)
              or reinforce_loss(logprobs.view(B, K), rewards.view(B, K), baseline=...)

Gradients flow only through `logprobs`: rewards and baselines are detached inside the losses.
Rewards here are computed on token id lists with special tokens removed; the trainer uses the
batch rewards of `treadmill.seq2seq.rewards` (text and ids, checkers, user functions), and GRPO
lives in `treadmill.seq2seq.grpo`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID
from treadmill.metrics.text import edit_distance, sentence_bleu

__all__ = [
    "RewardFn",
    "exact_match_reward",
    "sentence_bleu_reward",
    "negative_edit_distance_reward",
    "REWARDS",
    "get_reward",
    "compute_rewards",
    "pack_candidates",
    "sequence_logprobs",
    "mrt_loss",
    "reinforce_loss",
    "RewardBaseline",
]

RewardFn = Callable[[Sequence[int], Sequence[int]], float]


def exact_match_reward(hyp: Sequence[int], ref: Sequence[int]) -> float:
    """1.0 if the hypothesis equals the reference, else 0.0."""
    return 1.0 if list(hyp) == list(ref) else 0.0


def sentence_bleu_reward(hyp: Sequence[int], ref: Sequence[int]) -> float:
    """Sentence BLEU in [0, 1] over token ids (each id one word; effective order, exp smoothing)."""
    if not hyp and not ref:
        return 1.0  # BLEU of two empty sequences is 0 by convention, but they match exactly
    hyp_text = " ".join(map(str, hyp))
    ref_text = " ".join(map(str, ref))
    return sentence_bleu(hyp_text, ref_text, tokenize="none") / 100.0


def negative_edit_distance_reward(hyp: Sequence[int], ref: Sequence[int]) -> float:
    """-(token edit distance) / len(ref): 0 for a perfect output, about -1 for a useless one."""
    return -edit_distance(list(hyp), list(ref)) / max(len(ref), 1)


REWARDS: dict[str, RewardFn] = {
    "exact_match": exact_match_reward,
    "sentence_bleu": sentence_bleu_reward,
    "negative_edit_distance": negative_edit_distance_reward,
}


def get_reward(name: str) -> RewardFn:
    """Look a reward function up by its config name (see `REWARDS`)."""
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; choose one of {sorted(REWARDS)}.")
    return REWARDS[name]


def compute_rewards(
    reward: str | RewardFn,
    hyps: Sequence[Sequence[int]],
    refs: Sequence[Sequence[int]],
    device: torch.device | str | None = None,
) -> Tensor:
    """Rewards (len(hyps),) float32 for token id lists; refs[i] is hyps[i]'s reference."""
    if len(hyps) != len(refs):
        raise ValueError(
            f"compute_rewards got {len(hyps)} hypotheses and {len(refs)} references; with K "
            "candidates per source repeat each reference K times (refs[i] belongs to hyps[i])."
        )
    reward_fn = get_reward(reward) if isinstance(reward, str) else reward
    values = [reward_fn(hyp, ref) for hyp, ref in zip(hyps, refs, strict=True)]
    return torch.tensor(values, dtype=torch.float32, device=device)


def pack_candidates(
    sequences: Sequence[Sequence[int]],
    device: torch.device | str | None = None,
    *,
    bos_id: int = BOS_ID,
    eos_id: int = EOS_ID,
    pad_id: int = PAD_ID,
) -> Tensor:
    """Turn token id lists (no specials) into a (N, max_len + 2) tensor: BOS ids EOS, then PAD."""
    if not sequences:
        raise ValueError("pack_candidates got no sequences.")
    width = max(len(seq) for seq in sequences) + 2
    out = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    for row, seq in enumerate(sequences):
        out[row, : len(seq) + 2] = torch.tensor([bos_id, *seq, eos_id], dtype=torch.long)
    return out.to(device) if device is not None else out


def sequence_logprobs(
    model: Callable[..., Tensor],
    src: Tensor,
    src_padding_mask: Tensor | None,
    candidates: Tensor,
    *,
    normalize_by_length: bool = False,
    pad_id: int = PAD_ID,
    eos_id: int = EOS_ID,
) -> Tensor:
    """Summed log-probabilities (N,) of candidates (N, T) = BOS..EOS PAD under teacher forcing.

    N may be K times the batch size B of `src`: rows b*K .. b*K+K-1 are the candidates of src[b]
    (the layout of `generate(..., num_return_sequences=K)`), and each source is repeated K times. Tokens after the
    first EOS and PAD tokens are not scored; the EOS itself is. This is where the gradient flows.
    """
    if candidates.dim() != 2 or candidates.size(1) < 2:
        raise ValueError(
            f"candidates must be (N, T >= 2) token ids starting with BOS, got shape "
            f"{tuple(candidates.shape)}; build them with pack_candidates()."
        )
    n_candidates, batch = candidates.size(0), src.size(0)
    if n_candidates % batch != 0:
        raise ValueError(
            f"candidates has {n_candidates} rows, not a multiple of the {batch} sources in src; "
            "give K candidates per source, grouped by source."
        )
    k = n_candidates // batch
    if k > 1:
        src = src.repeat_interleave(k, dim=0)  # (batch * k, src_len)
        if src_padding_mask is not None:
            src_padding_mask = src_padding_mask.repeat_interleave(k, dim=0)
    tgt_in, tgt_out = candidates[:, :-1], candidates[:, 1:]  # (N, T - 1) each
    logits = model(src, tgt_in, src_padding_mask=src_padding_mask)  # (N, T - 1, vocab)
    log_probs = logits.float().log_softmax(dim=-1)
    token_logprobs = log_probs.gather(-1, tgt_out.unsqueeze(-1)).squeeze(-1)  # (N, T - 1)
    is_eos = tgt_out == eos_id
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0  # strictly after the first EOS
    scored = (tgt_out != pad_id) & ~after_eos  # (N, T - 1)
    total = (token_logprobs * scored).sum(dim=1)  # (N,)
    if normalize_by_length:
        total = total / scored.sum(dim=1).clamp(min=1)
    return total


def _check_pair(name: str, logprobs: Tensor, rewards: Tensor) -> None:
    if logprobs.shape != rewards.shape:
        raise ValueError(
            f"{name}: logprobs has shape {tuple(logprobs.shape)} but rewards has shape "
            f"{tuple(rewards.shape)}; they must match."
        )


def mrt_loss(
    candidate_logprobs: Tensor,
    rewards: Tensor,
    alpha: float = 0.005,
    candidate_padding_mask: Tensor | None = None,
) -> Tensor:
    """Minimum risk training (Shen et al., 2016): mean over sources of sum_k Q_k * (-reward_k).

    Q = softmax(alpha * logprob) over the K candidates of each source, (B, K) inputs. alpha
    sharpens (large) or flattens (small) Q; 5e-3 is the paper's value for NMT-length sums, toy
    tasks with short outputs want ~0.1-1. `candidate_padding_mask` (B, K) is True for missing
    candidates (fewer than K for a source), which get Q = 0.
    """
    _check_pair("mrt_loss", candidate_logprobs, rewards)
    if candidate_logprobs.dim() != 2:
        raise ValueError(
            f"mrt_loss expects (batch, K) candidate log-probabilities, got shape "
            f"{tuple(candidate_logprobs.shape)}."
        )
    if alpha <= 0:
        raise ValueError(f"mrt_loss: alpha must be > 0, got {alpha}.")
    scores = alpha * candidate_logprobs  # (batch, K)
    cost = -rewards.detach().to(scores.dtype)  # (batch, K)
    if candidate_padding_mask is not None:
        if bool(candidate_padding_mask.all(dim=1).any()):
            raise ValueError("mrt_loss: candidate_padding_mask hides every candidate of a source.")
        scores = scores.masked_fill(candidate_padding_mask, float("-inf"))
        cost = cost.masked_fill(candidate_padding_mask, 0.0)
    q = scores.softmax(dim=1)  # (batch, K)
    return (q * cost).sum(dim=1).mean()


def reinforce_loss(
    logprobs: Tensor, rewards: Tensor, baseline: float | Tensor | None = None
) -> Tensor:
    """REINFORCE: -mean((reward - baseline) * logprob), the advantage detached.

    logprobs/rewards are (B,) or (B, K) (K samples per source). `baseline=None` uses the mean
    reward along the last dimension (of the batch for (B,), of each source's K samples for (B, K));
    a float, a broadcastable tensor (e.g. a greedy decode's reward, "self-critical") or a
    `RewardBaseline` value can be given instead.
    """
    _check_pair("reinforce_loss", logprobs, rewards)
    rewards = rewards.detach().to(logprobs.dtype)
    if baseline is None:
        baseline_t = rewards.mean(dim=-1, keepdim=True)
    else:
        baseline_t = torch.as_tensor(baseline, dtype=logprobs.dtype, device=logprobs.device)
    advantage = (rewards - baseline_t.detach()).detach()
    return -(advantage * logprobs).mean()


class RewardBaseline:
    """Exponential moving average of the mean reward, a variance-reducing REINFORCE baseline."""

    def __init__(self, momentum: float = 0.9) -> None:
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"RewardBaseline.momentum must be in [0, 1), got {momentum}.")
        self.momentum = momentum
        self.value: float | None = None

    def __call__(self, rewards: Tensor) -> float:
        """Return the baseline for this batch (the average before it), then fold the batch in.

        The first call has no history and returns the batch's own mean reward.
        """
        batch_mean = float(rewards.detach().float().mean())
        baseline = batch_mean if self.value is None else self.value
        if self.value is None:
            self.value = batch_mean
        else:
            self.value = self.momentum * self.value + (1.0 - self.momentum) * batch_mean
        return baseline

    def state_dict(self) -> dict[str, float | None]:
        """Momentum and current average, for checkpoints."""
        return {"momentum": self.momentum, "value": self.value}

    def load_state_dict(self, state: dict[str, float | None]) -> None:
        """Restore from `state_dict()`."""
        momentum = state["momentum"]
        self.momentum = float(momentum) if momentum is not None else self.momentum
        self.value = None if state["value"] is None else float(state["value"])
