"""Teacher-forced scores of given outputs, for encoder-decoder and decoder-only models alike.

Sequence-level objectives score outputs the model drew itself. `candidate_logits` returns the
logits at every output position, laid out as `pack_candidates` packs the outputs, whatever the model:

    candidates = pack_candidates(outputs)                     # (N, T): BOS ids EOS PAD
    logits     = candidate_logits(model, batch, candidates)   # (N, T - 1, vocab): predicts candidates[:, 1:]
    logp, mask = token_logprobs(logits, candidates)           # (N, T - 1) each

N may be K times the batch size: rows b*K .. b*K+K-1 belong to source b. An encoder-decoder model
reads the source and the candidate's prefix; a decoder-only model reads the prompt (the source
without padding), then the candidate, as Seq2SeqTrainer trains it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from treadmill.constants import EOS_ID, PAD_ID
from treadmill.seq2seq.evaluation import decoder_only_prompt

__all__ = ["candidate_logits", "token_logprobs", "scored_mask"]


def _repeat(tensor: Tensor, k: int) -> Tensor:
    return tensor.repeat_interleave(k, dim=0) if k > 1 else tensor


def candidate_logits(model: nn.Module, batch: Mapping[str, Tensor], candidates: Tensor,
                     encoder_decoder: bool | None = None) -> Tensor:
    """Logits (N, T - 1, vocab) predicting candidates[:, 1:] from the source and candidates[:, :-1].

    `encoder_decoder` says which kind `model` is (None: its `is_encoder_decoder`, as a DDP wrapper hides it)."""
    n_sources = batch["tgt"].size(0) if batch.get("src") is None else batch["src"].size(0)
    if candidates.size(0) % n_sources:
        raise ValueError(f"candidates has {candidates.size(0)} rows, not a multiple of the batch's {n_sources} "
                         "sources; give K candidates per source, grouped by source.")
    k = candidates.size(0) // n_sources
    tgt_in = candidates[:, :-1]
    if encoder_decoder is None:
        encoder_decoder = bool(getattr(model, "is_encoder_decoder", True))
    if encoder_decoder:
        src = _repeat(batch["src"], k)
        mask = batch.get("src_padding_mask")
        mask = src == PAD_ID if mask is None else _repeat(mask, k)
        return model(src, tgt_in, src_padding_mask=mask, tgt_padding_mask=tgt_in == PAD_ID)
    prompts = [decoder_only_prompt(row) for row in batch["src"]] if batch.get("src") is not None else \
        [candidates.new_empty(0)] * n_sources
    rows = [torch.cat([prompts[i // k], tgt_in[i]]) for i in range(candidates.size(0))]
    tokens = nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=PAD_ID)  # (N, L)
    logits = model(tokens, tgt_padding_mask=tokens == PAD_ID)  # (N, L, vocab)
    # Row i's output position j sits at prompt length + j: gather those (T - 1) positions.
    offsets = torch.tensor([len(prompts[i // k]) for i in range(candidates.size(0))], device=tokens.device)
    index = offsets.unsqueeze(1) + torch.arange(tgt_in.size(1), device=tokens.device)  # (N, T - 1)
    return logits.gather(1, index.unsqueeze(-1).expand(-1, -1, logits.size(-1)))


def scored_mask(candidates: Tensor, eos_id: int = EOS_ID, pad_id: int = PAD_ID) -> Tensor:
    """(N, T - 1) True at the output positions that count: each token up to and including the first EOS."""
    tgt_out = candidates[:, 1:]
    is_eos = tgt_out == eos_id
    after_eos = (is_eos.cumsum(dim=1) - is_eos.long()) > 0
    return (tgt_out != pad_id) & ~after_eos


def token_logprobs(logits: Tensor, candidates: Tensor, temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    """Per-token log-probabilities (N, T - 1) of candidates[:, 1:] under logits / temperature, and
    the mask of the positions that count (0 is written where it is False)."""
    log_probs = (logits.float() / temperature).log_softmax(dim=-1)
    chosen = log_probs.gather(-1, candidates[:, 1:].unsqueeze(-1)).squeeze(-1)
    mask = scored_mask(candidates)
    return chosen.masked_fill(~mask, 0.0), mask
