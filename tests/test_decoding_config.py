"""GenerationConfig validation, keyword overrides and relative max lengths."""

from __future__ import annotations

import pytest
import torch

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID
from treadmill.decoding import GenerationConfig
from treadmill.decoding.config import resolve_config


def test_defaults_use_the_special_ids() -> None:
    cfg = GenerationConfig()
    assert (cfg.bos_id, cfg.eos_id, cfg.pad_id) == (BOS_ID, EOS_ID, PAD_ID)
    assert cfg.strategy == "greedy" and cfg.use_cache is True


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"strategy": "nucleus"}, "strategy"),
        ({"strategy": "beam", "beam_size": 0}, "beam_size"),
        ({"strategy": "sample", "top_p": 0.0}, "top_p"),
        ({"strategy": "sample", "top_p": 1.5}, "top_p"),
        ({"strategy": "sample", "top_k": -1}, "top_k"),
        ({"strategy": "sample", "temperature": 0.0}, "temperature"),
        ({"max_len": 0}, "max_len"),
        ({"min_len": 5, "max_len": 4}, "min_len"),
        ({"min_len": -1}, "min_len"),
        ({"max_len_b": -2}, "max_len_b"),
        ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
        ({"strategy": "beam", "beam_size": 2, "num_return_sequences": 3}, "num_return_sequences"),
        ({"num_return_sequences": 2}, "num_return_sequences"),
        ({"seed": 1.5}, "seed"),
        ({"beam_size": True}, "beam_size"),
    ],
)
def test_invalid_values_name_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        GenerationConfig(**overrides)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"temperature": 0.7}, "temperature"),
        ({"top_k": 5}, "top_k"),
        ({"strategy": "beam", "top_p": 0.9}, "top_p"),
        ({"beam_size": 3}, "beam_size"),
        ({"strategy": "sample", "length_penalty": 0.6}, "length_penalty"),
    ],
)
def test_a_field_of_another_strategy_raises(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"{field}.*only applies to strategy"):
        GenerationConfig(**overrides)


def test_unknown_override_names_the_closest_field() -> None:
    with pytest.raises(ValueError, match="Did you mean 'beam_size'"):
        resolve_config(None, {"beam_sise": 4})
    with pytest.raises(ValueError, match="Did you mean 'num_return_sequences'"):
        GenerationConfig().replace(num_return_sequence=2)


def test_overrides_apply_on_top_of_a_config_and_leave_it_unchanged() -> None:
    base = GenerationConfig(strategy="beam", beam_size=4, max_len=20)
    cfg = resolve_config(base, {"beam_size": 2, "length_penalty": 0.6})
    assert (cfg.strategy, cfg.beam_size, cfg.length_penalty, cfg.max_len) == ("beam", 2, 0.6, 20)
    assert base.beam_size == 4
    with pytest.raises(ValueError, match="must be a GenerationConfig"):
        resolve_config({"beam_size": 2}, {})  # type: ignore[arg-type]


def test_max_lengths_absolute_and_relative() -> None:
    src_lengths = torch.tensor([1, 4, 10, 40])
    assert GenerationConfig(max_len=7).max_lengths(src_lengths).tolist() == [7, 7, 7, 7]
    cfg = GenerationConfig(max_len=30, max_len_a=1.5, max_len_b=2)
    # int(1.5 * n + 2), capped by max_len
    assert cfg.max_lengths(src_lengths).tolist() == [3, 8, 17, 30]
    assert GenerationConfig(max_len_b=5).max_lengths(src_lengths).tolist() == [5, 5, 5, 5]


def test_length_normalization_is_checked_and_beam_only():
    from treadmill.decoding.beam import length_penalty

    with pytest.raises(ValueError, match="length_normalization='words' is not one of"):
        GenerationConfig(strategy="beam", length_normalization="words")
    with pytest.raises(ValueError, match="only applies to strategy='beam'"):
        GenerationConfig(length_normalization="length")
    assert length_penalty(9, 1.0, "length") == 9.0  # transformers: score / |Y| ** alpha
    assert length_penalty(7, 1.0) == 2.0  # GNMT: ((5 + 7) / 6) ** 1
