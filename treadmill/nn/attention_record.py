"""`record_attention`: the per-head attention weights of a forward pass, for pictures.

    with record_attention(model, lambda name: name.endswith("cross_attn")) as recorded:
        model(src, tgt_in)
    recorded["decoder.blocks.0.cross_attn"][0]      # (B, H, T, S), one tensor per call

Inside the block the chosen `MultiHeadAttention` modules compute their softmax written out (not
the fused kernel, which never forms the weights) and keep a detached copy of each call's
weights; outside it they run as before. Nothing about the model's outputs changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from torch import Tensor, nn

from treadmill.nn.attention import MultiHeadAttention

__all__ = ["record_attention"]


@contextlib.contextmanager
def record_attention(model: nn.Module, select: Callable[[str], bool] = lambda name: True) -> Iterator[dict[str, list[Tensor]]]:
    """Record the weights (B, H, T, S) of every call of the model's MultiHeadAttention modules whose
    qualified name `select` accepts; yields {module name: [weights per call]} in module order."""
    chosen = [(name, module) for name, module in model.named_modules()
              if isinstance(module, MultiHeadAttention) and select(name)]
    recorded: dict[str, list[Tensor]] = {}
    for name, module in chosen:
        module.recorded = recorded.setdefault(name, [])
    try:
        yield recorded
    finally:
        for _, module in chosen:
            module.recorded = None
