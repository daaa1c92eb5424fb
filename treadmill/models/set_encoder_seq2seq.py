"""SetEncoderSeq2Seq: demonstrations -> latent tokens, query -> tokens, one decoder over both.

Seed 004's demo-set encoder as a protocol model. Axis legend: B batch, S source length, K demos
(the most in the batch), L pair length, N latents, Q query length, T target length, D d_model.

The source is one flat token row (so loaders, `generate` and evaluation need nothing new)::

    x1 > y1 | x2 > y2 | ... ? q            `|` = demo_sep_id, `?` = query_sep_id

    each pair "xi > yi" (B*K, L) -> embed (+ learned pos | RoPE) [-> embedding_norm]
                                  -> pair encoder (pair_layers) -> pool (mean | attention | cls) -> (B, K, D)
    the set (B, K, D), absent demos masked -> LatentQueryEncoder (set_layers, n_latents) -> (B, N, D)
    the query q (B, Q) -> the same embedding and pair encoder, not pooled                 -> (B, Q, D)
    memory = [latents ; query] (B, N + Q, D) -> Transformer decoder -> logits (B, T, V)

The set encoder sees no demo positions, and only the demos present are encoded, so the memory is
invariant to the order of the demonstrations and to padding of the set (tested).

Memory: ``{"outputs": (B, N + Q, D), "padding_mask": (B, N + Q) bool}``. Its positions are not the
source's, so ``decode`` always hides the positions the memory's own mask names; a source mask
given to ``decode`` was already applied by ``encode`` and is accepted for the protocol only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from treadmill.constants import PAD_ID
from treadmill.models._checks import (
    check_choice,
    check_config,
    check_dropout,
    check_positive,
    config_error,
)
from treadmill.models.transformer_seq2seq import (
    embed_tokens,
    init_transformer_weights,
    source_padding_mask,
)
from treadmill.nn.dropout import Dropout
from treadmill.nn.feedforward import ACTIVATIONS
from treadmill.nn.norms import NORM_KINDS, build_norm
from treadmill.nn.pooling import AttentionPooling, LatentQueryEncoder
from treadmill.nn.positional import LearnedPositionalEmbedding, RotaryEmbedding
from treadmill.nn.transformer import (
    Decoder,
    Encoder,
    LayerCache,
    decoder_block,
    encoder_block,
    select_layer_caches,
)

__all__ = ["SetEncoderSeq2Seq", "SetEncoderSeq2SeqConfig", "POOLINGS", "INITS", "split_demos"]

# "tokens": no pooling; the latents attend to every token of every demo (seed 004's "keep more
# tokens per demo"), still without demo positions, so still order-invariant.
POOLINGS = ("mean", "attention", "cls", "tokens")
INITS = ("xavier", "normal", "truncated_normal")
SET_POSITIONALS = ("rope", "learned")


@dataclass
class SetEncoderSeq2SeqConfig:
    """Sizes and options of a SetEncoderSeq2Seq (seed 004's knobs); validated on construction."""

    src_vocab_size: int
    tgt_vocab_size: int
    demo_sep_id: int
    query_sep_id: int
    d_model: int = 64
    n_heads: int = 4
    d_ff: int = 256
    pair_layers: int = 2
    positional: str = "rope"
    pooling: str = "mean"
    set_layers: int = 1
    n_latents: int = 8
    n_decoder_layers: int = 2
    layer_scale_init: float | None = None
    norm_first: bool = False
    norm: str = "layernorm"
    embedding_norm: bool = False
    init: str = "xavier"
    dropout: float = 0.0
    activation: str = "gelu"
    tie_embeddings: bool = True
    max_len: int = 512

    def __post_init__(self) -> None:
        owner = "SetEncoderSeq2SeqConfig"
        check_positive(owner, src_vocab_size=self.src_vocab_size, tgt_vocab_size=self.tgt_vocab_size,
                       d_model=self.d_model, n_heads=self.n_heads, d_ff=self.d_ff, pair_layers=self.pair_layers,
                       set_layers=self.set_layers, n_latents=self.n_latents,
                       n_decoder_layers=self.n_decoder_layers, max_len=self.max_len)
        check_dropout(owner, dropout=self.dropout)
        check_choice(owner, "positional", self.positional, SET_POSITIONALS)
        check_choice(owner, "pooling", self.pooling, POOLINGS)
        check_choice(owner, "norm", self.norm, NORM_KINDS)
        check_choice(owner, "init", self.init, INITS)
        check_choice(owner, "activation", self.activation, ACTIVATIONS)
        if self.d_model % self.n_heads:
            raise config_error(f"{owner}: d_model={self.d_model} is not divisible by n_heads={self.n_heads}.", "n_heads")
        if self.positional == "rope" and (self.d_model // self.n_heads) % 2:
            raise config_error(f"{owner}: positional='rope' needs an even head_dim (d_model/n_heads).", "n_heads")
        if self.layer_scale_init is not None and not float(self.layer_scale_init) > 0:
            raise config_error(f"{owner}.layer_scale_init={self.layer_scale_init!r} must be > 0 or null.",
                               "layer_scale_init")
        if min(self.demo_sep_id, self.query_sep_id) < 0:
            raise config_error(f"{owner}: demo_sep_id={self.demo_sep_id} and query_sep_id={self.query_sep_id} "
                               "must be token ids >= 0 (the task supplies them).", "demo_sep_id")


def split_demos(src: Tensor, padding_mask: Tensor, demo_sep_id: int, query_sep_id: int
                ) -> tuple[Tensor, Tensor, Tensor]:
    """Cut flat sources (B, S) into demos (B, K, L) with presence (B, K) and queries (B, Q), PAD-filled.

    Demo i of a row is the tokens before its i-th `demo_sep_id`; the query is everything after the
    first `query_sep_id`. Separators and padding are dropped.
    """
    batch, length = src.shape
    real = ~padding_mask
    is_query_sep = src.eq(query_sep_id) & real
    in_query = (is_query_sep.long().cumsum(1) - is_query_sep.long()) > 0  # after the first `?`
    is_demo_sep = src.eq(demo_sep_id) & real & ~in_query
    keep = real & ~is_query_sep & ~is_demo_sep
    demo_index = is_demo_sep.long().cumsum(1)  # (B, S): which demo a token belongs to
    demo_tok = keep & ~in_query
    query_tok = keep & in_query
    # position inside its segment: count of kept tokens of the same segment before it
    seg = torch.where(in_query, torch.full_like(demo_index, -1), demo_index)
    positions = _rank_within(seg, demo_tok | query_tok)
    k = int(demo_index[demo_tok].max().item()) + 1 if demo_tok.any() else 1
    pair_len = max(int(positions.masked_fill(~demo_tok, -1).max().item()) + 1 if demo_tok.any() else 1, 1)
    query_len = max(int(positions.masked_fill(~query_tok, -1).max().item()) + 1 if query_tok.any() else 1, 1)
    rows = torch.arange(batch, device=src.device)[:, None].expand(batch, length)
    demos = src.new_full((batch, k, pair_len), PAD_ID)
    demos[rows[demo_tok], demo_index[demo_tok], positions[demo_tok]] = src[demo_tok]
    query = src.new_full((batch, query_len), PAD_ID)
    query[rows[query_tok], positions[query_tok]] = src[query_tok]
    present = demos.ne(PAD_ID).any(-1)  # (B, K): a separator with nothing before it is no demo
    return demos, present, query


def _rank_within(segment: Tensor, keep: Tensor) -> Tensor:
    """For each kept position, how many kept positions of the same segment precede it (B, S)."""
    same = segment[:, :, None].eq(segment[:, None, :]) & keep[:, None, :]  # (B, S, S): j same segment as i
    before = torch.ones_like(same[0], dtype=torch.bool).tril(-1)  # j < i
    return (same & before).sum(-1)


class SetEncoderSeq2Seq(nn.Module):
    """Demo-set encoder + query encoder + Transformer decoder, implementing the Seq2SeqModel protocol."""

    is_encoder_decoder = True

    def __init__(self, config: SetEncoderSeq2SeqConfig) -> None:
        super().__init__()
        check_config("SetEncoderSeq2Seq", config, SetEncoderSeq2SeqConfig, "set_encoder_seq2seq")
        self.config = cfg = config
        d = cfg.d_model
        self.embed_scale = math.sqrt(d)
        self.src_embedding = nn.Embedding(cfg.src_vocab_size, d, padding_idx=PAD_ID)
        self.tgt_embedding = nn.Embedding(cfg.tgt_vocab_size, d, padding_idx=PAD_ID)
        learned = cfg.positional == "learned"
        self.src_positions = LearnedPositionalEmbedding(d, cfg.max_len) if learned else None
        self.tgt_positions = LearnedPositionalEmbedding(d, cfg.max_len) if learned else None
        rotary = None if learned else RotaryEmbedding(d // cfg.n_heads, cfg.max_len)
        self.embedding_norm = build_norm(cfg.norm, d) if cfg.embedding_norm else None
        self.dropout = Dropout(cfg.dropout)
        block: dict[str, Any] = dict(dropout=cfg.dropout, activation=cfg.activation, norm_first=cfg.norm_first,
                                     norm=cfg.norm, layer_scale_init=cfg.layer_scale_init, rotary=rotary)
        final = (lambda: build_norm(cfg.norm, d)) if cfg.norm_first else (lambda: None)
        self.pair_encoder = Encoder([encoder_block(d, cfg.n_heads, cfg.d_ff, **block) for _ in range(cfg.pair_layers)],
                                    final())
        self.cls = nn.Parameter(torch.zeros(1, 1, d)) if cfg.pooling == "cls" else None
        self.pool = AttentionPooling(d, cfg.n_heads) if cfg.pooling == "attention" else None
        self.set_encoder = LatentQueryEncoder(d, cfg.n_latents, cfg.n_heads, cfg.set_layers, cfg.d_ff,
                                              cfg.dropout, cfg.activation, cfg.layer_scale_init)
        self.decoder = Decoder([decoder_block(d, cfg.n_heads, cfg.d_ff, **block) for _ in range(cfg.n_decoder_layers)],
                               final())
        self.output_proj = nn.Linear(d, cfg.tgt_vocab_size, bias=False)
        self._init_weights()
        if cfg.tie_embeddings:
            self.output_proj.weight = self.tgt_embedding.weight

    def _init_weights(self) -> None:
        """Linears by `init` (zero biases); embeddings N(0, d_model**-0.5) with a zero PAD row."""
        init_transformer_weights(self, self.config.d_model, self.config.init)
        if self.cls is not None:
            nn.init.normal_(self.cls, std=0.02)

    def _embed(self, tokens: Tensor, embedding: nn.Module, pos: nn.Module | None, start: int) -> Tensor:
        """tokens (B, L) at positions start.. -> dropout([norm](embed * sqrt(D) + pos)) (B, L, D)."""
        return embed_tokens(self, tokens, embedding, pos, start)

    def _encode_tokens(self, tokens: Tensor, prepend_cls: bool) -> tuple[Tensor, Tensor]:
        """tokens (n, L) -> pair-encoder states (n, L[+1], D) and their padding mask."""
        mask = tokens.eq(PAD_ID)
        x = self._embed(tokens, self.src_embedding, self.src_positions, 0)
        if prepend_cls and self.cls is not None:
            x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1)
            mask = torch.cat([mask.new_zeros(mask.shape[0], 1), mask], dim=1)
        return self.pair_encoder(x, padding_mask=mask), mask

    def _pool(self, states: Tensor, mask: Tensor) -> Tensor:
        """(n, L, D) -> (n, D) by the configured pooling."""
        if self.config.pooling == "cls":
            return states[:, 0]
        if self.pool is not None:
            return self.pool(states, mask)  # type: ignore[return-value]
        keep = (~mask).unsqueeze(-1).to(states.dtype)
        return (states * keep).sum(1) / keep.sum(1).clamp(min=1.0)

    def encode_set(self, demos: Tensor, present: Tensor) -> Tensor:
        """demos (B, K, L), present (B, K) -> latents (B, N, D); only present demos are encoded."""
        batch, k, length = demos.shape
        d = self.config.d_model
        dtype = self.src_embedding.weight.dtype
        index = present.nonzero(as_tuple=True)
        if self.config.pooling == "tokens":  # every token of every demo is an element of the set
            tokens = demos.new_zeros((batch, k, length, d), dtype=dtype)
            if present.any():
                states, _ = self._encode_tokens(demos[present], prepend_cls=False)  # (n, L, D)
                tokens = tokens.index_put(index, states.to(dtype))
            absent = demos.eq(PAD_ID) | ~present[..., None]  # (B, K, L)
            return self.set_encoder(tokens.reshape(batch, k * length, d), padding_mask=absent.reshape(batch, -1))
        pooled = demos.new_zeros((batch, k, d), dtype=dtype)
        if present.any():
            states, mask = self._encode_tokens(demos[present], prepend_cls=True)  # (n, L, D)
            pooled = pooled.index_put(index, self._pool(states, mask).to(dtype))
        return self.set_encoder(pooled, padding_mask=~present)  # (B, N, D)

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> dict[str, Tensor]:
        """src (B, S) flat demos and query -> {"outputs" (B, N + Q, D), "padding_mask" (B, N + Q)}."""
        cfg = self.config
        demos, present, query = split_demos(src, source_padding_mask(src, src_padding_mask),
                                            cfg.demo_sep_id, cfg.query_sep_id)
        latents = self.encode_set(demos, present)
        query_states, query_mask = self._encode_tokens(query, prepend_cls=False)  # (B, Q, D)
        outputs = torch.cat([latents, query_states], dim=1)
        mask = torch.cat([query_mask.new_zeros(latents.shape[:2]), query_mask], dim=1)
        return {"outputs": outputs, "padding_mask": mask}

    def select_cache(
        self, cache: list[LayerCache], rows: Tensor, sources: Tensor | None
    ) -> list[LayerCache] | None:
        """The cache for new batch rows `rows` (beam search); see ``select_layer_caches``."""
        return select_layer_caches(cache, rows, sources)

    def decode(
        self,
        tgt_prefix: Tensor,
        memory: dict[str, Tensor],
        src_padding_mask: Tensor | None = None,
        cache: list[LayerCache] | None = None,
        return_attention: bool = False,
    ) -> tuple[Any, ...]:
        """Logits (B, T - k, V) for the prefix (B, T) given a cache of k positions (see the protocol)."""
        past = 0 if cache is None else cache[0]["self"]["k"].shape[2]
        if past >= tgt_prefix.shape[1]:
            raise ValueError(f"SetEncoderSeq2Seq.decode: the cache already holds {past} positions but tgt_prefix "
                             f"has {tgt_prefix.shape[1]}; pass the whole prefix including the new token.")
        x = self._embed(tgt_prefix[:, past:], self.tgt_embedding, self.tgt_positions, past)
        out = self.decoder(x, memory["outputs"], memory_padding_mask=memory["padding_mask"], is_causal=True,
                           cache=cache, use_cache=True, need_weights=return_attention)
        logits = self.output_proj(out.hidden)
        return (logits, out.cache, out.weights) if return_attention else (logits, out.cache)

    def forward(
        self,
        src: Tensor,
        tgt_in: Tensor,
        src_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Teacher forcing: logits (B, T, V) for tgt_in (B, T) starting with BOS."""
        memory = self.encode(src, src_padding_mask)
        x = self._embed(tgt_in, self.tgt_embedding, self.tgt_positions, 0)
        hidden = self.decoder(x, memory["outputs"], memory_padding_mask=memory["padding_mask"], is_causal=True).hidden
        return self.output_proj(hidden)
