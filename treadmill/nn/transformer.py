"""Transformer blocks and stacks: EncoderBlock, DecoderBlock, Encoder, Decoder, and their builders.

Blocks receive their sub-modules (attention, feed-forward, norms); ``encoder_block`` /
``decoder_block`` turn numbers into modules. A block is pre-norm or post-norm::

    norm_first=True  (pre-norm):   x = x + drop(scale(sublayer(norm(x))))
    norm_first=False (post-norm):  x = norm(x + drop(scale(sublayer(x))))

``drop`` is the residual dropout of Vaswani et al. (2017), ``scale`` an optional LayerScale.
Masks follow treadmill.nn.masks: padding masks True = pad, attention masks True = may attend.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor, nn

from treadmill.nn.attention import MultiHeadAttention
from treadmill.nn.dropout import Dropout, dropout_add
from treadmill.nn.feedforward import FeedForward
from treadmill.nn.norms import LayerScale, build_norm
from treadmill.nn.positional import RotaryEmbedding

__all__ = [
    "EncoderBlock",
    "DecoderBlock",
    "Encoder",
    "Decoder",
    "DecoderOutput",
    "encoder_block",
    "decoder_block",
    "select_layer_caches",
]

LayerCache = dict[str, dict[str, Tensor]]


def _scale(d_model: int, layer_scale_init: float | None) -> nn.Module:
    return nn.Identity() if layer_scale_init is None else LayerScale(d_model, layer_scale_init)


class _Residual(nn.Module):
    """Norm + residual + dropout + layer-scale around one sub-layer; pre- or post-norm."""

    def __init__(self, norm: nn.Module, dropout: float, norm_first: bool, scale: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.dropout = Dropout(dropout)
        self.norm_first = norm_first
        self.scale = scale

    def pre(self, x: Tensor) -> Tensor:
        """What the sub-layer sees: norm(x) for pre-norm, x for post-norm."""
        return self.norm(x) if self.norm_first else x

    def post(self, x: Tensor, sublayer_out: Tensor) -> Tensor:
        """The residual sum (normalised after, for post-norm)."""
        if not isinstance(self.scale, nn.Identity):
            sublayer_out = self.scale(sublayer_out)
        # dropout_add is x + dropout(sublayer_out) in one output tensor; outside training a plain
        # sum (module calls cost ~10 us each per decode step).
        x = dropout_add(x, sublayer_out, self.dropout.p, self.training)
        return x if self.norm_first else self.norm(x)


class EncoderBlock(nn.Module):
    """Self-attention then feed-forward, each wrapped in a residual."""

    def __init__(
        self,
        self_attn: MultiHeadAttention,
        feed_forward: nn.Module,
        norm_attn: nn.Module,
        norm_ff: nn.Module,
        dropout: float = 0.0,
        norm_first: bool = True,
        layer_scale_init: float | None = None,
    ) -> None:
        super().__init__()
        d_model = self_attn.d_model
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.attn_residual = _Residual(
            norm_attn, dropout, norm_first, _scale(d_model, layer_scale_init)
        )
        self.ff_residual = _Residual(
            norm_ff, dropout, norm_first, _scale(d_model, layer_scale_init)
        )

    def forward(
        self,
        x: Tensor,
        padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        positions: Tensor | None = None,
    ) -> Tensor:
        """x (B, S, D), padding_mask (B, S) True = pad -> (B, S, D)."""
        h = self.attn_residual.pre(x)
        attn = self.self_attn(
            h,
            key_padding_mask=padding_mask,
            attn_mask=attn_mask,
            is_causal=is_causal,
            positions=positions,
        ).output
        x = self.attn_residual.post(x, attn)
        return self.ff_residual.post(x, self.feed_forward(self.ff_residual.pre(x)))


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention to memory (optional: None for GPT), feed-forward."""

    def __init__(
        self,
        self_attn: MultiHeadAttention,
        cross_attn: MultiHeadAttention | None,
        feed_forward: nn.Module,
        norm_self: nn.Module,
        norm_cross: nn.Module | None,
        norm_ff: nn.Module,
        dropout: float = 0.0,
        norm_first: bool = True,
        layer_scale_init: float | None = None,
    ) -> None:
        super().__init__()
        if (cross_attn is None) != (norm_cross is None):
            raise ValueError("DecoderBlock: give both cross_attn and norm_cross, or neither.")
        d_model = self_attn.d_model
        self.self_attn = self_attn
        self.cross_attn = cross_attn
        self.feed_forward = feed_forward
        self.self_residual = _Residual(
            norm_self, dropout, norm_first, _scale(d_model, layer_scale_init)
        )
        self.cross_residual = (
            None
            if norm_cross is None
            else _Residual(norm_cross, dropout, norm_first, _scale(d_model, layer_scale_init))
        )
        self.ff_residual = _Residual(
            norm_ff, dropout, norm_first, _scale(d_model, layer_scale_init)
        )

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        memory_padding_mask: Tensor | None = None,
        self_padding_mask: Tensor | None = None,
        self_attn_mask: Tensor | None = None,
        is_causal: bool = True,
        cache: LayerCache | None = None,
        use_cache: bool = False,
        positions: Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[Tensor, LayerCache | None, Tensor | None]:
        """x (B, T, D) -> (x, layer cache {"self", "cross"} or None, weights (B, T, S) or None).

        The weights are the cross-attention's (self-attention's when there is no cross-attention).
        """
        caching = use_cache or cache is not None
        cache = cache or {}
        h = self.self_residual.pre(x)
        self_out = self.self_attn(
            h,
            key_padding_mask=self_padding_mask,
            attn_mask=self_attn_mask,
            is_causal=is_causal,
            need_weights=need_weights and self.cross_attn is None,
            cache=cache.get("self"),
            use_cache=caching,
            positions=positions,
        )
        x = self.self_residual.post(x, self_out.output)
        new_cache: LayerCache = {"self": self_out.cache} if self_out.cache is not None else {}
        weights = self_out.weights
        if self.cross_attn is not None and self.cross_residual is not None:
            if memory is None:  # also with a cache: memory marks the call as cross-attention
                raise ValueError("DecoderBlock with cross-attention needs memory (B, S, D).")
            cross_out = self.cross_attn(
                self.cross_residual.pre(x),
                memory,
                key_padding_mask=memory_padding_mask,
                need_weights=need_weights,
                cache=cache.get("cross"),
                use_cache=caching,
            )
            x = self.cross_residual.post(x, cross_out.output)
            if cross_out.cache is not None:
                new_cache["cross"] = cross_out.cache
            weights = cross_out.weights
        x = self.ff_residual.post(x, self.feed_forward(self.ff_residual.pre(x)))
        return x, (new_cache if caching else None), weights


