"""OnnxSeq2Seq: the three ONNX graphs of `treadmill.export.onnx` behind the model protocol.

It has `encode` and `decode` like a TransformerSeq2Seq, so `generate()`, `stream()` and every
search (greedy, beam, sampling) run on onnxruntime unchanged: tensors cross to numpy without a copy
at each call. Memory is {"outputs", "padding_mask"}; the cache is {"self": [k0, v0, ...],
"cross": [k0, v0, ...]}, batch first, so beam search reorders it with index_select and leaves the
"cross" entries alone when beams keep their sources. Needs the `export` extra (onnxruntime).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from treadmill.export.onnx import ONNX_FILES, cache_names

__all__ = ["OnnxSeq2Seq"]


class OnnxSeq2Seq(nn.Module):
    """An exported TransformerSeq2Seq run by onnxruntime (CPU), implementing Seq2SeqModel for decoding."""

    is_encoder_decoder = True

    def __init__(self, directory: Path, n_layers: int, threads: int | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError(f"The onnxruntime backend needs the export extra: pip install 'treadmill[export]' ({err})") from err
        options = ort.SessionOptions()
        # One intra-op thread unless told: decoding one step is a few small matmuls, and torch's
        # own thread setting is what the caller chose for the machine.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.sessions = [ort.InferenceSession(str(directory / name), options, providers=["CPUExecutionProvider"])
                         for name in ONNX_FILES]
        self.n_layers = n_layers
        self._self_names = cache_names(n_layers, ("self",))
        self._cross_names = cache_names(n_layers, ("cross",))

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> dict[str, Tensor]:
        """{"outputs" (B, S, D), "padding_mask" (B, S)} from the encoder graph (mask None: src == PAD)."""
        from treadmill.models.transformer_seq2seq import source_padding_mask

        mask = source_padding_mask(src, src_padding_mask)
        (memory,) = self.sessions[0].run(None, {"src": _np(src), "src_padding_mask": _np(mask)})
        return {"outputs": torch.from_numpy(memory), "padding_mask": mask}

    def decode(self, tgt_prefix: Tensor, memory: dict[str, Tensor], src_padding_mask: Tensor | None = None,
               cache: dict[str, list[Tensor]] | None = None, return_attention: bool = False) -> tuple[Any, ...]:
        """(logits (B, T - k, V), cache) for the prefix (B, T) given a cache of k positions."""
        if return_attention:
            raise ValueError("The onnxruntime backend does not return attention weights; decode with the "
                             "PyTorch model for attention pictures.")
        mask = memory["padding_mask"] if src_padding_mask is None else src_padding_mask
        past = 0 if cache is None else cache["self"][0].shape[2]
        if past >= tgt_prefix.shape[1]:
            raise ValueError(f"OnnxSeq2Seq.decode: the cache holds {past} positions but tgt_prefix has "
                             f"{tgt_prefix.shape[1]}; pass the whole prefix including the new token.")
        logits = []
        if cache is None:  # the first position has a graph of its own (no cache to feed)
            outputs = self.sessions[1].run(None, {"token": _np(tgt_prefix[:, :1]), "memory": _np(memory["outputs"]),
                                                  "src_padding_mask": _np(mask)})
            n = 2 * self.n_layers
            cache = {"self": [torch.from_numpy(t) for t in outputs[1:1 + n]],
                     "cross": [torch.from_numpy(t) for t in outputs[1 + n:]]}
            logits.append(torch.from_numpy(outputs[0]))
            past = 1
        for position in range(past, tgt_prefix.shape[1]):  # usually one new token
            feed = {"token": _np(tgt_prefix[:, position:position + 1]), "src_padding_mask": _np(mask)}
            feed.update(zip(self._self_names, map(_np, cache["self"]), strict=True))
            feed.update(zip(self._cross_names, map(_np, cache["cross"]), strict=True))
            outputs = self.sessions[2].run(None, feed)
            cache = {"self": [torch.from_numpy(t) for t in outputs[1:]], "cross": cache["cross"]}
            logits.append(torch.from_numpy(outputs[0]))
        return (logits[0] if len(logits) == 1 else torch.cat(logits, dim=1)), cache


def _np(tensor: Tensor) -> np.ndarray:
    """A contiguous numpy view (index_select'ed caches are already contiguous)."""
    return tensor.detach().contiguous().numpy()
