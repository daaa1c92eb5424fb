"""Multi-head attention on ``F.scaled_dot_product_attention``, with a key/value cache.

Axis legend: B batch, H heads, T query length (new positions), S key length, D d_model,
hd head_dim = D / H.

MASK CONVENTION (read this):
    key_padding_mask  bool (B, S)                 True = key is PADDING, never attended.
    attn_mask         bool (T, S) or (B, T, S)    True = query MAY ATTEND to key.
                      This is SDPA's convention and the OPPOSITE of torch.nn.MultiheadAttention's
                      bool attn_mask (where True = blocked). Float masks are rejected.
    is_causal         query i (absolute position S - T + i) attends to keys <= its position.
A query row with no allowed key returns zeros (not NaN).

KERNEL:
    The fused SDPA kernel runs, except for bf16 on CPU with at most ``CPU_BF16_EXPLICIT_MAX_KEYS``
    keys: there PyTorch's fused CPU kernel is slower (forward + backward) than the same softmax
    written out (bench/cpu_attention.py), and for short sequences it was a third of a training
    step. Both give the same result to bf16 precision. In training with attention dropout on CPU
    the explicit softmax runs too: SDPA has no fused CPU kernel with dropout and falls back to an
    unfused path, and the explicit one uses treadmill.nn.dropout's cheaper mask.

CACHE:
    Self-attention (``key_value=None``): ``cache={"k", "v"}`` holds the keys/values of earlier
    positions, (B, H, S_past, hd); the new keys/values are appended and the grown cache is
    returned. Rotary embeddings are applied before caching, at ``positions``. An optional
    ``cache["order"]`` (B,) long says that row i continues cached row order[i] (beam search's
    reordering, recorded by ``treadmill.nn.transformer.select_layer_caches``): the cached rows
    are gathered and the new position appended in one copy, instead of a reordering copy after
    one step and a growing copy (``torch.cat``) at the next.
    Cross-attention (``key_value`` given): keys/values are computed from ``key_value`` once and
    returned in the cache; when ``cache`` already holds them, ``key_value`` is not projected again.
Batch is dim 0 of every cached tensor, so beam search can reorder caches with ``index_select(0)``.

GROUPED QUERIES (cross-attention):
    ``key_value`` (or the cached cross keys) may have E rows while the query has E x g rows, query
    rows i*g .. i*g+g-1 reading source i (beam search's beams). The g queries of a source are then
    attended as one query sequence of g x T positions against that source's E-row keys: the
    source is neither copied g times nor projected g times, and the kernel runs on E larger
    problems instead of E x g tiny ones. ``key_padding_mask`` is (E, S) then.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from treadmill.nn.dropout import dropout
from treadmill.nn.masks import causal_mask
from treadmill.nn.positional import RotaryEmbedding

__all__ = ["MultiHeadAttention", "AttentionOutput", "KVCache"]

KVCache = dict[str, Tensor]

# Up to this many keys the written-out softmax beats SDPA's fused CPU kernel in bf16: a whole
# attention layer, forward + backward, runs 1.2-1.8x faster up to 128 keys, 1.04-1.13x at 256 and
# 0.82-0.86x at 512 (bench/cpu_attention.py). In fp16 it is slower at every length, and in fp32
# the fused kernel is the faster one, so both keep SDPA.
CPU_BF16_EXPLICIT_MAX_KEYS = 256


class AttentionOutput(NamedTuple):
    """What ``MultiHeadAttention`` returns: output (B, T, D), weights (B, T, S) or None, cache or None."""

    output: Tensor
    weights: Tensor | None
    cache: KVCache | None


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al., 2017) for self- and cross-attention.

    Parameters mirror ``torch.nn.MultiheadAttention``: ``in_proj`` packs W_q, W_k, W_v as rows
    (3D, D), so self-attention is one matmul and cross-attention uses row slices (views, no copy).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        rotary: RotaryEmbedding | None = None,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(
                f"MultiHeadAttention: d_model={d_model} is not divisible by n_heads={n_heads}; "
                f"pick n_heads that divides d_model."
            )
        self.d_model = d_model
        self.n_heads = n_heads
        self.head_dim = d_model // n_heads
        self.dropout = dropout
        self.rotary = rotary
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        # While a list (inside `treadmill.nn.attention_maps.record_attention`), every call appends
        # its per-head weights (B, H, T, S) here, for pictures of what each head looks at.
        self.recorded: list[Tensor] | None = None

    def _split_heads(self, x: Tensor, n: int) -> tuple[Tensor, ...]:
        """(B, L, n*D) projections -> n tensors (B, H, L, hd)."""
        batch, length, _ = x.shape
        x = x.view(batch, length, n, self.n_heads, self.head_dim)
        return x.permute(2, 0, 3, 1, 4).unbind(0)  # n x (B, H, L, hd)

    def _project(
        self,
        query: Tensor,
        key_value: Tensor | None,
        cache: KVCache | None,
        positions: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Queries, keys and values (B, H, *, hd), with the cache merged in."""
        d = self.d_model
        weight, bias = self.in_proj.weight, self.in_proj.bias
        if key_value is None:  # self-attention: one fused QKV matmul
            q, k, v = self._split_heads(self.in_proj(query), 3)
            if self.rotary is not None:
                past = 0 if cache is None else cache["k"].shape[2]
                if positions is None:
                    positions = torch.arange(past, past + q.shape[2], device=q.device)
                q, k = self.rotary.rotate(q, positions), self.rotary.rotate(k, positions)
            if cache is not None:
                order = cache.get("order")
                k = _extend(cache["k"], k, order)  # (B, H, S_past + T, hd)
                v = _extend(cache["v"], v, order)
            return q, k, v
        if not isinstance(weight, Tensor):
            # Dynamically quantized (torch.ao quantize_dynamic): `weight` is a method and the packed
            # int8 matrix cannot be sliced, so the whole projection runs and its columns are sliced.
            (q,) = self._split_heads(self.in_proj(query)[..., :d], 1)
            if cache is not None and "k" in cache:
                return q, cache["k"], cache["v"]
            k, v = self._split_heads(self.in_proj(key_value)[..., d:], 2)
            return q, k, v
        (q,) = self._split_heads(F.linear(query, weight[:d], None if bias is None else bias[:d]), 1)
        if cache is not None and "k" in cache:  # cross-attention: keys/values once per source
            return q, cache["k"], cache["v"]
        kv = F.linear(key_value, weight[d:], None if bias is None else bias[d:])
        k, v = self._split_heads(kv, 2)
        return q, k, v

    def _allowed(
        self,
        batch: int,
        tgt_len: int,
        src_len: int,
        key_padding_mask: Tensor | None,
        attn_mask: Tensor | None,
        is_causal: bool,
        device: torch.device,
    ) -> tuple[Tensor | None, bool]:
        """Combined bool mask broadcastable to (B, H, T, S), True = may attend; and SDPA's is_causal."""
        allowed: Tensor | None = None
        if attn_mask is not None:
            if attn_mask.dtype != torch.bool:
                raise TypeError(
                    f"attn_mask must be bool with True = MAY attend; got dtype {attn_mask.dtype}. "
                    f"Convert a float mask with `mask == 0`."
                )
            if attn_mask.shape[-2:] != (tgt_len, src_len):
                raise ValueError(
                    f"attn_mask shape {tuple(attn_mask.shape)} does not end in (tgt_len, src_len)="
                    f"({tgt_len}, {src_len})."
                )
            allowed = attn_mask.unsqueeze(1) if attn_mask.dim() == 3 else attn_mask
        if key_padding_mask is not None:
            if key_padding_mask.shape != (batch, src_len):
                raise ValueError(
                    f"key_padding_mask shape {tuple(key_padding_mask.shape)} != (batch, src_len)="
                    f"({batch}, {src_len}); with a cache it must cover every cached key too."
                )
            keep = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, S)
            allowed = keep if allowed is None else allowed & keep
        sdpa_causal = False
        if is_causal and tgt_len > 1:  # a single (last) query may see every key: nothing to mask
            if allowed is None and tgt_len == src_len:
                sdpa_causal = True  # SDPA's own causal path, no mask tensor
            else:
                causal = causal_mask(tgt_len, src_len, device=device)
                allowed = causal if allowed is None else allowed & causal
        return allowed, sdpa_causal

    def _explicit_attention(
        self, q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None, sdpa_causal: bool
    ) -> tuple[Tensor, Tensor]:
        """Softmax attention written out: output (B, H, T, hd) and weights (B, H, T, S)."""
        scores = (q * (1.0 / math.sqrt(self.head_dim))) @ k.transpose(-2, -1)  # (B, H, T, S)
        if sdpa_causal:
            allowed = causal_mask(q.shape[2], k.shape[2], device=q.device)
        blocked = None if allowed is None else ~allowed
        if blocked is not None:
            # finfo.min instead of -inf keeps fully masked rows finite; they are zeroed below.
            scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
        weights = scores.softmax(dim=-1)
        if blocked is not None:
            weights = weights.masked_fill(blocked, 0.0)
        out = dropout(weights, self.dropout, self.training) @ v.to(weights.dtype)
        return out.to(v.dtype), weights

    def _fused_kernel_is_slower(self, q: Tensor, k: Tensor) -> bool:
        """Whether SDPA's fused kernel loses to the explicit softmax here (see KERNEL above)."""
        if q.device.type != "cpu":
            return False
        if self.training and self.dropout > 0:
            return True  # SDPA runs its unfused math path then, with torch's costlier dropout
        return q.dtype == torch.bfloat16 and k.shape[2] <= CPU_BF16_EXPLICIT_MAX_KEYS

    def forward(
        self,
        query: Tensor,
        key_value: Tensor | None = None,
        *,
        key_padding_mask: Tensor | None = None,
        attn_mask: Tensor | None = None,
        is_causal: bool = False,
        need_weights: bool = False,
        cache: KVCache | None = None,
        use_cache: bool = False,
        positions: Tensor | None = None,
    ) -> AttentionOutput:
        """Attend from query (B, T, D) to key_value (B, S, D) (or to itself when None).

        ``positions`` (T,) or (B, T): rotary positions of the queries (self-attention only;
        default ``S_past + arange(T)``). ``use_cache`` returns a cache even when none was given.
        ``need_weights`` returns head-averaged weights (B, T, S) before dropout, via an explicit
        softmax; otherwise the fused SDPA kernel runs.
        """
        if query.dim() != 3 or query.shape[-1] != self.d_model:
            raise ValueError(
                f"MultiHeadAttention: query must be (batch, tgt_len, d_model={self.d_model}); "
                f"got {tuple(query.shape)}."
            )
        q, k, v = self._project(query, key_value, cache, positions)
        rows, _, query_len, _ = q.shape
        group = _query_group(rows, k.shape[0])
        if group > 1:
            if is_causal or attn_mask is not None:
                raise ValueError(
                    "MultiHeadAttention: grouped queries (more query rows than key rows) are for "
                    "cross-attention; is_causal and attn_mask are not supported with them."
                )
            q = _group_queries(q, group)
        batch, _, tgt_len, _ = q.shape
        allowed, sdpa_causal = self._allowed(
            batch, tgt_len, k.shape[2], key_padding_mask, attn_mask, is_causal, q.device
        )
        weights = None
        if need_weights or self.recorded is not None:
            out, head_weights = self._explicit_attention(q, k, v, allowed, sdpa_causal)
            if group > 1:  # (E, H, g*T, S) -> (E*g, H, T, S)
                head_weights = _ungroup(head_weights, group)
            if self.recorded is not None:
                self.recorded.append(head_weights.detach())
            weights = head_weights.mean(dim=1) if need_weights else None
        elif self._fused_kernel_is_slower(q, k):
            out, _ = self._explicit_attention(q, k, v, allowed, sdpa_causal)
        else:
            # torch >= 2.5 SDPA returns zeros for fully masked rows (tested in tests/test_nn_attention.py).
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=allowed, dropout_p=self.dropout if self.training else 0.0, is_causal=sdpa_causal
            )  # (B, H, T, hd)
        out = _merge_heads(out, group, query_len)  # (B, T, D)
        new_cache = {"k": k, "v": v} if (use_cache or cache is not None) else None
        return AttentionOutput(self.out_proj(out), weights, new_cache)


