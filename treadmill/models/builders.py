"""Builder functions: a model from its sizes in one call, and named size presets.

Each family has one builder that takes the config's fields as keywords and returns the model
(``transformer_seq2seq(src_vocab_size, tgt_vocab_size, d_model=128)``) and a few presets that fix
the sizes and take any other field as an override (``transformer_seq2seq_small(v, v,
dropout=0.0)``); an override of one of the preset's own sizes replaces it. Builders only fill
a config and call ``Model(config)``, so the weights drawn for a given seed are those of
``Model(Config(...))`` with the same fields.

Parameter counts (measured; src = tgt = 8,000 tokens, separate source and target embeddings,
tied output projection where the family ties it; "body" excludes embeddings, positions and the
output projection):

    preset                     sizes                                         total    body
    transformer_seq2seq_tiny   d_model 64, 4 heads, 2+2 layers, d_ff 256     1.26M    0.23M
    transformer_seq2seq_small  d_model 256, 4 heads, 3+3 layers, d_ff 1024   9.63M    5.53M
    transformer_seq2seq_base   d_model 512, 8 heads, 6+6 layers, d_ff 2048   52.3M    44.1M
    rnn_seq2seq_small          GRU, luong-general, embed 64, hidden 256      3.94M    0.86M
    rnn_seq2seq_base           LSTM, bahdanau, embed 256, hidden 512, 2 L    17.1M    8.93M
    gpt_small                  d_model 256, 4 heads, 4 layers, d_ff 1024     5.47M    3.16M
    gpt_base                   d_model 768, 12 heads, 12 layers, d_ff 3072   92.0M    85.1M

The Transformer presets are the toy-task size of examples/reverse.yaml, the library default, and
Vaswani et al.'s base model; gpt_base is GPT-2 small's shape (124.4M with a 50,257-token
vocabulary).
"""

from __future__ import annotations

from typing import Any

from treadmill.models.forecaster import Forecaster, ForecasterConfig
from treadmill.models.gpt import GPT, GPTConfig
from treadmill.models.rnn_seq2seq import RNNSeq2Seq, RNNSeq2SeqConfig
from treadmill.models.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig

__all__ = [
    "forecaster",
    "gpt",
    "gpt_base",
    "gpt_small",
    "rnn_seq2seq",
    "rnn_seq2seq_base",
    "rnn_seq2seq_small",
    "transformer_seq2seq",
    "transformer_seq2seq_base",
    "transformer_seq2seq_small",
    "transformer_seq2seq_tiny",
]


def transformer_seq2seq(
    src_vocab_size: int, tgt_vocab_size: int, **fields: Any
) -> TransformerSeq2Seq:
    """A TransformerSeq2Seq from its vocabulary sizes and any TransformerSeq2SeqConfig fields."""
    return TransformerSeq2Seq(TransformerSeq2SeqConfig(src_vocab_size, tgt_vocab_size, **fields))


def transformer_seq2seq_tiny(
    src_vocab_size: int, tgt_vocab_size: int, **overrides: Any
) -> TransformerSeq2Seq:
    """d_model 64, 4 heads, 2+2 layers, d_ff 256: toy tasks (examples/reverse.yaml)."""
    sizes = dict(d_model=64, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=256)
    return transformer_seq2seq(src_vocab_size, tgt_vocab_size, **{**sizes, **overrides})


def transformer_seq2seq_small(
    src_vocab_size: int, tgt_vocab_size: int, **overrides: Any
) -> TransformerSeq2Seq:
    """d_model 256, 4 heads, 3+3 layers, d_ff 1024: the config defaults."""
    sizes = dict(d_model=256, n_heads=4, n_encoder_layers=3, n_decoder_layers=3, d_ff=1024)
    return transformer_seq2seq(src_vocab_size, tgt_vocab_size, **{**sizes, **overrides})


def transformer_seq2seq_base(
    src_vocab_size: int, tgt_vocab_size: int, **overrides: Any
) -> TransformerSeq2Seq:
    """d_model 512, 8 heads, 6+6 layers, d_ff 2048: Vaswani et al.'s base Transformer."""
    sizes = dict(d_model=512, n_heads=8, n_encoder_layers=6, n_decoder_layers=6, d_ff=2048)
    return transformer_seq2seq(src_vocab_size, tgt_vocab_size, **{**sizes, **overrides})


def rnn_seq2seq(src_vocab_size: int, tgt_vocab_size: int, **fields: Any) -> RNNSeq2Seq:
    """An RNNSeq2Seq from its vocabulary sizes and any RNNSeq2SeqConfig fields."""
    return RNNSeq2Seq(RNNSeq2SeqConfig(src_vocab_size, tgt_vocab_size, **fields))


def rnn_seq2seq_small(src_vocab_size: int, tgt_vocab_size: int, **overrides: Any) -> RNNSeq2Seq:
    """GRU with Luong (general) attention, embed 64, hidden 256, 1 layer (examples/reverse_rnn.yaml)."""
    sizes = dict(embed_dim=64, hidden_dim=256, n_layers=1, cell="gru", attention="luong-general")
    return rnn_seq2seq(src_vocab_size, tgt_vocab_size, **{**sizes, **overrides})


def rnn_seq2seq_base(src_vocab_size: int, tgt_vocab_size: int, **overrides: Any) -> RNNSeq2Seq:
    """LSTM with Bahdanau attention, embed 256, hidden 512, 2 layers (Bahdanau et al.-like)."""
    sizes = dict(embed_dim=256, hidden_dim=512, n_layers=2, cell="lstm", attention="bahdanau")
    return rnn_seq2seq(src_vocab_size, tgt_vocab_size, **{**sizes, **overrides})


def gpt(vocab_size: int, **fields: Any) -> GPT:
    """A GPT from its vocabulary size and any GPTConfig fields."""
    return GPT(GPTConfig(vocab_size, **fields))


def gpt_small(vocab_size: int, **overrides: Any) -> GPT:
    """d_model 256, 4 heads, 4 layers, d_ff 1024: the config defaults."""
    sizes = dict(d_model=256, n_heads=4, n_layers=4, d_ff=1024)
    return gpt(vocab_size, **{**sizes, **overrides})


def gpt_base(vocab_size: int, **overrides: Any) -> GPT:
    """d_model 768, 12 heads, 12 layers, d_ff 3072, max_len 1024: GPT-2 small's shape."""
    sizes = dict(d_model=768, n_heads=12, n_layers=12, d_ff=3072, max_len=1024)
    return gpt(vocab_size, **{**sizes, **overrides})


def forecaster(context_len: int, horizon: int, **fields: Any) -> Forecaster:
    """A Forecaster from its window sizes and any ForecasterConfig fields."""
    return Forecaster(ForecasterConfig(context_len, horizon, **fields))
