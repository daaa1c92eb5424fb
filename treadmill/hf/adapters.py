"""Hugging Face models behind Treadmill's model protocol (docs/model_protocol.md).

    HFSeq2Seq      BART, T5, Marian, ...  encode once, decode with a cache, forward for teacher forcing
    HFCausalLM     GPT-2, Llama, ...      forward over tokens, decode with a cache, left-padded prompts
    HFClassifier   *ForSequenceClassification: forward(tokens) -> (batch, num_labels)

Each adapter holds the HF model as `hf_model` (so its state_dict keys are "hf_model." + the HF
names) and speaks our ids (see treadmill/hf/ids.py): inputs are mapped to the model's ids, logits
back to our columns. The HF cache objects are rebuilt from, and taken apart into, plain tensors
with batch first, which is what generate() reorders beams with:

    cache = {"self": ((key, value), ...), "cross": ((key, value), ...)}   per decoder layer
    key, value: (batch, heads, positions, head_dim)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from treadmill.constants import PAD_ID
from treadmill.hf.ids import IdMap

__all__ = ["HFSeq2Seq", "HFCausalLM", "HFClassifier"]

KV = tuple[tuple[Tensor, Tensor], ...]


class _Adapter(nn.Module):
    """The id map as buffers (they follow .to(device)) and the HF model as `hf_model`."""

    is_encoder_decoder: bool = False
    _to_hf: Tensor  # (ours_vocab,) long: our id -> the model's id
    _dead: Tensor  # (ours_vocab,) bool: alias columns
    _live: Tensor  # (ours_vocab,) long: the column an id is scored in

    def __init__(self, hf_model: nn.Module, id_map: IdMap) -> None:
        super().__init__()
        self.hf_model: Any = hf_model  # a transformers PreTrainedModel
        self.id_map = id_map
        # Not persistent: checkpoints hold the HF weights only, the map is rebuilt from the config.
        self.register_buffer("_to_hf", id_map.to_hf.clone(), persistent=False)
        self.register_buffer("_dead", id_map.dead.clone(), persistent=False)
        live = id_map.from_hf[id_map.to_hf]  # (ours_vocab,) each id's live column
        live[PAD_ID] = PAD_ID  # padding stays padding (no loss there)
        self.register_buffer("_live", live, persistent=False)
        # A new nn.Module is in training mode; from_pretrained returns the HF model in eval mode.
        # Take the HF model's mode, or the first model.train(was_training) would switch dropout on.
        self.train(hf_model.training)

    @property
    def vocab_size(self) -> int:
        """Number of our ids (the width of our logits)."""
        return self.id_map.vocab_size

    @property
    def config(self) -> Any:
        """The HF model's config."""
        return self.hf_model.config

    def canonical_targets(self, target: Tensor) -> Tensor:
        """Target ids (any shape) as the live column of their model id (PAD kept): an alias such as
        GPT-2's BOS (= its EOS, 50256) is scored in EOS's column, the one the softmax gives mass."""
        return self._live[target]

    def _hf(self, ids: Tensor) -> Tensor:
        return self._to_hf[ids]

    def _ours(self, hf_logits: Tensor) -> Tensor:
        # float32 (as transformers' own losses upcast): the alias columns then sit at float32's
        # minimum under fp16/bf16 autocast too, where the loss's smoothing recognises them.
        out = hf_logits.float().index_select(-1, self._to_hf)
        return out.masked_fill(self._dead, torch.finfo(out.dtype).min)


