"""Build a model from a name and a plain dict (what the command line and YAML configs give).

    build_model("transformer", {"src_vocab_size": 100, "tgt_vocab_size": 100, "d_model": 128})

Unknown names and unknown config keys raise ValueError naming the closest valid one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from treadmill.models._checks import closest_hint
from treadmill.models.forecaster import Forecaster, ForecasterConfig
from treadmill.models.gpt import GPT, GPTConfig
from treadmill.models.rnn_seq2seq import RNNSeq2Seq, RNNSeq2SeqConfig
from treadmill.models.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig

__all__ = ["MODELS", "build_model", "canonical_fields", "config_class"]

# name -> (config dataclass, builder from a config)
MODELS: dict[str, tuple[type, Callable[[Any], nn.Module]]] = {
    "transformer": (TransformerSeq2SeqConfig, TransformerSeq2Seq.from_config),
    "rnn": (RNNSeq2SeqConfig, RNNSeq2Seq.from_config),
    "gpt": (GPTConfig, GPT.from_config),
    "forecaster": (ForecasterConfig, Forecaster.from_config),
}


def canonical_fields(name: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """`fields` of model `name` with any older field name replaced by today's."""
    return dict(fields)


def config_class(name: str) -> type:
    """The config dataclass of a registered model name."""
    if name not in MODELS:
        raise ValueError(
            f"Unknown model name {name!r}; valid names are {sorted(MODELS)}.{closest_hint(name, MODELS)}"
        )
    return MODELS[name][0]


def build_model(name: str, config: Mapping[str, Any]) -> nn.Module:
    """The model called `name` ("transformer", "rnn", "gpt") built from a dict of config fields."""
    cfg_cls = config_class(name)
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
    return MODELS[name][1](cfg_cls(**dict(config)))
