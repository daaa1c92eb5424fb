"""Group relative policy optimisation (Shao et al., 2024, DeepSeekMath) as loss functions.

For each source the policy draws a group of K outputs; each output's advantage is its reward
relative to its group's (no value network):

    advantages = group_advantages(rewards.view(B, K))            # (B, K): (r - mean) / (std + eps)
    loss, stats = grpo_loss(logp, old_logp, ref_logp, advantages.view(-1), mask, epsilon=0.2, beta=0.04)

`logp` (N, T) are the current policy's per-token log-probabilities (the gradient flows through
them), `old_logp` the sampling policy's (the weights the group was drawn with, detached), `ref_logp`
the frozen reference model's, and `mask` (N, T) marks the tokens that count. Per token:

    ratio = exp(logp - old_logp)
    surrogate = min(ratio * A, clip(ratio, 1 - epsilon, 1 + epsilon) * A)
    kl = exp(ref_logp - logp) - (ref_logp - logp) - 1          # the k3 estimator, >= 0, unbiased
    loss_token = -(surrogate - beta * kl)

averaged over all tokens of the batch ("token", as DAPO and TRL do by default) or first within
each output and then over outputs ("sequence", the GRPO paper's average).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["group_advantages", "k3_kl", "grpo_loss", "masked_mean", "AVERAGING"]

AVERAGING = ("token", "sequence")


def group_advantages(rewards: Tensor, scale: bool = True, eps: float = 1e-4) -> Tensor:
    """(B, K) rewards minus their group's mean, divided by the group's std + eps when `scale`.

    The std is the population one (a group's advantages then have unit variance); a group whose
    rewards are all equal gets advantage 0, so it adds no policy gradient.
    """
    if rewards.dim() != 2:
        raise ValueError(f"group_advantages expects (sources, group_size) rewards, got shape {tuple(rewards.shape)}.")
    rewards = rewards.detach().float()
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True, correction=0) + eps)


def k3_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """Per-token KL(policy || reference) estimate exp(r - p) - (r - p) - 1 (Schulman's k3): >= 0,
    exactly 0 where the two agree, gradient through `logp` only."""
    delta = ref_logp.detach() - logp
    return delta.exp() - delta - 1.0


def masked_mean(values: Tensor, mask: Tensor, averaging: str = "token") -> Tensor:
    """Mean of values (N, T) where mask is True: over all tokens, or per row and then over rows."""
    mask = mask.to(values.dtype)
    if averaging == "token":
        return (values * mask).sum() / mask.sum().clamp(min=1)
    if averaging == "sequence":
        return ((values * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()
    raise ValueError(f"averaging must be one of {AVERAGING}, got {averaging!r}.")


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    *,
    epsilon: float = 0.2,
    beta: float = 0.04,
    averaging: str = "token",
) -> tuple[Tensor, dict[str, Tensor]]:
    """The clipped GRPO objective (to minimise) and its statistics: kl (mean per token, 0 without a
    reference) and clip_fraction (share of tokens whose clipped term is the smaller one)."""
    if logp.shape != old_logp.shape or logp.shape != mask.shape or advantages.shape != logp.shape[:1]:
        raise ValueError(f"grpo_loss: logp {tuple(logp.shape)}, old_logp {tuple(old_logp.shape)} and mask "
                         f"{tuple(mask.shape)} must be (N, T) and advantages {tuple(advantages.shape)} (N,).")
    advantage = advantages.detach().to(logp.dtype).unsqueeze(1)  # (N, 1)
    ratio = (logp - old_logp.detach()).exp()
    unclipped = ratio * advantage
    clipped = ratio.clamp(1.0 - epsilon, 1.0 + epsilon) * advantage
    per_token = -torch.minimum(unclipped, clipped)
    stats: dict[str, Tensor] = {}
    with torch.no_grad():
        stats["clip_fraction"] = masked_mean((clipped < unclipped).to(logp.dtype), mask, "token")
    if ref_logp is not None:
        kl = k3_kl(logp, ref_logp)
        per_token = per_token + beta * kl
        stats["kl"] = masked_mean(kl.detach(), mask, "token")
    else:
        stats["kl"] = logp.new_zeros(())
    return masked_mean(per_token, mask, averaging), stats