class HFSeq2Seq(_Adapter):
    """An HF encoder-decoder (…ForConditionalGeneration) speaking the Seq2SeqModel protocol."""

    is_encoder_decoder = True

    def forward(
        self,
        src: Tensor,
        tgt_in: Tensor,
        src_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Logits (batch, tgt_len, vocab) for teacher forcing; mask None: derived from PAD."""
        mask = src.eq(PAD_ID) if src_padding_mask is None else src_padding_mask
        # The decoder is causal, so right padding of tgt_in never reaches a real position; HF's own
        # training passes no decoder mask either, and the pads' outputs are ignored by the loss.
        out = self.hf_model(
            input_ids=self._hf(src),
            attention_mask=(~mask).long(),
            decoder_input_ids=self._hf(tgt_in),
            use_cache=False,
        )
        return self._ours(out.logits)

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> dict[str, Tensor]:
        """{"outputs": (batch, src_len, d_model), "padding_mask": (batch, src_len)}."""
        mask = src.eq(PAD_ID) if src_padding_mask is None else src_padding_mask
        encoder = self.hf_model.get_encoder()
        hidden = encoder(input_ids=self._hf(src), attention_mask=(~mask).long()).last_hidden_state
        return {"outputs": hidden, "padding_mask": mask}

    def decode(
        self,
        tgt_prefix: Tensor,
        memory: dict[str, Tensor],
        src_padding_mask: Tensor | None = None,
        cache: Any = None,
        return_attention: bool = False,
    ) -> tuple[Any, ...]:
        """(logits (batch, T - k, vocab), cache) or with attention (batch, T - k, src_len)."""
        from transformers.modeling_outputs import BaseModelOutput

        mask = memory["padding_mask"] if src_padding_mask is None else src_padding_mask
        done = 0 if cache is None else cache["self"][0][0].size(2)
        asked = return_attention
        # Only eager attention returns weights (load_pretrained(..., attn_implementation="eager"));
        # with SDPA the attention is None rather than a warning at every step.
        return_attention = return_attention and self.config._attn_implementation == "eager"
        out = self.hf_model(
            encoder_outputs=BaseModelOutput(last_hidden_state=memory["outputs"]),
            attention_mask=(~mask).long(),
            decoder_input_ids=self._hf(tgt_prefix[:, done:]),
            cache=_encoder_decoder_cache(cache),
            use_cache=True,
            output_attentions=return_attention or None,
        )
        new_cache = {
            "self": _layers(out.cache.self_attention_cache),
            "cross": _layers(out.cache.cross_attention_cache),
        }
        logits = self._ours(out.logits)
        if not asked:
            return logits, new_cache
        cross = out.cross_attentions[-1] if return_attention and out.cross_attentions else None
        return logits, new_cache, None if cross is None else cross.mean(dim=1)  # (batch, T-k, src_len)


class HFCausalLM(_Adapter):
    """An HF decoder-only model (…ForCausalLM) speaking the DecoderOnlyModel protocol."""

    is_encoder_decoder = False

    def forward(self, tokens: Tensor, tgt_padding_mask: Tensor | None = None) -> Tensor:
        """Logits (batch, T, vocab); `tgt_padding_mask` True at (left or right) pads."""
        kwargs = _mask_and_positions(_or_no_padding(tgt_padding_mask, tokens), 0)
        out = self.hf_model(input_ids=self._hf(tokens), use_cache=False, **kwargs)
        return self._ours(out.logits)

    def decode(
        self,
        tgt_prefix: Tensor,
        memory: Any = None,
        src_padding_mask: Tensor | None = None,
        cache: Any = None,
        return_attention: bool = False,
        tgt_padding_mask: Tensor | None = None,
    ) -> tuple[Any, ...]:
        """(logits (batch, T - k, vocab), cache); `tgt_padding_mask` covers the whole prefix."""
        from transformers import DynamicCache

        done = 0 if cache is None else cache["self"][0][0].size(2)
        out = self.hf_model(
            input_ids=self._hf(tgt_prefix[:, done:]),
            cache=DynamicCache(ddp_cache_data=cache["self"]) if cache else DynamicCache(),
            use_cache=True,
            **_mask_and_positions(_or_no_padding(tgt_padding_mask, tgt_prefix), done),
        )
        logits = self._ours(out.logits)
        new_cache = {"self": _layers(out.cache)}
        return (logits, new_cache, None) if return_attention else (logits, new_cache)


class HFClassifier(_Adapter):
    """An HF …ForSequenceClassification model: token ids in, (batch, num_labels) logits out."""

    def forward(self, tokens: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Class logits (batch, num_labels); `padding_mask` None: derived from PAD."""
        mask = tokens.eq(PAD_ID) if padding_mask is None else padding_mask
        out = self.hf_model(input_ids=self._hf(tokens), attention_mask=(~mask).long())
        return out.logits

    @property
    def num_labels(self) -> int:
        """Number of classes."""
        return int(self.hf_model.config.num_labels)


def _or_no_padding(padding_mask: Tensor | None, tokens: Tensor) -> Tensor:
    """The mask, or one without padding: transformers warns at every call given no attention_mask."""
    return tokens.new_zeros(tokens.shape, dtype=torch.bool) if padding_mask is None else padding_mask


def _mask_and_positions(padding_mask: Tensor, done: int) -> dict[str, Tensor]:
    """attention_mask (batch, T) over the whole prefix and position ids of the new positions.

    A token's position is the number of real tokens before it (HF's generate() does the same), so a
    left-padded prompt decodes as it does alone.
    """
    attention_mask = (~padding_mask).long()  # (batch, T)
    positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)  # (batch, T)
    return {"attention_mask": attention_mask, "position_ids": positions[:, done:]}


def _layers(cache: Any) -> KV:
    """An HF DynamicCache as ((key, value), ...) per layer, (batch, heads, positions, head_dim)."""
    return tuple((layer.keys, layer.values) for layer in cache.layers)


def _encoder_decoder_cache(cache: dict[str, KV] | None) -> Any:
    """An HF EncoderDecoderCache from our tensors (an empty one for the first step)."""
    from transformers import DynamicCache, EncoderDecoderCache

    if cache is None:
        return EncoderDecoderCache(DynamicCache(), DynamicCache())
    return EncoderDecoderCache(
        DynamicCache(ddp_cache_data=cache["self"]), DynamicCache(ddp_cache_data=cache["cross"])
    )
