"""onnx: a TransformerSeq2Seq as three ONNX graphs for another runtime (onnxruntime).

    encoder.onnx       src (B, S) int64, src_padding_mask (B, S) bool -> memory (B, S, D)
    decoder_first.onnx token (B, 1), memory, src_padding_mask -> logits (B, 1, V),
                       self_k_i, self_v_i (B, H, 1, hd) and cross_k_i, cross_v_i (B, H, S, hd) per layer i
    decoder_step.onnx  token (B, 1), src_padding_mask, self_k_i, self_v_i (B, H, P, hd), cross_k_i,
                       cross_v_i -> logits (B, 1, V), new_self_k_i, new_self_v_i (B, H, P + 1, hd)

The first step is a graph of its own because an empty cache (P = 0) does not export: torch.export
specialises sizes 0 and 1. Cross-attention keys/values are computed once, by decoder_first, and
passed back in at every step like the self-attention cache, so each step only projects one token.
Exported with the dynamo exporter (torch.onnx.export(dynamo=True)); needs the `export` extra.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ONNX_FILES", "export_onnx", "cache_names"]

ONNX_FILES = ("encoder.onnx", "decoder_first.onnx", "decoder_step.onnx")


def cache_names(n_layers: int, kinds: tuple[str, ...] = ("self", "cross")) -> list[str]:
    """The cache tensors' graph names in their order: self_k_0, self_v_0, ..., cross_v_{n-1}."""
    return [f"{kind}_{kv}_{i}" for kind in kinds for i in range(n_layers) for kv in ("k", "v")]


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ImportError(f"ONNX export needs the export extra: pip install 'treadmill[export]' ({err})") from err


class _Encoder(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model: Any = model  # a TransformerSeq2Seq (typed Any: nn.Module hides encode/decode)

    def forward(self, src: Tensor, src_padding_mask: Tensor) -> Tensor:
        return self.model.encode(src, src_padding_mask)["outputs"]


def _flat(cache: list[dict[str, dict[str, Tensor]]], kinds: tuple[str, ...]) -> list[Tensor]:
    return [layer[kind][kv] for kind in kinds for layer in cache for kv in ("k", "v")]


class _DecoderFirst(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model: Any = model  # a TransformerSeq2Seq (typed Any: nn.Module hides encode/decode)

    def forward(self, token: Tensor, memory: Tensor, src_padding_mask: Tensor) -> tuple[Tensor, ...]:
        logits, cache = self.model.decode(token, {"outputs": memory, "padding_mask": src_padding_mask})
        return (logits, *_flat(cache, ("self", "cross")))


class _DecoderStep(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model: Any = model  # a TransformerSeq2Seq (typed Any: nn.Module hides encode/decode)
        self.n_layers = len(model.decoder.blocks)  # type: ignore[union-attr, arg-type]

    def forward(self, token: Tensor, src_padding_mask: Tensor, *cache: Tensor) -> tuple[Tensor, ...]:
        n = self.n_layers
        self_kv, cross_kv = cache[: 2 * n], cache[2 * n :]
        layers = [{"self": {"k": self_kv[2 * i], "v": self_kv[2 * i + 1]},
                   "cross": {"k": cross_kv[2 * i], "v": cross_kv[2 * i + 1]}} for i in range(n)]
        past = self_kv[0].shape[2]
        # decode() reads only the last token of the prefix when a cache is given; the rest of the
        # prefix is never looked at, so a (B, P + 1) stand-in is enough.
        prefix = token.expand(-1, past + 1)
        # memory["outputs"] is not read once cross keys/values are cached.
        memory = {"outputs": src_padding_mask, "padding_mask": src_padding_mask}
        logits, new_cache = self.model.decode(prefix, memory, cache=layers)
        return (logits, *_flat(new_cache, ("self",)))


def export_onnx(model: nn.Module, directory: Path, opset: int = 18) -> list[Path]:
    """Write encoder.onnx, decoder_first.onnx and decoder_step.onnx of a TransformerSeq2Seq."""
    from treadmill.models.transformer_seq2seq import TransformerSeq2Seq

    _require_onnx()
    if not isinstance(model, TransformerSeq2Seq):
        raise TypeError(f"ONNX export supports TransformerSeq2Seq models; this run's model is {type(model).__name__}.")
    model = model.float().eval()
    directory.mkdir(parents=True, exist_ok=True)
    n_layers = len(model.decoder.blocks)  # type: ignore[union-attr, arg-type]
    cfg = model.config
    batch, src_len, past = 2, 5, 3
    src = torch.randint(4, cfg.src_vocab_size, (batch, src_len))
    mask = torch.zeros(batch, src_len, dtype=torch.bool)
    token = torch.full((batch, 1), 1, dtype=torch.long)
    with torch.no_grad():
        memory = model.encode(src, mask)["outputs"]
        _, cache = model.decode(torch.ones(batch, past, dtype=torch.long), {"outputs": memory, "padding_mask": mask})
    flat = _flat(cache, ("self", "cross"))
    B, S = torch.export.Dim("batch", min=1, max=4096), torch.export.Dim("src_len", min=1, max=cfg.max_len)
    P = torch.export.Dim("past", min=1, max=cfg.max_len - 1)
    self_names, cross_names = cache_names(n_layers, ("self",)), cache_names(n_layers, ("cross",))
    paths = [directory / name for name in ONNX_FILES]
    _export(_Encoder(model), (src, mask), paths[0], ["src", "src_padding_mask"], ["memory"],
            {"src": {0: B, 1: S}, "src_padding_mask": {0: B, 1: S}}, opset)
    _export(_DecoderFirst(model), (token, memory, mask), paths[1], ["token", "memory", "src_padding_mask"],
            ["logits", *self_names, *cross_names],
            {"token": {0: B}, "memory": {0: B, 1: S}, "src_padding_mask": {0: B, 1: S}}, opset)
    step_shapes: dict[str, Any] = {"token": {0: B}, "src_padding_mask": {0: B, 1: S}}
    step_shapes.update({name: {0: B, 2: P} for name in self_names})
    step_shapes.update({name: {0: B, 2: S} for name in cross_names})
    _export(_DecoderStep(model), (token, mask, *flat), paths[2], ["token", "src_padding_mask", *self_names,
            *cross_names], ["logits", *(f"new_{name}" for name in self_names)], step_shapes, opset)
    return paths


def _export(module: nn.Module, args: tuple[Tensor, ...], path: Path, inputs: list[str], outputs: list[str],
            shapes: dict[str, Any], opset: int) -> None:
    """One graph through the dynamo exporter, its weights inside the .onnx file."""
    import logging
    import warnings

    # torch.onnx logs a warning per torchvision operator it cannot register; nothing here uses them.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    # The exporter names the forward's parameters; a *cache parameter takes one tuple of shapes.
    names = list(inspect.signature(module.forward).parameters)
    if names[-1] == "cache":
        fixed = names[:-1]
        dynamic: Any = tuple(shapes[name] for name in fixed) + (tuple(shapes[name] for name in inputs[len(fixed):]),)
    else:
        dynamic = tuple(shapes[name] for name in names)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(module, args, dynamo=True, input_names=inputs, output_names=outputs,
                                    dynamic_shapes=dynamic, opset_version=opset, optimize=True, verbose=False)
    assert program is not None  # dynamo=True always returns the program
    program.save(str(path), external_data=False)
