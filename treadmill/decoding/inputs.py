"""Turn `generate()`'s arguments (src / prompt / prefix) into a ModelStepper and per-row limits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from treadmill.decoding.config import GenerationConfig
from treadmill.decoding.logits import RowLimits
from treadmill.decoding.stepper import ModelStepper

TokenBatch = Tensor | Sequence[Sequence[int]]


@dataclass
class PreparedInputs:
    """Everything a search needs: the stepper (one row per source) and per-row limits."""

    stepper: ModelStepper
    limits: RowLimits
    src_padding_mask: Tensor | None  # (batch, src_len) for trimming attention, or None


def prepare(
    model: nn.Module,
    src: TokenBatch | None,
    src_padding_mask: Tensor | None,
    prompt: TokenBatch | None,
    prefix: Sequence[int] | Sequence[Sequence[int]] | None,
    cfg: GenerationConfig,
) -> PreparedInputs:
    """Validate the inputs against the model kind, encode the source once, build the limits."""
    if not hasattr(model, "is_encoder_decoder"):
        raise ValueError(
            f"{type(model).__name__} has no `is_encoder_decoder` attribute; models used with "
            "generate() implement the protocol in docs/model_protocol.md"
        )
    device = _model_device(model)
    if model.is_encoder_decoder:
        stepper, lengths, mask = _encoder_decoder_inputs(
            model, src, src_padding_mask, prompt, cfg, device
        )
    else:
        stepper, lengths = _decoder_only_inputs(model, src, prompt, cfg, device)
        mask = None
    max_lengths = cfg.max_lengths(lengths)
    min_lengths = torch.clamp(max_lengths, max=cfg.min_len)  # max_len wins over min_len
    forced, forced_lengths = _prefix_tensor(prefix, lengths.size(0), max_lengths, cfg, device)
    limits = RowLimits(max_lengths, min_lengths, forced, forced_lengths)
    return PreparedInputs(stepper, limits, mask)


def _encoder_decoder_inputs(
    model: Any,  # a Seq2SeqModel (typing.Protocol); nn.Module's __getattr__ hides `encode`
    src: TokenBatch | None,
    src_padding_mask: Tensor | None,
    prompt: TokenBatch | None,
    cfg: GenerationConfig,
    device: torch.device,
) -> tuple[ModelStepper, Tensor, Tensor]:
    name = type(model).__name__
    if prompt is not None:
        raise ValueError(f"{name} is an encoder-decoder model: pass `src`, not `prompt`")
    if src is None:
        raise ValueError(f"{name} is an encoder-decoder model: `src` (batch, src_len) is required")
    if not isinstance(src, Tensor):
        src = pad_token_lists(src, cfg.pad_id, left=False, name="src").to(device)
    _check_tokens(src, "src")
    if src_padding_mask is None:
        src_padding_mask = src == cfg.pad_id  # source tokens are never PAD
    if src_padding_mask.shape != src.shape or src_padding_mask.dtype != torch.bool:
        raise ValueError(
            f"src_padding_mask must be a bool tensor shaped like src {tuple(src.shape)}, got "
            f"{src_padding_mask.dtype} {tuple(src_padding_mask.shape)} (True = padding)"
        )
    memory = model.encode(src, src_padding_mask)
    bos = torch.full((src.size(0), 1), cfg.bos_id, dtype=torch.long, device=src.device)
    stepper = ModelStepper(
        model,
        bos,
        memory=memory,
        src_padding_mask=src_padding_mask,
        use_cache=cfg.use_cache,
        return_attention=cfg.return_attention,
    )
    return stepper, (~src_padding_mask).sum(dim=1), src_padding_mask


def _decoder_only_inputs(
    model: nn.Module,
    src: TokenBatch | None,
    prompt: TokenBatch | None,
    cfg: GenerationConfig,
    device: torch.device,
) -> tuple[ModelStepper, Tensor]:
    name = type(model).__name__
    if src is not None:
        raise ValueError(f"{name} is a decoder-only model: pass `prompt=`, not `src`")
    if cfg.return_attention:
        raise ValueError(
            f"return_attention=True needs an encoder-decoder model (it returns cross-attention); "
            f"{name} is decoder-only"
        )
    if prompt is None:
        prompt = [[cfg.bos_id]]
    if not isinstance(prompt, Tensor):
        lists = [list(p) if len(p) else [cfg.bos_id] for p in prompt]
        prompt = pad_token_lists(lists, cfg.pad_id, left=True, name="prompt").to(device)
    _check_tokens(prompt, "prompt")
    mask = prompt == cfg.pad_id  # (batch, T) True at the left pads
    # Left padding means every pad comes before every real token in its row.
    if bool((mask[:, 1:] & ~mask[:, :-1]).any()) or bool(mask[:, -1].any()):
        raise ValueError(
            "prompt must be LEFT-padded with pad_id (pads before the tokens, last column real); "
            "pass a list of id lists to have generate() pad it"
        )
    stepper = ModelStepper(
        model,
        prompt,
        tgt_padding_mask=mask if bool(mask.any()) else None,
        use_cache=cfg.use_cache,
    )
    return stepper, (~mask).sum(dim=1)


def pad_token_lists(seqs: Sequence[Sequence[int]], pad_id: int, *, left: bool, name: str) -> Tensor:
    """Stack id lists into a (batch, longest) long tensor padded with pad_id on the left or right."""
    if len(seqs) == 0:
        raise ValueError(f"{name} is empty; pass at least one sequence")
    width = max(len(s) for s in seqs)
    if width == 0:
        raise ValueError(f"{name} has only empty sequences; every sequence needs a token")
    out = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, seq in enumerate(seqs):
        if len(seq):
            values = torch.as_tensor(list(seq), dtype=torch.long)
            if left:
                out[i, width - len(seq) :] = values
            else:
                out[i, : len(seq)] = values
    return out


def _prefix_tensor(
    prefix: Sequence[int] | Sequence[Sequence[int]] | None,
    batch: int,
    max_lengths: Tensor,
    cfg: GenerationConfig,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Forced prefixes as (batch, width) plus lengths (batch,); a flat id list applies to all."""
    lists = _prefix_lists(prefix, batch)
    special = {cfg.pad_id, cfg.bos_id, cfg.eos_id}
    caps = max_lengths.tolist()
    for i, forced in enumerate(lists):
        if special.intersection(forced):
            raise ValueError(
                f"prefix[{i}]={forced} contains PAD/BOS/EOS; forced tokens must be real"
            )
        if len(forced) > caps[i]:
            raise ValueError(
                f"prefix[{i}] has {len(forced)} tokens but example {i} may produce only "
                f"{caps[i]} (max_len); raise max_len or shorten the prefix"
            )
    lengths = torch.tensor([len(p) for p in lists], dtype=torch.long, device=device)
    width = max((len(p) for p in lists), default=0)
    padded = [p + [cfg.pad_id] * (width - len(p)) for p in lists]
    forced_tokens = torch.tensor(padded, dtype=torch.long, device=device).view(batch, width)
    return forced_tokens, lengths


def _prefix_lists(
    prefix: Sequence[int] | Sequence[Sequence[int]] | None, batch: int
) -> list[list[int]]:
    if prefix is None:
        return [[] for _ in range(batch)]
    if all(isinstance(t, int) for t in prefix):  # one flat list for every input
        return [[int(t) for t in prefix if isinstance(t, int)] for _ in range(batch)]
    lists = [[int(t) for t in p] for p in prefix if not isinstance(p, int)]
    if len(lists) != batch:
        raise ValueError(
            f"prefix has {len(lists)} entries for a batch of {batch}; give one per input"
        )
    return lists


def _check_tokens(tokens: Tensor, name: str) -> None:
    if tokens.dim() != 2 or tokens.dtype != torch.long:
        raise ValueError(
            f"{name} must be a (batch, length) long tensor of token ids, got {tokens.dtype} "
            f"{tuple(tokens.shape)}"
        )


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")
