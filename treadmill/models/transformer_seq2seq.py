"""TransformerSeq2Seq: the encoder-decoder Transformer of Vaswani et al. (2017), protocol-ready.

Axis legend: B batch, S source length, T target length, D d_model, V vocabulary.

    src (B, S) -> embed*sqrt(D) + pos -> dropout -> Encoder -> memory["outputs"] (B, S, D)
    tgt (B, T) -> embed*sqrt(D) + pos -> dropout -> Decoder(causal, cross to memory) -> logits (B, T, V)

Memory (``encode``): ``{"outputs": (B, S, D), "padding_mask": (B, S) bool}``, the mask encode used
(given, or ``src == PAD`` when None), so that ``decode`` hides the same positions.

Cache (``decode``): a list with one dict per decoder layer, ``{"self": {"k", "v"}, "cross":
{"k", "v"}}``, tensors (B, n_heads, len, head_dim). Cross-attention keys/values are computed at
the first ``decode`` call for a source and reused.
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
from treadmill.nn.dropout import Dropout
from treadmill.nn.feedforward import ACTIVATIONS
from treadmill.nn.norms import NORM_KINDS, build_norm
from treadmill.nn.positional import (
    LearnedPositionalEmbedding,
    RotaryEmbedding,
    SinusoidalPositionalEncoding,
)
from treadmill.nn.transformer import (
    Decoder,
    Encoder,
    LayerCache,
    decoder_block,
    encoder_block,
    select_layer_caches,
)

__all__ = ["TransformerSeq2Seq", "TransformerSeq2SeqConfig", "POSITIONALS", "source_padding_mask", "init_transformer_weights",
           "embed_tokens"]

POSITIONALS = ("sinusoidal", "learned", "rope")


@dataclass
class TransformerSeq2SeqConfig:
    """Sizes and options of a TransformerSeq2Seq; validated on construction."""

    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 256
    n_heads: int = 4
    n_encoder_layers: int = 3
    n_decoder_layers: int = 3
    d_ff: int = 1024
    dropout: float = 0.1
    norm_first: bool = True
    positional: str = "sinusoidal"
    tie_embeddings: bool = True
    share_vocab: bool = False
    max_len: int = 1024
    activation: str = "relu"
    # Vaswani et al. drop only residual branches and embeddings; torch.nn.Transformer also drops
    # attention weights and the FFN's hidden activation (set these to `dropout` to match it).
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    layer_scale_init: float | None = None
    # "rmsnorm" for every norm; embedding_norm adds one after embedding + position (seed 003's embed_ln)
    norm: str = "layernorm"
    embedding_norm: bool = False

    def __post_init__(self) -> None:
        owner = "TransformerSeq2SeqConfig"
        check_positive(
            owner,
            src_vocab_size=self.src_vocab_size,
            tgt_vocab_size=self.tgt_vocab_size,
            d_model=self.d_model,
            n_heads=self.n_heads,
            n_encoder_layers=self.n_encoder_layers,
            n_decoder_layers=self.n_decoder_layers,
            d_ff=self.d_ff,
            max_len=self.max_len,
        )
        check_dropout(
            owner,
            dropout=self.dropout,
            attention_dropout=self.attention_dropout,
            activation_dropout=self.activation_dropout,
        )
        check_choice(owner, "positional", self.positional, POSITIONALS)
        check_choice(owner, "activation", self.activation, ACTIVATIONS)
        check_choice(owner, "norm", self.norm, NORM_KINDS)
        if self.d_model % self.n_heads:
            raise config_error(
                f"{owner}: d_model={self.d_model} is not divisible by n_heads={self.n_heads}.", "n_heads")
        if self.positional == "rope" and (self.d_model // self.n_heads) % 2:
            raise config_error(
                f"{owner}: positional='rope' needs an even head_dim (d_model/n_heads).", "n_heads")
        if self.positional == "sinusoidal" and self.d_model % 2:
            raise config_error(f"{owner}: positional='sinusoidal' needs an even d_model.", "d_model")
        if self.share_vocab and self.src_vocab_size != self.tgt_vocab_size:
            raise config_error(
                f"{owner}: share_vocab=True needs src_vocab_size == tgt_vocab_size; got "
                f"{self.src_vocab_size} and {self.tgt_vocab_size}. Use one joint vocabulary or "
                f"share_vocab=False.", "share_vocab")


def _positional(kind: str, d_model: int, max_len: int) -> nn.Module | None:
    if kind == "sinusoidal":
        return SinusoidalPositionalEncoding(d_model, max_len)
    if kind == "learned":
        return LearnedPositionalEmbedding(d_model, max_len)
    return None  # rope: applied inside self-attention


class TransformerSeq2Seq(nn.Module):
    """Encoder-decoder Transformer implementing the Seq2SeqModel protocol."""

    is_encoder_decoder = True
    # decode() takes memory with E rows for a prefix of E x g rows (cross-attention's grouped
    # queries): beam search then neither copies the source K times nor projects it K times.
    accepts_grouped_memory = True

    def __init__(self, config: TransformerSeq2SeqConfig) -> None:
        super().__init__()
        check_config("TransformerSeq2Seq", config, TransformerSeq2SeqConfig, "transformer_seq2seq")
        self.config = cfg = config
        d_model, n_heads, norm_first = cfg.d_model, cfg.n_heads, cfg.norm_first
        self.embed_scale = math.sqrt(d_model)
        self.src_embedding = nn.Embedding(cfg.src_vocab_size, d_model, padding_idx=PAD_ID)
        self.tgt_embedding = (
            self.src_embedding
            if cfg.share_vocab
            else nn.Embedding(cfg.tgt_vocab_size, d_model, padding_idx=PAD_ID)
        )
        self.src_positions = _positional(cfg.positional, d_model, cfg.max_len)
        self.tgt_positions = _positional(cfg.positional, d_model, cfg.max_len)
        rotary = RotaryEmbedding(d_model // n_heads, cfg.max_len) if cfg.positional == "rope" else None
        self.dropout = Dropout(cfg.dropout)
        block_args: dict[str, Any] = dict(
            dropout=cfg.dropout,
            activation=cfg.activation,
            norm_first=norm_first,
            norm=cfg.norm,
            layer_scale_init=cfg.layer_scale_init,
            attention_dropout=cfg.attention_dropout,
            activation_dropout=cfg.activation_dropout,
            rotary=rotary,
        )
        self.encoder = Encoder(
            [encoder_block(d_model, n_heads, cfg.d_ff, **block_args) for _ in range(cfg.n_encoder_layers)],
            build_norm(cfg.norm, d_model) if norm_first else None,
        )
        self.decoder = Decoder(
            [decoder_block(d_model, n_heads, cfg.d_ff, **block_args) for _ in range(cfg.n_decoder_layers)],
            build_norm(cfg.norm, d_model) if norm_first else None,
        )
        self.embedding_norm = build_norm(cfg.norm, d_model) if cfg.embedding_norm else None
        self.output_proj = nn.Linear(d_model, cfg.tgt_vocab_size, bias=False)
        self._init_weights()
        if cfg.tie_embeddings:
            self.output_proj.weight = self.tgt_embedding.weight

    def _init_weights(self) -> None:
        """Xavier-uniform linears (zero biases); embeddings N(0, d_model**-0.5) with a zero PAD row."""
        init_transformer_weights(self, self.config.d_model)

    def _embed(
        self, tokens: Tensor, embedding: nn.Module, pos: nn.Module | None, start: int
    ) -> Tensor:
        """tokens (B, L) at positions start.. -> dropout([norm](embed * sqrt(D) + pos)) (B, L, D)."""
        return embed_tokens(self, tokens, embedding, pos, start)

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> dict[str, Tensor]:
        """src (B, S), mask (B, S) True = pad (None: src == PAD) -> {"outputs" (B, S, D), "padding_mask"}."""
        mask = source_padding_mask(src, src_padding_mask)
        x = self._embed(src, self.src_embedding, self.src_positions, 0)
        # The mask travels with the memory so that decode(..., src_padding_mask=None) still hides
        # the PAD positions encode hid (decode never sees the source tokens).
        return {"outputs": self.encoder(x, padding_mask=mask), "padding_mask": mask}

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
        """Logits (B, T - k, V) for the prefix (B, T) given a cache of k positions; see the protocol.

        ``src_padding_mask`` None uses the mask ``encode`` stored in ``memory``.
        """
        past = 0 if cache is None else cache[0]["self"]["k"].shape[2]
        if past >= tgt_prefix.shape[1]:
            raise ValueError(
                f"TransformerSeq2Seq.decode: the cache already holds {past} positions but "
                f"tgt_prefix has {tgt_prefix.shape[1]}; pass the whole prefix including the new token."
            )
        mask = memory["padding_mask"] if src_padding_mask is None else src_padding_mask
        x = self._embed(tgt_prefix[:, past:], self.tgt_embedding, self.tgt_positions, past)
        out = self.decoder(
            x,
            memory["outputs"],
            memory_padding_mask=mask,
            is_causal=True,
            cache=cache,
            use_cache=True,
            need_weights=return_attention,
        )
        logits = self.output_proj(out.hidden)
        return (logits, out.cache, out.weights) if return_attention else (logits, out.cache)

    def forward(
        self,
        src: Tensor,
        tgt_in: Tensor,
        src_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Teacher forcing: logits (B, T, V) for tgt_in (B, T) starting with BOS.

        ``src_padding_mask`` None masks the source's PAD tokens. ``tgt_padding_mask`` is accepted
        for the protocol but not needed: targets are right-padded and the causal mask already keeps
        pads from reaching real positions.
        """
        memory = self.encode(src, src_padding_mask)
        x = self._embed(tgt_in, self.tgt_embedding, self.tgt_positions, 0)
        hidden = self.decoder(
            x, memory["outputs"], memory_padding_mask=memory["padding_mask"], is_causal=True
        ).hidden
        return self.output_proj(hidden)


