"""Sequence models that implement the decoding protocol: TransformerSeq2Seq, RNNSeq2Seq, GPT, ensembles."""

from treadmill.models.ensemble import Seq2SeqEnsemble
from treadmill.models.forecaster import Forecaster, ForecasterConfig
from treadmill.models.gpt import GPT, GPTConfig
from treadmill.models.protocol import DecoderOnlyModel, Seq2SeqModel, map_tensors
from treadmill.models.registry import MODELS, build_model, config_class
from treadmill.models.rnn_seq2seq import RNNSeq2Seq, RNNSeq2SeqConfig
from treadmill.models.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig

__all__ = [
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
    "TransformerSeq2Seq",
    "TransformerSeq2SeqConfig",
    "build_model",
    "config_class",
    "map_tensors",
]
