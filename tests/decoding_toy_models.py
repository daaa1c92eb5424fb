"""Tiny models that implement the decoding protocol (docs/model_protocol.md), for decoding tests.

* `ToySeq2Seq`: embeddings, a GRU-cell decoder and dot-product attention over the source. Its cache
  is the running hidden state, so cached and uncached decoding compute the same numbers.
* `ToyLM`: a decoder-only GRU language model that skips left pads (so a prompt decodes the same
  alone or left-padded in a batch).
* `TableSeq2Seq`: no network at all. The next-token logits are a fixed pseudo-random function of
  (source, prefix), which makes exhaustive search over a tiny vocabulary the exact reference.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor, nn

from treadmill.constants import EOS_ID


class ToySeq2Seq(nn.Module):
    """Encoder-decoder toy: memory = embedded source; decoder = GRUCell + attention."""

    is_encoder_decoder = True

    def __init__(self, vocab_size: int = 12, d_model: int = 16, sharpness: float = 3.0) -> None:
        super().__init__()
        self.src_embedding = nn.Embedding(vocab_size, d_model)
        self.tgt_embedding = nn.Embedding(vocab_size, d_model)
        self.cell = nn.GRUCell(2 * d_model, d_model)
        self.out = nn.Linear(2 * d_model, vocab_size)
        self.sharpness = sharpness  # scales the logits: 0 gives a flat distribution
        self.encode_calls = 0

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> dict[str, Tensor]:
        """Memory: embedded source (batch, src_len, d) and its mean as the initial state."""
        self.encode_calls += 1
        emb = torch.tanh(self.src_embedding(src))  # (batch, src_len, d)
        keep = (
            torch.ones_like(src, dtype=emb.dtype)
            if src_padding_mask is None
            else (~src_padding_mask).to(emb.dtype)
        )
        mean = (emb * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)
        return {"outputs": emb, "state": mean}

    def decode(
        self,
        tgt_prefix: Tensor,
        memory: dict[str, Tensor],
        src_padding_mask: Tensor | None = None,
        cache: dict[str, Any] | None = None,
        return_attention: bool = False,
    ) -> tuple[Any, ...]:
        """Logits for positions k..T-1 of the prefix given a cache holding k positions."""
        past = 0 if cache is None else cache["length"]
        h = memory["state"] if cache is None else cache["state"]
        logits, weights = [], []
        for t in range(past, tgt_prefix.size(1)):
            context, w = self._attend(h, memory["outputs"], src_padding_mask)
            h = self.cell(torch.cat([self.tgt_embedding(tgt_prefix[:, t]), context], -1), h)
            context, w = self._attend(h, memory["outputs"], src_padding_mask)
            logits.append(self.sharpness * self.out(torch.cat([h, context], -1)))
            weights.append(w)
        new_cache = {"state": h, "length": tgt_prefix.size(1)}
        out = torch.stack(logits, 1)  # (batch, T - k, vocab)
        if return_attention:
            return out, new_cache, torch.stack(weights, 1)  # (batch, T - k, src_len)
        return out, new_cache

    def forward(
        self, src: Tensor, tgt_in: Tensor, src_padding_mask: Tensor | None = None
    ) -> Tensor:
        """Teacher-forced logits (batch, tgt_len, vocab)."""
        return self.decode(tgt_in, self.encode(src, src_padding_mask), src_padding_mask)[0]

    @staticmethod
    def _attend(h: Tensor, outputs: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
        scores = torch.einsum("bd,bsd->bs", h, outputs)  # (batch, src_len)
        if mask is not None:
            scores = scores.masked_fill(mask, float("-inf"))
        w = scores.softmax(-1)
        return torch.einsum("bs,bsd->bd", w, outputs), w


class ToyLM(nn.Module):
    """Decoder-only toy: a GRU over the real (non-left-pad) tokens."""

    is_encoder_decoder = False

    def __init__(self, vocab_size: int = 12, d_model: int = 16, sharpness: float = 3.0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.cell = nn.GRUCell(d_model, d_model)
        self.out = nn.Linear(d_model, vocab_size)
        self.sharpness = sharpness

    def decode(
        self,
        tgt_prefix: Tensor,
        memory: Any = None,
        src_padding_mask: Tensor | None = None,
        cache: dict[str, Any] | None = None,
        return_attention: bool = False,
        tgt_padding_mask: Tensor | None = None,
    ) -> tuple[Any, ...]:
        """Logits for positions k..T-1; pad positions leave the state unchanged."""
        batch = tgt_prefix.size(0)
        past = 0 if cache is None else cache["length"]
        h = (
            self.embedding.weight.new_zeros(batch, self.cell.hidden_size)
            if cache is None
            else cache["state"]
        )
        logits = []
        for t in range(past, tgt_prefix.size(1)):
            new_h = self.cell(self.embedding(tgt_prefix[:, t]), h)
            if tgt_padding_mask is not None:
                new_h = torch.where(tgt_padding_mask[:, t, None], h, new_h)
            h = new_h
            logits.append(self.sharpness * self.out(h))
        out = torch.stack(logits, 1)
        new_cache = {"state": h, "length": tgt_prefix.size(1)}
        return (out, new_cache, None) if return_attention else (out, new_cache)

    def forward(self, tokens: Tensor, tgt_padding_mask: Tensor | None = None) -> Tensor:
        """Logits (batch, T, vocab)."""
        return self.decode(tokens, tgt_padding_mask=tgt_padding_mask)[0]


class TableSeq2Seq(nn.Module):
    """Logits are a fixed pseudo-random function of (source tokens, prefix tokens)."""

    is_encoder_decoder = True

    def __init__(self, vocab_size: int = 5, scale: float = 2.0, seed: int = 0) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.scale = scale
        self.seed = seed

    def logits_for(self, src: tuple[int, ...], prefix: tuple[int, ...]) -> Tensor:
        """Next-token logits (vocab,) after `prefix` (starting with BOS) for source `src`."""
        key = hash((self.seed, src, prefix)) % (2**31)  # tuples of ints hash deterministically
        gen = torch.Generator().manual_seed(key)
        return self.scale * torch.randn(self.vocab_size, generator=gen)

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> dict[str, Tensor]:
        """Memory: the source with padding replaced by -1 (so padding never matters)."""
        if src_padding_mask is not None:
            src = src.masked_fill(src_padding_mask, -1)
        return {"src": src}

    def decode(
        self,
        tgt_prefix: Tensor,
        memory: dict[str, Tensor],
        src_padding_mask: Tensor | None = None,
        cache: dict[str, Any] | None = None,
        return_attention: bool = False,
    ) -> tuple[Any, ...]:
        """Logits (batch, T - k, vocab) from the table; the cache only counts positions."""
        past = 0 if cache is None else cache["length"]
        rows = []
        for src_row, prefix_row in zip(memory["src"].tolist(), tgt_prefix.tolist(), strict=True):
            src_key = tuple(t for t in src_row if t >= 0)
            rows.append(
                torch.stack(
                    [
                        self.logits_for(src_key, tuple(prefix_row[: t + 1]))
                        for t in range(past, len(prefix_row))
                    ]
                )
            )
        out = torch.stack(rows)  # (batch, T - k, vocab)
        new_cache = {"length": tgt_prefix.size(1)}
        return (out, new_cache, None) if return_attention else (out, new_cache)

    def sequence_log_prob(
        self, src: list[int], output: list[int], bos_id: int, eos_id: int = EOS_ID
    ) -> float:
        """log p(output + EOS | src) under the table (float64 sum of float32 log-softmaxes)."""
        prefix = (bos_id,)
        total = 0.0
        for token in [*output, eos_id]:
            log_probs = self.logits_for(tuple(src), prefix).float().log_softmax(-1)
            total += float(log_probs[token])
            prefix = (*prefix, token)
        return total


def enumerate_outputs(tokens: list[int], max_len: int) -> list[list[int]]:
    """Every output of length 0..max_len over `tokens` (each is then closed by EOS)."""
    outputs: list[list[int]] = []
    for length in range(max_len + 1):
        outputs.extend(list(seq) for seq in itertools.product(tokens, repeat=length))
    return outputs


def gnmt_penalty(n_scored: int, alpha: float) -> float:
    """((5 + |Y|) / 6) ** alpha, the reference formula for the tests."""
    return math.pow((5 + n_scored) / 6, alpha)


class EosBiased(nn.Module):
    """Wraps a protocol model and raises the EOS logit by `bias + slope * position`.

    Random-init models rarely choose EOS; a bias that grows with the position makes outputs end
    at varied lengths, which is what batching and EOS tests need. With `by_last_token`, EOS's
    logit is instead rebuilt from the best other logit + bias + slope * position + a fixed random
    offset per last token (a random-init model's own EOS logit can be stuck far below the others,
    and its logits can be flat; this ends outputs at lengths that depend on what was generated).
    """

    def __init__(
        self,
        model: nn.Module,
        bias: float,
        slope: float = 0.0,
        by_last_token: bool = False,
        vocab_size: int = 64,
        eos_id: int = EOS_ID,
    ) -> None:
        super().__init__()
        self.model = model
        self.bias, self.slope, self.eos_id = bias, slope, eos_id
        self.by_last_token = by_last_token
        self.offsets = 2.0 * torch.randn(vocab_size, generator=torch.Generator().manual_seed(0))
        self.is_encoder_decoder = model.is_encoder_decoder

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> Any:
        """The wrapped model's memory."""
        return self.model.encode(src, src_padding_mask)

    def decode(self, tgt_prefix: Tensor, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """The wrapped model's decode with the EOS logit raised."""
        out = self.model.decode(tgt_prefix, *args, **kwargs)
        logits = out[0].clone()  # (batch, new, vocab)
        new = logits.size(1)
        pads = kwargs.get("tgt_padding_mask")
        if pads is None:
            pads = torch.zeros_like(tgt_prefix, dtype=torch.bool)
        # Position = real tokens before this one, so left pads do not shift the bias.
        position = ((~pads).long().cumsum(1)[:, -new:] - 1).to(logits.dtype)  # (batch, new)
        if self.by_last_token:
            others = logits.clone()
            others[..., self.eos_id] = float("-inf")
            offset = self.offsets.to(logits.device)[tgt_prefix[:, -new:]]  # (batch, new)
            base = others.max(-1).values + offset
        else:
            base = logits[..., self.eos_id]
        logits[..., self.eos_id] = base + self.bias + self.slope * position
        return (logits, *out[1:])


class ConfidentSeq2Seq(nn.Module):
    """Always sure of one answer, `length` copies of token A then EOS; any detour ends at once.

    On the right path A has probability ~0.83; off it (any token but A so far), EOS has ~0.999.
    Junk beams therefore finish one step after they branch off, before the answer does.
    """

    is_encoder_decoder = True

    def __init__(self, vocab_size: int = 8, length: int = 4, token_a: int = 4) -> None:
        super().__init__()
        self.vocab_size, self.length, self.token_a = vocab_size, length, token_a
        self.dummy = nn.Parameter(torch.zeros(()))

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> dict[str, Tensor]:
        """No memory to speak of: one zero row per source."""
        return {"outputs": torch.zeros(src.size(0), 1)}

    def decode(self, tgt_prefix: Tensor, memory: Any, src_padding_mask: Tensor | None = None,
               cache: Any = None, **kwargs: Any) -> tuple[Tensor, Any]:
        """Logits (B, T - k, V) for the new positions of the prefix (BOS first)."""
        past = 0 if cache is None else int(cache["length"][0])  # batch-first, like any cache
        rows, total = tgt_prefix.shape
        out = torch.zeros(rows, total - past, self.vocab_size)
        for pos in range(past, total):
            generated = tgt_prefix[:, 1 : pos + 1]
            on_path = (generated == self.token_a).all(dim=1)
            logits = torch.full((rows, self.vocab_size), 0.0)
            logits[:, :4] = float("-inf")  # PAD, UNK, BOS, EOS are set below
            logits[:, EOS_ID] = 0.0
            done = generated.size(1) >= self.length
            a_logit = torch.where(on_path & ~torch.tensor(done), 3.0, 0.0)
            eos_logit = torch.where(on_path, 6.0 if done else 0.0, 8.0)
            logits[:, self.token_a] = a_logit
            logits[:, EOS_ID] = eos_logit
            out[:, pos - past] = logits
        return out, {"length": torch.full((rows,), total)}
