"""GPT: a decoder-only Transformer language model (Radford et al., 2019), protocol-ready.

Axis legend: B batch, T new positions, S all positions so far (cache + new), D d_model, V vocab.

    tokens (B, T) -> embed + pos -> dropout -> pre-norm causal blocks -> LayerNorm -> logits (B, T, V)

* GPT-2 initialisation: N(0, 0.02) weights, zero biases, residual output projections scaled by
  1/sqrt(2 * n_layers); the LM head is tied to the token embedding by default.
* Left-padded prompts: ``tgt_padding_mask`` (B, S) True at the left pads; pads are never
  attended to and a token's position id counts only the real tokens before it.
* Prefix-LM (``prefix_len`` = n > 0): the first n real tokens attend to each other both ways,
  the rest causally (seed 003's hybrid mask). Cached decoding needs the first call to cover the
  whole prefix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from treadmill.models._checks import check_choice, check_dropout, check_positive, config_error
from treadmill.models.transformer_seq2seq import POSITIONALS
from treadmill.nn.dropout import Dropout
from treadmill.nn.feedforward import ACTIVATIONS, FeedForward
from treadmill.nn.masks import causal_mask, positions_from_padding_mask
from treadmill.nn.norms import NORM_KINDS, build_norm
from treadmill.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)
from treadmill.nn.transformer import (
    Decoder,
    DecoderBlock,
    LayerCache,
    decoder_block,
    select_layer_caches,
)

__all__ = ["GPT", "GPTConfig"]


@dataclass
class GPTConfig:
    """Sizes and options of a GPT; validated on construction."""

    vocab_size: int
    d_model: int = 256
    n_heads: int = 4
    n_layers: int = 4
    d_ff: int = 1024
    max_len: int = 1024
    dropout: float = 0.1
    positional: str = "learned"
    tie_embeddings: bool = True
    prefix_len: int = 0
    activation: str = "gelu"
    # "rmsnorm" for every norm; embedding_norm adds one after embedding + position (seed 003's embed_ln)
    norm: str = "layernorm"
    embedding_norm: bool = False

    def __post_init__(self) -> None:
        owner = "GPTConfig"
        check_positive(
            owner,
            vocab_size=self.vocab_size,
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_layers=self.n_layers,
            d_ff=self.d_ff,
            max_len=self.max_len,
        )
        check_dropout(owner, dropout=self.dropout)
        check_choice(owner, "positional", self.positional, POSITIONALS)
        check_choice(owner, "activation", self.activation, ACTIVATIONS)
        check_choice(owner, "norm", self.norm, NORM_KINDS)
        if self.d_model % self.n_heads:
            raise config_error(
                f"{owner}: d_model={self.d_model} is not divisible by n_heads={self.n_heads}.", "n_heads")
        if self.positional == "rope" and (self.d_model // self.n_heads) % 2:
            raise config_error(
                f"{owner}: positional='rope' needs an even head_dim (d_model/n_heads).", "n_heads")
        if not 0 <= self.prefix_len <= self.max_len:
            raise config_error(
                f"{owner}.prefix_len={self.prefix_len} must be in [0, max_len={self.max_len}].", "prefix_len")


class GPT(nn.Module):
    """Decoder-only Transformer implementing the DecoderOnlyModel protocol."""

    is_encoder_decoder = False

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = cfg = config
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.positions: nn.Module | None = None
        if cfg.positional == "learned":
            self.positions = LearnedPositionalEmbedding(cfg.d_model, cfg.max_len)
        elif cfg.positional == "sinusoidal":
            self.positions = SinusoidalPositionalEncoding(cfg.d_model, cfg.max_len)
        rotary = (
            RotaryEmbedding(cfg.d_model // cfg.n_heads, cfg.max_len)
            if cfg.positional == "rope"
            else None
        )
        self.dropout = Dropout(cfg.dropout)
        blocks = [
            decoder_block(
                cfg.d_model,
                cfg.n_heads,
                cfg.d_ff,
                dropout=cfg.dropout,
                activation=cfg.activation,
                norm_first=True,
                norm=cfg.norm,
                rotary=rotary,
                cross_attention=False,
            )
            for _ in range(cfg.n_layers)
        ]
        self.decoder = Decoder(blocks, build_norm(cfg.norm, cfg.d_model))
        self.embedding_norm = build_norm(cfg.norm, cfg.d_model) if cfg.embedding_norm else None
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self._init_weights()
        if cfg.tie_embeddings:
            self.lm_head.weight = self.token_embedding.weight

    def _init_weights(self) -> None:
        """GPT-2 init: N(0, 0.02), zero biases, residual projections N(0, 0.02 / sqrt(2 n_layers))."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layers)
        for block in self.decoder.blocks:
            assert isinstance(block, DecoderBlock) and isinstance(block.feed_forward, FeedForward)
            nn.init.normal_(block.self_attn.out_proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(block.feed_forward.w2.weight, mean=0.0, std=residual_std)

    def _attention_mask(
        self, positions: Tensor, past: int, padding: Tensor | None, prefix_len: int
    ) -> Tensor | None:
        """Bool (B, T, S), True = may attend; None when plain causal attention suffices."""
        if padding is None and prefix_len == 0:
            return None
        new, total = positions.shape[-1] - past, positions.shape[-1]
        allowed = causal_mask(new, total, device=positions.device)  # (T, S)
        if prefix_len > 0:
            pos = positions if positions.dim() == 2 else positions.unsqueeze(0)  # (B|1, S)
            in_prefix = pos < prefix_len
            allowed = allowed | (in_prefix[:, past:, None] & in_prefix[:, None, :])  # (B|1, T, S)
        if padding is not None:
            allowed = allowed & ~padding[:, None, :]  # pads are never keys
        return allowed if allowed.dim() == 3 else allowed.unsqueeze(0)

    def _run(
        self,
        tokens: Tensor,
        past: int,
        cache: list[LayerCache] | None,
        padding: Tensor | None,
        prefix_len: int,
        use_cache: bool,
        need_weights: bool,
    ) -> tuple[Tensor, list[LayerCache] | None, Tensor | None]:
        """Logits for tokens[:, past:] given the cache; padding covers all of tokens (B, S)."""
        out = self._hidden(tokens, past, cache, padding, prefix_len, use_cache, need_weights)
        return self.lm_head(out.hidden), out.cache, out.weights

    def _hidden(
        self,
        tokens: Tensor,
        past: int,
        cache: list[LayerCache] | None,
        padding: Tensor | None,
        prefix_len: int,
        use_cache: bool,
        need_weights: bool,
    ) -> Any:
        """The decoder's output (final-norm hidden states, caches, weights) for tokens[:, past:]."""
        total = tokens.shape[1]
        if total > self.config.max_len:
            raise ValueError(
                f"GPT: sequence length {total} > max_len={self.config.max_len}; build with a larger "
                f"max_len or truncate the prompt."
            )
        if padding is not None and padding.shape != tokens.shape:
            raise ValueError(
                f"GPT: tgt_padding_mask shape {tuple(padding.shape)} != tokens shape "
                f"{tuple(tokens.shape)}; with a cache it must cover the whole prefix."
            )
        if padding is not None:
            positions = positions_from_padding_mask(padding)  # (B, S)
        else:
            positions = torch.arange(total, device=tokens.device)  # (S,)
        attn_mask = self._attention_mask(positions, past, padding, prefix_len)
        new_positions = positions[..., past:]
        x = self.token_embedding(tokens[:, past:])
        if self.positions is not None:
            x = x + self.positions(new_positions)
        if self.embedding_norm is not None:
            x = self.embedding_norm(x)
        return self.decoder(
            self.dropout(x),
            self_attn_mask=attn_mask,
            is_causal=attn_mask is None,
            cache=cache,
            use_cache=use_cache,
            positions=new_positions,
            need_weights=need_weights,
        )

    def hidden_states(self, tokens: Tensor, tgt_padding_mask: Tensor | None = None) -> Tensor:
        """Final-norm hidden states (B, T, D) of tokens (B, T), what the LM head reads (classifiers pool them)."""
        return self._hidden(tokens, 0, None, tgt_padding_mask, self.config.prefix_len, False, False).hidden

    def forward(
        self, tokens: Tensor, tgt_padding_mask: Tensor | None = None, prefix_len: int | None = None
    ) -> Tensor:
        """Logits (B, T, V) for tokens (B, T); prefix_len None uses the config's."""
        n = self.config.prefix_len if prefix_len is None else prefix_len
        return self._run(tokens, 0, None, tgt_padding_mask, n, False, False)[0]

    def select_cache(
        self, cache: list[LayerCache], rows: Tensor, sources: Tensor | None
    ) -> list[LayerCache] | None:
        """The cache for new batch rows `rows` (beam search); see ``select_layer_caches``."""
        return select_layer_caches(cache, rows, sources)

    def decode(
        self,
        tgt_prefix: Tensor,
        memory: Any = None,
        src_padding_mask: Tensor | None = None,
        cache: list[LayerCache] | None = None,
        return_attention: bool = False,
        tgt_padding_mask: Tensor | None = None,
    ) -> tuple[Any, ...]:
        """Logits (B, T - k, V) for the prefix (B, T) given a cache of k positions; see the protocol.

        ``memory`` and ``src_padding_mask`` are ignored. ``attention`` is the last layer's
        self-attention, head-averaged, (B, T - k, T).
        """
        past = 0 if cache is None else cache[0]["self"]["k"].shape[2]
        if past >= tgt_prefix.shape[1]:
            raise ValueError(
                f"GPT.decode: the cache already holds {past} positions but tgt_prefix has "
                f"{tgt_prefix.shape[1]}; pass the whole prefix including the new token."
            )
        if cache is not None and past < self.config.prefix_len:
            raise ValueError(
                f"GPT.decode: prefix_len={self.config.prefix_len} but the cache holds only {past} "
                f"positions; the first decode call must cover the whole bidirectional prefix."
            )
        logits, new_cache, weights = self._run(
            tgt_prefix,
            past,
            cache,
            tgt_padding_mask,
            self.config.prefix_len,
            True,
            return_attention,
        )
        return (logits, new_cache, weights) if return_attention else (logits, new_cache)
