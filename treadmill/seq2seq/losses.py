"""Label-smoothed cross-entropy for sequence models, ignoring padding.

Two reductions:
* "token": sum of the per-token losses over non-pad tokens / number of non-pad tokens.
* "sentence": per-sentence *sum* of token losses, then the mean over sentences (fairseq's
  sentence-avg). Long sentences weigh more, as they do in the sequence log-likelihood.

For exact gradient accumulation the trainer should not average batch losses: it calls
`loss_and_count`, sums `loss_sum` and the normaliser (`n_tokens` or `n_sentences`, see
`LabelSmoothedCrossEntropy.normalizer`) over the micro-batches, and divides once. `nll_sum` is the
plain negative log-likelihood (no smoothing), what perplexity is computed from.

Smoothing follows `F.cross_entropy(label_smoothing=eps)`: the target distribution is
(1 - eps) on the gold token plus eps / vocab on every token (PAD's column included).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from treadmill.constants import PAD_ID

__all__ = ["LossOutput", "LabelSmoothedCrossEntropy"]

Reduction = Literal["token", "sentence"]


class LossOutput(NamedTuple):
    """Summed losses of one batch and the counts to normalise them by."""

    loss_sum: Tensor  # label-smoothed loss summed over non-pad tokens (carries the gradient)
    nll_sum: Tensor  # unsmoothed NLL summed over non-pad tokens (detached), for perplexity
    n_tokens: Tensor  # number of non-pad target tokens (0-dim long)
    n_sentences: Tensor  # number of rows with at least one non-pad token (0-dim long)


# Logits at or below this mark ids the model can never produce (see _smoothed_over_possible).
IMPOSSIBLE_LOGIT = -1e30


class LabelSmoothedCrossEntropy(nn.Module):
    """Cross-entropy with label smoothing over (batch, tgt_len, vocab) logits, ignoring PAD targets."""

    def __init__(
        self,
        label_smoothing: float = 0.0,
        ignore_index: int = PAD_ID,
        reduction: Reduction = "token",
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(
                f"label_smoothing must be in [0, 1), got {label_smoothing}; 0.1 is the usual value."
            )
        if reduction not in ("token", "sentence"):
            raise ValueError(
                f"reduction must be 'token' (mean over non-pad tokens) or 'sentence' (per-sentence "
                f"sum, mean over sentences), got {reduction!r}."
            )
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index
        self.reduction: Reduction = reduction

    def extra_repr(self) -> str:
        return (
            f"label_smoothing={self.label_smoothing}, ignore_index={self.ignore_index}, "
            f"reduction={self.reduction!r}"
        )

    def _check(self, logits: Tensor, target: Tensor) -> None:
        if logits.dim() != 3 or target.dim() != 2 or logits.shape[:2] != target.shape:
            raise ValueError(
                f"LabelSmoothedCrossEntropy expects logits (batch, tgt_len, vocab) and target "
                f"(batch, tgt_len); got logits {tuple(logits.shape)} and target "
                f"{tuple(target.shape)}. Align them first: logits = model(src, tgt[:, :-1]), "
                "target = tgt[:, 1:]."
            )
        if target.dtype != torch.long:
            raise TypeError(f"target must be a long tensor of token ids, got {target.dtype}.")

    def token_losses(self, logits: Tensor, target: Tensor) -> Tensor:
        """Per-token label-smoothed losses (batch, tgt_len), exactly 0 at PAD targets."""
        self._check(logits, target)
        batch, tgt_len, vocab = logits.shape
        if self.label_smoothing > 0.0 and bool((logits <= IMPOSSIBLE_LOGIT).any()):
            return self._smoothed_over_possible(logits, target)
        losses = F.cross_entropy(
            logits.reshape(batch * tgt_len, vocab),  # (batch * tgt_len, vocab)
            target.reshape(batch * tgt_len),
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            reduction="none",
        )
        return losses.view(batch, tgt_len)

    def _smoothed_over_possible(self, logits: Tensor, target: Tensor) -> Tensor:
        """Per-token losses whose smoothing mass goes to the possible ids only (batch, tgt_len).

        A model may mark ids it can never produce with a logit at the dtype's minimum (a Hugging
        Face model's aliased special ids, treadmill/hf/ids.py). F.cross_entropy would give them
        eps / vocab of the target mass and a loss near 1e37; here they get none, which is the
        smoothing of the model's own vocabulary.
        """
        log_probs = logits.float().log_softmax(dim=-1)  # (batch, tgt_len, vocab)
        possible = logits > IMPOSSIBLE_LOGIT
        safe_target = target.clamp(min=0).unsqueeze(-1)
        nll = -log_probs.gather(-1, safe_target).squeeze(-1)  # (batch, tgt_len)
        smooth = -(log_probs.masked_fill(~possible, 0.0)).sum(-1) / possible.sum(-1).clamp(min=1)
        eps = self.label_smoothing
        losses = (1.0 - eps) * nll + eps * smooth
        return losses.masked_fill(target == self.ignore_index, 0.0)

    def loss_and_count(self, logits: Tensor, target: Tensor) -> LossOutput:
        """Return summed smoothed loss, summed NLL and the token/sentence counts of a batch."""
        losses = self.token_losses(logits, target)  # (batch, tgt_len)
        loss_sum = losses.sum()
        if self.label_smoothing == 0.0:
            nll_sum = loss_sum.detach()
        else:
            # A second, gradient-free pass: the smoothed loss is not the likelihood.
            with torch.no_grad():
                batch, tgt_len, vocab = logits.shape
                nll_sum = F.cross_entropy(
                    logits.detach().reshape(batch * tgt_len, vocab),
                    target.reshape(batch * tgt_len),
                    ignore_index=self.ignore_index,
                    reduction="sum",
                )
        not_pad = target != self.ignore_index  # (batch, tgt_len)
        return LossOutput(loss_sum, nll_sum, not_pad.sum(), not_pad.any(dim=1).sum())

    def normalizer(self, output: LossOutput) -> Tensor:
        """The count `loss_sum` is divided by under this reduction (tokens or sentences)."""
        return output.n_tokens if self.reduction == "token" else output.n_sentences

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Reduced loss: mean over non-pad tokens ("token") or over sentences ("sentence")."""
        output = self.loss_and_count(logits, target)
        # clamp: an all-padding batch gives a zero loss (with a graph), not 0/0 = nan.
        return output.loss_sum / self.normalizer(output).clamp(min=1)