def source_padding_mask(src: Tensor, src_padding_mask: Tensor | None) -> Tensor:
    """The mask given, or (B, S) True where src is PAD: the protocol's meaning of None."""
    return src.eq(PAD_ID) if src_padding_mask is None else src_padding_mask


def init_transformer_weights(model: nn.Module, d_model: int, linear_init: str = "xavier") -> None:
    """Linears by `linear_init` (xavier | normal | truncated_normal; zero biases); embeddings
    N(0, d_model**-0.5) with a zero PAD row. Modules are visited in creation order, so seeded
    weights are reproducible."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            if linear_init == "xavier":
                nn.init.xavier_uniform_(module.weight)
            elif linear_init == "normal":
                nn.init.normal_(module.weight, std=0.02)
            else:
                nn.init.trunc_normal_(module.weight, std=0.02, a=-0.04, b=0.04)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=d_model**-0.5)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()


def embed_tokens(model: Any, tokens: Tensor, embedding: nn.Module, pos: nn.Module | None, start: int) -> Tensor:
    """tokens (B, L) at positions start.. -> dropout([norm](embed * sqrt(D) + pos)), with the model's
    `config.max_len`, `embed_scale`, `embedding_norm` and `dropout`."""
    end = start + tokens.shape[1]
    if end > model.config.max_len:
        raise ValueError(
            f"{type(model).__name__}: sequence length {end} > max_len={model.config.max_len}; "
            "build the model with a larger max_len or truncate the input."
        )
    x = embedding(tokens) * model.embed_scale
    if pos is not None:
        x = x + pos(torch.arange(start, end, device=tokens.device))
    if model.embedding_norm is not None:
        x = model.embedding_norm(x)
    return model.dropout(x)
