"""ModelStepper: drives any protocol model (docs/model_protocol.md) one token per row per step.

The searches never touch the model directly. They ask the stepper for next-token log-probabilities,
append the tokens they chose, and select rows (to expand sources to beams, reorder beams, or drop
finished rows). Because batch is dimension 0 of every tensor in `memory` and in the cache, one
`index_select(0, rows)` over the whole structure does all three.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from treadmill.decoding.config import GenerationConfig
from treadmill.decoding.logits import RowLimits, apply_constraints
from treadmill.models.protocol import map_tensors


class ModelStepper:
    """Holds tokens, memory, masks and cache for a batch of rows and runs `model.decode` per step.

    `tokens` (rows, T) is the whole prefix fed to the model: BOS for encoder-decoder models, the
    left-padded prompt for decoder-only ones; generated tokens start at column `gen_start`.
    """

    def __init__(
        self,
        model: nn.Module,
        tokens: Tensor,
        *,
        memory: Any = None,
        src_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
        use_cache: bool = True,
        return_attention: bool = False,
    ) -> None:
        self.model: Any = model  # a protocol model; typed Any as nn.Module hides `decode`
        self.tokens = tokens  # (rows, T)
        self.gen_start = tokens.size(1)
        self.memory = memory
        self.src_padding_mask = src_padding_mask  # (rows, src_len) True = pad
        self.tgt_padding_mask = tgt_padding_mask  # (rows, T) True = left pad (decoder-only)
        self.use_cache = use_cache
        self.return_attention = return_attention
        self.cache: Any = None

    @property
    def rows(self) -> int:
        """Number of rows (sources x beams or samples) currently decoded."""
        return self.tokens.size(0)

    @property
    def generated(self) -> Tensor:
        """Tokens chosen so far, (rows, steps)."""
        return self.tokens[:, self.gen_start :]

    def step(self) -> tuple[Tensor, Tensor | None]:
        """Next-token log-probabilities (rows, vocab) float32, and attention (rows, src_len) or None."""
        kwargs: dict[str, Any] = {"cache": self.cache if self.use_cache else None}
        if self.return_attention:
            kwargs["return_attention"] = True
        if self.tgt_padding_mask is not None:
            kwargs["tgt_padding_mask"] = self.tgt_padding_mask
        out = self.model.decode(self.tokens, self.memory, self.src_padding_mask, **kwargs)
        logits, cache = out[0], out[1]
        if logits.dim() != 3 or logits.size(0) != self.rows:
            raise ValueError(
                f"{type(self.model).__name__}.decode returned logits of shape "
                f"{tuple(logits.shape)}; expected (rows={self.rows}, new_positions, vocab)"
            )
        if self.use_cache:
            self.cache = cache
        # float32 before the softmax so bf16/fp16 models still rank and score tokens precisely.
        log_probs = logits[:, -1].float().log_softmax(dim=-1)  # (rows, vocab)
        attention = out[2] if self.return_attention and len(out) > 2 else None
        if attention is not None:
            attention = attention[:, -1].float()  # (rows, src_len)
        return log_probs, attention

    def append(self, new_tokens: Tensor) -> None:
        """Append one token per row, (rows,)."""
        self.tokens = torch.cat([self.tokens, new_tokens[:, None]], dim=1)
        if self.tgt_padding_mask is not None:
            real = torch.zeros_like(self.tgt_padding_mask[:, :1])
            self.tgt_padding_mask = torch.cat([self.tgt_padding_mask, real], dim=1)

    def select(self, rows: Tensor, same_sources: bool = False) -> None:
        """Keep / repeat / reorder rows: row i becomes old row rows[i] (memory and cache too).

        `same_sources` promises that every row keeps its source (beam search reordering beams
        within each example): memory, the source mask and cache entries under a "cross" key
        depend on the source alone, so they are left as they are instead of copied.
        """

        def pick(t: Tensor) -> Tensor:
            return t.index_select(0, rows)

        self.tokens = pick(self.tokens)
        self.cache = _select_cache(self.cache, pick, skip_cross=same_sources)
        if not same_sources:
            self.memory = map_tensors(pick, self.memory)
            if self.src_padding_mask is not None:
                self.src_padding_mask = pick(self.src_padding_mask)
        if self.tgt_padding_mask is not None:
            self.tgt_padding_mask = pick(self.tgt_padding_mask)

    def repeat_rows(self, n: int) -> None:
        """Repeat each row n times in place (row i -> rows i*n .. i*n+n-1), e.g. for beams."""
        if n > 1:
            index = torch.arange(self.rows, device=self.tokens.device)
            self.select(index.repeat_interleave(n))


def _select_cache(cache: Any, pick: Any, skip_cross: bool) -> Any:
    """`pick` applied to every tensor of the cache; with `skip_cross`, "cross" entries stay."""
    if not skip_cross:
        return map_tensors(pick, cache)
    if isinstance(cache, dict):
        return type(cache)((k, v if k == "cross" else _select_cache(v, pick, True)) for k, v in cache.items())
    if isinstance(cache, list):
        return [_select_cache(v, pick, True) for v in cache]
    # A plain tuple (an ensemble's member caches) is walked like a list; namedtuples are leaves.
    if isinstance(cache, tuple) and not hasattr(cache, "_fields"):
        return tuple(_select_cache(v, pick, True) for v in cache)
    return map_tensors(pick, cache)


def constrained_step(
    stepper: ModelStepper, step: int, limits: RowLimits, cfg: GenerationConfig
) -> tuple[Tensor, Tensor, Tensor | None]:
    """One model step: (model log-probs, constrained log-probs, attention), (rows, vocab) each."""
    log_probs, attention = stepper.step()
    constrained = apply_constraints(
        log_probs,
        step,
        stepper.generated,
        limits,
        eos_id=cfg.eos_id,
        never_generate=sorted({cfg.pad_id, cfg.bos_id} - {cfg.eos_id}),
        no_repeat_ngram_size=cfg.no_repeat_ngram_size,
    )
    return log_probs, constrained, attention
