"""Build a model from a name and a plain dict (what the command line and YAML configs give).

    build_model("transformer", {"src_vocab_size": 100, "tgt_vocab_size": 100, "d_model": 128})

Unknown names and unknown config keys raise ValueError naming the closest valid one.

Old key names still load (YAML configs and run directories written before the rename):
``CONFIG_ALIASES`` maps each family's old name to its canonical one. ``canonical_config`` rewrites
a mapping; when both names are given the canonical one wins and the old one is dropped.

    family        old name     canonical name
    rnn           num_layers   n_layers
    forecaster    num_layers   n_layers
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from treadmill.hf.config import HFModelConfig, build_hf_model
from treadmill.models._checks import closest_hint
from treadmill.models.forecaster import Forecaster, ForecasterConfig
from treadmill.models.gpt import GPT, GPTConfig
from treadmill.models.rnn_seq2seq import RNNSeq2Seq, RNNSeq2SeqConfig
from treadmill.models.set_encoder_seq2seq import SetEncoderSeq2Seq, SetEncoderSeq2SeqConfig
from treadmill.models.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig

__all__ = ["CONFIG_ALIASES", "MODELS", "build_model", "canonical_config", "config_class"]

# name -> (config dataclass, model class built from one config)
MODELS: dict[str, tuple[type, Callable[[Any], nn.Module]]] = {
    "transformer": (TransformerSeq2SeqConfig, TransformerSeq2Seq),
    "rnn": (RNNSeq2SeqConfig, RNNSeq2Seq),
    "gpt": (GPTConfig, GPT),
    "forecaster": (ForecasterConfig, Forecaster),
    "setencoder-seq2seq": (SetEncoderSeq2SeqConfig, SetEncoderSeq2Seq),
    # a transformers checkpoint directory (treadmill.hf; transformers imported only when built)
    "hf": (HFModelConfig, build_hf_model),
}

# name -> {old key: canonical key}: the one table of renamed config fields.
CONFIG_ALIASES: dict[str, dict[str, str]] = {
    "transformer": {},
    "rnn": {"num_layers": "n_layers"},
    "gpt": {},
    "forecaster": {"num_layers": "n_layers"},
    "setencoder-seq2seq": {},
    "hf": {},
}


def config_class(name: str) -> type:
    """The config dataclass of a registered model name."""
    if name not in MODELS:
        raise ValueError(
            f"Unknown model name {name!r}; valid names are {sorted(MODELS)}.{closest_hint(name, MODELS)}"
        )
    return MODELS[name][0]


def canonical_config(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """`config` with old key names of model `name` renamed to canonical ones (canonical wins)."""
    config_class(name)  # unknown names fail here, with the hint
    aliases = CONFIG_ALIASES.get(name, {})
    out: dict[str, Any] = {}
    for key, value in config.items():
        canonical = aliases.get(key, key)
        if canonical != key and canonical in config:
            continue  # both spellings given: the canonical value wins
        out[canonical] = value
    return out


def build_model(name: str, config: Mapping[str, Any]) -> nn.Module:
    """The model called `name` ("transformer", "rnn", "gpt", "forecaster", "setencoder-seq2seq") from a dict of fields."""
    cfg_cls = config_class(name)
    config = canonical_config(name, config)
    fields = {f.name for f in dataclasses.fields(cfg_cls)}
    for key in config:
        if key not in fields:
            raise ValueError(
                f"Unknown key {key!r} in the {name!r} model config ({cfg_cls.__name__})."
                f"{closest_hint(str(key), fields)} Valid keys: {sorted(fields)}."
            )
    required = [
        f.name
        for f in dataclasses.fields(cfg_cls)
        if f.default is dataclasses.MISSING and f.name not in config
    ]
    if required:
        raise ValueError(f"The {name!r} model config is missing required keys {required}.")
    return MODELS[name][1](cfg_cls(**config))
