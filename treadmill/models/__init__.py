"""Sequence models that implement the decoding protocol: TransformerSeq2Seq, RNNSeq2Seq, GPT,
SetEncoderSeq2Seq, ensembles.

Each model is built from its config object (``TransformerSeq2Seq(TransformerSeq2SeqConfig(...))``)
or with a builder (``transformer_seq2seq(src_vocab_size, tgt_vocab_size, d_model=128)``, presets
such as ``transformer_seq2seq_small``); ``build_model(name, mapping)`` builds from a plain dict.
"""

from treadmill.models.builders import (
    forecaster,
    gpt,
    gpt_base,
    gpt_small,
    rnn_seq2seq,
    rnn_seq2seq_base,
    rnn_seq2seq_small,
    transformer_seq2seq,
    transformer_seq2seq_base,
    transformer_seq2seq_small,
    transformer_seq2seq_tiny,
)
from treadmill.models.ensemble import Seq2SeqEnsemble
from treadmill.models.forecaster import Forecaster, ForecasterConfig
from treadmill.models.gpt import GPT, GPTConfig
from treadmill.models.protocol import DecoderOnlyModel, Seq2SeqModel, map_tensors
from treadmill.models.registry import (
    CONFIG_ALIASES,
    MODELS,
    build_model,
    canonical_config,
    config_class,
)
from treadmill.models.rnn_seq2seq import RNNSeq2Seq, RNNSeq2SeqConfig
from treadmill.models.set_encoder_seq2seq import SetEncoderSeq2Seq, SetEncoderSeq2SeqConfig
from treadmill.models.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig

__all__ = [
    "CONFIG_ALIASES",
    "Forecaster",
    "ForecasterConfig",
    "GPT",
    "GPTConfig",
    "MODELS",
    "DecoderOnlyModel",
    "RNNSeq2Seq",
    "RNNSeq2SeqConfig",
    "Seq2SeqEnsemble",
    "Seq2SeqModel",
    "SetEncoderSeq2Seq",
    "SetEncoderSeq2SeqConfig",
    "TransformerSeq2Seq",
    "TransformerSeq2SeqConfig",
    "build_model",
    "canonical_config",
    "config_class",
    "forecaster",
    "gpt",
    "gpt_base",
    "gpt_small",
    "map_tensors",
    "rnn_seq2seq",
    "rnn_seq2seq_base",
    "rnn_seq2seq_small",
    "transformer_seq2seq",
    "transformer_seq2seq_base",
    "transformer_seq2seq_small",
    "transformer_seq2seq_tiny",
]
