"""Seed 000's consistency loss: the free-running output distributions pulled onto the teacher-forced ones.

For each example the model first draws its own output (sampling, no gradient). Then, position by
position, it predicts the next token twice: after the reference prefix (teacher forcing) and after
its own sampled prefix (free running). The loss is

    cross-entropy(teacher-forced) + lambda * mean_t KL(p_teacher_forced(t) || p_free_running(t))

over the positions both prefixes reach (up to the shorter of the reference and the sample, EOS
included). The teacher-forced distribution is the target (detached): the gradient of the KL term
teaches the model to predict after its own prefixes what it predicts after the reference's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID

__all__ = ["free_running_inputs", "consistency_kl"]


def free_running_inputs(samples: Sequence[Sequence[int]], width: int, device: torch.device | str | None = None) -> Tensor:
    """(N, width) rows BOS sample EOS PAD..., cut to `width` (the reference batch's tgt width)."""
    out = torch.full((len(samples), width), PAD_ID, dtype=torch.long)
    for row, sample in enumerate(samples):
        tokens = [BOS_ID, *sample, EOS_ID][:width]
        out[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
    return out.to(device) if device is not None else out


def consistency_kl(teacher_logits: Tensor, free_logits: Tensor, mask: Tensor) -> Tensor:
    """Mean over masked positions of KL(softmax(teacher) || softmax(free)), (N, T, V) logits, the
    teacher side detached; 0 when no position counts."""
    if teacher_logits.shape != free_logits.shape or mask.shape != teacher_logits.shape[:2]:
        raise ValueError(f"consistency_kl: teacher {tuple(teacher_logits.shape)} and free {tuple(free_logits.shape)} "
                         f"logits must match and mask {tuple(mask.shape)} be their first two dimensions.")
    target = teacher_logits.detach().float().log_softmax(dim=-1)
    log_q = free_logits.float().log_softmax(dim=-1)
    kl = (target.exp() * (target - log_q)).sum(dim=-1)  # (N, T)
    mask = mask.to(kl.dtype)
    return (kl * mask).sum() / mask.sum().clamp(min=1)

