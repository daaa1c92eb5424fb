"""Activation checkpointing: keep only each block's inputs in the forward pass and recompute the
block's activations during backward (torch.utils.checkpoint, non-reentrant).

Memory for activations then grows with the number of blocks times one block's input, instead of
every intermediate of every block, at the cost of one more forward pass per block in training.
Supported: Treadmill's Transformer blocks (TransformerSeq2Seq encoder and decoder layers, GPT blocks),
the set encoder's cross-attention blocks, and Hugging Face models (their own
`gradient_checkpointing_enable`). Any other model is refused with a named error.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from treadmill.validation import ConfigError

__all__ = ["CHECKPOINTED_BLOCKS", "enable_activation_checkpointing", "checkpointed_modules"]

CHECKPOINTED_BLOCKS = ("EncoderBlock", "DecoderBlock", "CrossAttentionBlock")

_MARK = "_treadmill_activation_checkpointing"


def _checkpointed_forward(original: Any, *args: Any, **kwargs: Any) -> Any:
    # Only training passes that build a graph save memory this way; evaluation and decoding
    # (no_grad, cache) run the block as it is.
    if not torch.is_grad_enabled():
        return original(*args, **kwargs)
    return checkpoint(original, *args, use_reentrant=False, **kwargs)


def checkpointed_modules(model: nn.Module) -> list[nn.Module]:
    """The modules of `model` whose forward recomputes in backward."""
    return [m for m in model.modules() if getattr(m, _MARK, False)]


def enable_activation_checkpointing(model: nn.Module, block_classes: Sequence[str] = CHECKPOINTED_BLOCKS) -> int:
    """Recompute each block of `model` (classes named in `block_classes`) in backward; returns how
    many blocks (1 for a Hugging Face model, which checkpoints its own layers); a ConfigError naming
    the model when it has no such block and is not a Hugging Face model."""
    if callable(getattr(model, "gradient_checkpointing_enable", None)) and getattr(model, "supports_gradient_checkpointing", False):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})  # type: ignore[operator]
        return 1
    blocks = [m for m in model.modules() if type(m).__name__ in block_classes]
    if not blocks:
        classes = sorted({type(m).__name__ for m in model.modules()})
        raise ConfigError(
            f"TrainingConfig.activation_checkpointing=True, but {type(model).__name__} has no block it can "
            f"recompute: it supports the Transformer, GPT and set-encoder blocks ({', '.join(block_classes)}) "
            f"and Hugging Face models, and this model's modules are {', '.join(classes[:12])}"
            f"{' ...' if len(classes) > 12 else ''}. Set activation_checkpointing: false for this model.",
            field="activation_checkpointing",
        )
    for block in blocks:
        if getattr(block, _MARK, False):
            continue
        # An instance attribute shadows the class's forward; nn.Module.__call__ (and FSDP's hooks
        # around it) still run as before, so the parameters are gathered when the block recomputes.
        block.forward = functools.partial(_checkpointed_forward, block.forward)  # type: ignore[method-assign]
        setattr(block, _MARK, True)
    return len(blocks)