def _group_queries(q: Tensor, group: int) -> Tensor:
    """(E*g, H, T, hd) -> (E, H, g*T, hd): the queries of a source's g rows as one sequence."""
    rows, heads, query_len, head_dim = q.shape
    sources = rows // group
    q = q.reshape(sources, group, heads, query_len, head_dim)
    return q.transpose(1, 2).reshape(sources, heads, group * query_len, head_dim)


def _merge_heads(out: Tensor, group: int, query_len: int) -> Tensor:
    """The kernel's (B, H, T, hd) output, or grouped (E, H, g*T, hd), as (B or E*g, T, H*hd), in one copy."""
    batch, heads, _, head_dim = out.shape
    if group > 1:  # (E, H, g*T, hd) -> (E, g, T, H, hd)
        out = out.view(batch, heads, group, query_len, head_dim).permute(0, 2, 3, 1, 4)
    else:
        out = out.transpose(1, 2)
    return out.reshape(batch * group, query_len, heads * head_dim)


def _query_group(query_rows: int, key_rows: int) -> int:
    """How many query rows share one key row: 1, or g for grouped cross-attention."""
    if query_rows == key_rows:
        return 1
    if key_rows == 0 or query_rows % key_rows:
        raise ValueError(
            f"MultiHeadAttention: the query has {query_rows} rows and the keys {key_rows}; the "
            f"query rows must equal the key rows or be a multiple of them (grouped queries)."
        )
    return query_rows // key_rows


def _ungroup(x: Tensor, group: int) -> Tensor:
    """(E, H, g*T, ...) per-source results -> (E*g, H, T, ...) per query row."""
    sources, heads, length = x.shape[:3]
    x = x.reshape(sources, heads, group, length // group, *x.shape[3:])
    return x.transpose(1, 2).reshape(sources * group, heads, length // group, *x.shape[4:])


def _extend(past: Tensor, new: Tensor, order: Tensor | None) -> Tensor:
    """Cached keys/values (B', H, S, hd), rows taken in `order` (B,) when given, + new (B, H, T, hd)."""
    if order is None:
        return torch.cat((past, new), dim=2)
    needs_grad = torch.is_grad_enabled() and (past.requires_grad or new.requires_grad)
    # out= into a strided view is relied on for CPU kernels only, and autograd does not allow it.
    if past.device.type != "cpu" or needs_grad:
        return torch.cat((past.index_select(0, order), new), dim=2)
    length = past.shape[2]
    out = new.new_empty(new.shape[0], new.shape[1], length + new.shape[2], new.shape[3])
    torch.index_select(past, 0, order, out=out[:, :, :length])
    out[:, :, length:] = new
    return out
