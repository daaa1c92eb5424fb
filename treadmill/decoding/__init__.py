"""Decoding for every protocol model: greedy, batched beam search and sampling behind generate()."""

from treadmill.decoding.config import GenerationConfig
from treadmill.decoding.generate import generate
from treadmill.decoding.output import GenerationOutput
from treadmill.decoding.stream import stream
from treadmill.decoding.text import decode_to_text, ids_to_tokens

__all__ = [
    "GenerationConfig",
    "GenerationOutput",
    "decode_to_text",
    "generate",
    "ids_to_tokens",
    "stream",
]
