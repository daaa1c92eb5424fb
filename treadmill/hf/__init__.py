"""Hugging Face models in Treadmill: load a transformers checkpoint directory as a protocol model.

    from treadmill.hf import load_pretrained, save_pretrained
    model, tokenizer = load_pretrained("checkpoints/bart-base", task="seq2seq")

Needs the optional extra: pip install 'treadmill[hf]'. transformers is imported only when a
function here is called, never by `import treadmill`.
"""

from treadmill.hf.adapters import HFCausalLM, HFClassifier, HFSeq2Seq
from treadmill.hf.ids import IdMap, SpecialIds
from treadmill.hf.loading import (
    SUPPORTED,
    Pretrained,
    PretrainedError,
    SpecialTokenError,
    UnsupportedArchitectureError,
    load_pretrained,
    load_tokenizer,
    save_pretrained,
)
from treadmill.hf.tokenizer import HFTokenizer

__all__ = [
    "SUPPORTED",
    "HFCausalLM",
    "HFClassifier",
    "HFSeq2Seq",
    "HFTokenizer",
    "IdMap",
    "Pretrained",
    "PretrainedError",
    "SpecialIds",
    "SpecialTokenError",
    "UnsupportedArchitectureError",
    "load_pretrained",
    "load_tokenizer",
    "save_pretrained",
]