class Encoder(nn.Module):
    """A stack of EncoderBlocks, plus a final norm (needed after pre-norm blocks)."""

    def __init__(self, blocks: list[EncoderBlock], final_norm: nn.Module | None = None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = final_norm if final_norm is not None else nn.Identity()

    def forward(
        self,
        x: Tensor,
        padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        positions: Tensor | None = None,
    ) -> Tensor:
        """x (B, S, D), padding_mask (B, S) True = pad -> (B, S, D)."""
        for block in self.blocks:
            x = block(x, padding_mask, attn_mask, is_causal, positions)
        return self.final_norm(x)


class DecoderOutput(NamedTuple):
    """What ``Decoder`` returns: hidden (B, T, D), per-layer caches or None, last layer's weights."""

    hidden: Tensor
    cache: list[LayerCache] | None
    weights: Tensor | None


class Decoder(nn.Module):
    """A stack of DecoderBlocks, plus a final norm (needed after pre-norm blocks)."""

    def __init__(self, blocks: list[DecoderBlock], final_norm: nn.Module | None = None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = final_norm if final_norm is not None else nn.Identity()

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        *,
        memory_padding_mask: Tensor | None = None,
        self_padding_mask: Tensor | None = None,
        self_attn_mask: Tensor | None = None,
        is_causal: bool = True,
        cache: list[LayerCache] | None = None,
        use_cache: bool = False,
        positions: Tensor | None = None,
        need_weights: bool = False,
    ) -> DecoderOutput:
        """x (B, T, D) new positions; cache: one dict per layer from the previous call."""
        new_cache: list[LayerCache] = []
        weights = None
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x, layer_cache, w = block(
                x,
                memory,
                memory_padding_mask=memory_padding_mask,
                self_padding_mask=self_padding_mask,
                self_attn_mask=self_attn_mask,
                is_causal=is_causal,
                cache=None if cache is None else cache[i],
                use_cache=use_cache,
                positions=positions,
                need_weights=need_weights and i == last,
            )
            if layer_cache is not None:
                new_cache.append(layer_cache)
            weights = w if w is not None else weights
        caching = use_cache or cache is not None
        return DecoderOutput(self.final_norm(x), new_cache if caching else None, weights)


def select_layer_caches(
    cache: list[LayerCache] | None, rows: Tensor, sources: Tensor | None
) -> list[LayerCache] | None:
    """Decoder caches for a new batch whose row i is old row rows[i] (beams, dropped rows).

    Self-attention entries keep their tensors and record the order (``"order"``, composed with
    an earlier one), which the next step applies while appending, in one copy. Cross-attention
    entries are taken by ``sources`` (a row per source; None: left as they are).
    """
    if cache is None:
        return None
    selected: list[LayerCache] = []
    for layer in cache:
        entry: LayerCache = {}
        for name, kv in layer.items():
            if name == "cross":
                entry[name] = kv if sources is None else _take(kv, sources)
            else:
                order = kv.get("order")
                entry[name] = {**kv, "order": rows if order is None else order.index_select(0, rows)}
        selected.append(entry)
    return selected


def _take(entry: dict[str, Any], index: Tensor) -> dict[str, Any]:
    return {k: v.index_select(0, index) for k, v in entry.items()}


def encoder_block(
    d_model: int,
    n_heads: int,
    d_ff: int,
    dropout: float = 0.1,
    activation: str = "relu",
    norm_first: bool = True,
    norm: str = "layernorm",
    layer_scale_init: float | None = None,
    attention_dropout: float = 0.0,
    activation_dropout: float = 0.0,
    rotary: RotaryEmbedding | None = None,
    bias: bool = True,
) -> EncoderBlock:
    """An EncoderBlock built from sizes."""
    return EncoderBlock(
        MultiHeadAttention(d_model, n_heads, attention_dropout, bias=bias, rotary=rotary),
        FeedForward(d_model, d_ff, activation, activation_dropout, bias=bias),
        build_norm(norm, d_model),
        build_norm(norm, d_model),
        dropout=dropout,
        norm_first=norm_first,
        layer_scale_init=layer_scale_init,
    )


def decoder_block(
    d_model: int,
    n_heads: int,
    d_ff: int,
    dropout: float = 0.1,
    activation: str = "relu",
    norm_first: bool = True,
    norm: str = "layernorm",
    layer_scale_init: float | None = None,
    attention_dropout: float = 0.0,
    activation_dropout: float = 0.0,
    rotary: RotaryEmbedding | None = None,
    bias: bool = True,
    cross_attention: bool = True,
) -> DecoderBlock:
    """A DecoderBlock built from sizes; cross_attention=False gives a GPT block."""
    cross = (
        MultiHeadAttention(d_model, n_heads, attention_dropout, bias=bias)
        if cross_attention
        else None
    )
    return DecoderBlock(
        MultiHeadAttention(d_model, n_heads, attention_dropout, bias=bias, rotary=rotary),
        cross,
        FeedForward(d_model, d_ff, activation, activation_dropout, bias=bias),
        build_norm(norm, d_model),
        build_norm(norm, d_model) if cross_attention else None,
        build_norm(norm, d_model),
        dropout=dropout,
        norm_first=norm_first,
        layer_scale_init=layer_scale_init,
    )
