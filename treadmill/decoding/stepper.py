"""ModelStepper: drives any protocol model (docs/model_protocol.md) one token per row per step.

The searches never touch the model directly. They ask the stepper for next-token log-probabilities,
append the tokens they chose, and select rows (to expand sources to beams, reorder beams, or drop
finished rows). Because batch is dimension 0 of every tensor in `memory` and in the cache, one
`index_select(0, rows)` over the whole structure does all three.

A model may define `select_cache(cache, rows, sources)` to do that selection its own way
(TransformerSeq2Seq and GPT defer the self-attention reordering to the next step's append,
treadmill.nn.transformer.select_layer_caches); `sources` says which memory rows the cross-attention
entries keep, None = all, unchanged.

Beam search repeats every row K times with `repeat_rows(K, share_sources=True)`. A model whose
class sets `accepts_grouped_memory = True` (TransformerSeq2Seq) then keeps one row per source in
`memory`, the source mask and the cross-attention cache, and its `decode` reads rows
i*K .. i*K+K-1 against source i; other models get memory repeated K times, as before.
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
        # Rows per row of `memory` / `src_padding_mask` / cross cache: K after a shared repeat.
        self.group = 1

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
        depend on the source alone, so they are left as they are instead of copied. With grouped
        memory (`group` > 1) `rows` must keep whole groups: rows[j*group .. j*group+group-1]
        all come from one old source, whose memory row becomes row j.
        """

        def pick(t: Tensor) -> Tensor:
            return t.index_select(0, rows)

        sources: Tensor | None = None  # memory rows to keep; None: memory stays as it is
        if not same_sources:
            sources = rows if self.group == 1 else rows.view(-1, self.group)[:, 0] // self.group

            def source_pick(t: Tensor) -> Tensor:
                return t.index_select(0, sources)

            self.memory = map_tensors(source_pick, self.memory)
            if self.src_padding_mask is not None:
                self.src_padding_mask = source_pick(self.src_padding_mask)
        self.tokens = pick(self.tokens)
        select_cache = getattr(self.model, "select_cache", None)
        if select_cache is not None and self.cache is not None:
            self.cache = select_cache(self.cache, rows, sources)
        else:
            self.cache = _select_cache(self.cache, pick, None if sources is None else source_pick)
        if self.tgt_padding_mask is not None:
            self.tgt_padding_mask = pick(self.tgt_padding_mask)

    def repeat_rows(self, n: int, share_sources: bool = False) -> None:
        """Repeat each row n times in place (row i -> rows i*n .. i*n+n-1), e.g. for beams.

        `share_sources` (beam search, whose beams never leave their source): with a model that
        accepts grouped memory, memory and cross cache stay one row per source (`group` = n).
        """
        if n <= 1:
            return
        index = torch.arange(self.rows, device=self.tokens.device).repeat_interleave(n)
        grouped = (
            share_sources
            and self.group == 1
            and self.memory is not None
            and getattr(self.model, "accepts_grouped_memory", False)
        )
        self.select(index, same_sources=grouped)
        if grouped:
            self.group = n


def _select_cache(cache: Any, pick: Any, cross_pick: Any) -> Any:
    """`pick` applied to every tensor of the cache, `cross_pick` to entries under a "cross" key
    (None: those stay as they are)."""
    if isinstance(cache, dict):
        return type(cache)(
            (k, _cross(v, cross_pick) if k == "cross" else _select_cache(v, pick, cross_pick))
            for k, v in cache.items()
        )
    if isinstance(cache, list):
        return [_select_cache(v, pick, cross_pick) for v in cache]
    # A plain tuple (an ensemble's member caches) is walked like a list; namedtuples are leaves.
    if isinstance(cache, tuple) and not hasattr(cache, "_fields"):
        return tuple(_select_cache(v, pick, cross_pick) for v in cache)
    return map_tensors(pick, cache)


def _cross(entry: Any, cross_pick: Any) -> Any:
    return entry if cross_pick is None else map_tensors(cross_pick, entry)


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
