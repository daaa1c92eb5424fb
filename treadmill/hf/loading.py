"""load_pretrained / save_pretrained: a transformers checkpoint directory in and out of Treadmill."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

from torch import nn

from treadmill.hf._extra import require
from treadmill.hf.adapters import HFCausalLM, HFClassifier, HFSeq2Seq
from treadmill.hf.ids import IdMap, SpecialIds
from treadmill.hf.tokenizer import HFTokenizer
from treadmill.validation import ConfigError

__all__ = [
    "SUPPORTED",
    "TASKS",
    "PretrainedError",
    "UnsupportedArchitectureError",
    "SpecialTokenError",
    "Pretrained",
    "load_pretrained",
    "load_tokenizer",
    "save_pretrained",
]

# task -> (transformers Auto class, adapter, model_type values tested in tests/test_hf.py)
TASKS: dict[str, tuple[str, type[nn.Module]]] = {
    "seq2seq": ("AutoModelForSeq2SeqLM", HFSeq2Seq),
    "causal-lm": ("AutoModelForCausalLM", HFCausalLM),
    "classification": ("AutoModelForSequenceClassification", HFClassifier),
}
SUPPORTED: dict[str, tuple[str, ...]] = {
    "seq2seq": ("bart", "marian", "t5"),
    "causal-lm": ("gpt2", "llama"),
    "classification": ("bert", "gpt2", "llama"),
}


class PretrainedError(ConfigError):
    """A checkpoint directory Treadmill cannot load; the message names the file or field."""


class UnsupportedArchitectureError(PretrainedError):
    """The config's model_type is not one Treadmill supports for the task (the message lists them)."""


class SpecialTokenError(PretrainedError):
    """The model's special tokens cannot be mapped onto PAD, UNK, BOS, EOS."""


class Pretrained(NamedTuple):
    """What load_pretrained returns: the adapter model and the tokenizer (None without tokenizer.json)."""

    model: nn.Module
    tokenizer: HFTokenizer | None


def load_pretrained(path: str | Path, task: str = "seq2seq", **hf_kwargs: Any) -> Pretrained:
    """Load the transformers checkpoint in directory `path` as a Treadmill model plus its tokenizer.

    `task` is "seq2seq", "causal-lm" or "classification"; `hf_kwargs` go to from_pretrained
    (e.g. num_labels=6 for a new classification head, attn_implementation="eager").
    """
    transformers = require("transformers", "Loading a Hugging Face model")
    directory = Path(path)
    read_config(directory, task)
    auto_name, adapter = TASKS[task]
    hf_model = getattr(transformers, auto_name).from_pretrained(str(directory), **hf_kwargs)
    id_map, tokenizer = _ids_and_tokenizer(directory, task, hf_model.config, getattr(hf_model, "generation_config", None))
    return Pretrained(adapter(hf_model, id_map), tokenizer)


def load_tokenizer(path: str | Path, task: str = "seq2seq") -> HFTokenizer:
    """The tokenizer of checkpoint directory `path`, with the model's special ids mapped (no weights read)."""
    transformers = require("transformers", "Loading a Hugging Face tokenizer")
    directory = Path(path)
    read_config(directory, task)
    config = transformers.AutoConfig.from_pretrained(str(directory))
    generation = None
    if (directory / "generation_config.json").is_file():
        generation = transformers.GenerationConfig.from_pretrained(str(directory))
    _, tokenizer = _ids_and_tokenizer(directory, task, config, generation)
    if tokenizer is None:
        raise PretrainedError(
            f"{str(directory)!r} has no tokenizer.json; Treadmill reads the fast (tokenizers) format. "
            "Save one with AutoTokenizer.from_pretrained(...).save_pretrained(dir)"
        )
    return tokenizer


def _ids_and_tokenizer(directory: Path, task: str, config: Any, generation: Any) -> tuple[IdMap, HFTokenizer | None]:
    """The id map of a model (config + generation config) and its tokenizer.json, checked against each other."""
    special = special_ids(config, generation, task)
    vocab = int(config.get_text_config(decoder=True).vocab_size)
    raw_tokenizer = None
    if (directory / "tokenizer.json").is_file():
        tokenizers = require("tokenizers", "Reading a Hugging Face tokenizer.json")
        raw_tokenizer = tokenizers.Tokenizer.from_file(str(directory / "tokenizer.json"))
        special = check_tokenizer(raw_tokenizer, directory, special, vocab)
    id_map = IdMap(vocab, special)
    return id_map, HFTokenizer(raw_tokenizer, id_map) if raw_tokenizer is not None else None


def read_config(directory: Path, task: str | None) -> dict[str, Any]:
    """config.json of `directory`, refused when missing or of a model_type unsupported for `task`
    (None: supported for any generative task)."""
    if task is not None and task not in TASKS:
        raise PretrainedError(f"task={task!r} is not a pretrained-model task; use one of {sorted(TASKS)}")
    if not directory.is_dir():
        raise PretrainedError(
            f"model.path {str(directory)!r} is not a directory (expected a saved transformers model)"
        )
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise PretrainedError(
            f"{str(directory)!r} has no config.json, so it is not a transformers checkpoint directory; "
            "point model.path at the folder save_pretrained() or a hub download wrote"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PretrainedError(f"{config_file}: not valid JSON ({err})") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    allowed = SUPPORTED[task] if task is not None else SUPPORTED["seq2seq"] + SUPPORTED["causal-lm"]
    if model_type not in allowed:
        where = f"for task {task!r}" if task is not None else "for generation"
        raise UnsupportedArchitectureError(
            f"{config_file}: model_type {model_type!r} is not supported {where}; "
            f"supported: {', '.join(allowed)} ({_all_supported()})"
        )
    return dict(config)


def special_ids(config: Any, generation: Any, task: str) -> SpecialIds:
    """The model's PAD, UNK, BOS (decoder start) and EOS ids, from its generation config and config."""

    def field(name: str) -> int | None:
        for source in (generation, config):
            value = getattr(source, name, None) if source is not None else None
            if isinstance(value, (list, tuple)):
                if len(set(value)) > 1:
                    raise SpecialTokenError(
                        f"{name}={list(value)}: the model has several EOS/special ids, but Treadmill's "
                        f"decoder stops on one; set {name} to a single id in the config"
                    )
                value = value[0] if value else None
            if value is not None:
                return int(value)
        return None

    eos = field("eos_token_id")
    if eos is None and task != "classification":
        raise SpecialTokenError(
            "the model's config and generation_config have no eos_token_id, so Treadmill cannot tell "
            "where an output ends; set eos_token_id in config.json"
        )
    start = field("decoder_start_token_id") if task == "seq2seq" else field("bos_token_id")
    pad = field("pad_token_id")
    fallback = eos if eos is not None else (pad if pad is not None else 0)
    eos = fallback if eos is None else eos
    return SpecialIds(
        pad=fallback if pad is None else pad,
        unk=fallback,  # replaced by the tokenizer's unk token where it has one (check_tokenizer)
        bos=fallback if start is None else start,
        eos=eos,
    )


def check_tokenizer(tokenizer: Any, directory: Path, special: SpecialIds, model_size: int) -> SpecialIds:
    """Refuse a tokenizer whose special tokens do not match the model's ids; adopt its unk token."""
    where = directory / "tokenizer.json"
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    if size > model_size:
        raise SpecialTokenError(
            f"{where} has {size} tokens but the model's embedding has {model_size}; "
            "the tokenizer does not belong to this model"
        )
    for role, hf_id in special.as_dict().items():
        if hf_id >= size:
            raise SpecialTokenError(
                f"{where}: the model's {role} id {hf_id} has no token in the tokenizer ({size} tokens); "
                "the special tokens cannot be mapped onto PAD/UNK/BOS/EOS"
            )
    named = _named_special_tokens(directory)
    unk_token = named.get("unk") or getattr(getattr(tokenizer, "model", None), "unk_token", None)
    if unk_token and "unk" not in named and tokenizer.token_to_id(unk_token) is None:
        unk_token = None  # the tokenizer model names an unk token it does not have: nothing to adopt
    if unk_token:
        named["unk"] = unk_token
    for role, token in named.items():
        hf_id = tokenizer.token_to_id(token)
        if hf_id is None:
            raise SpecialTokenError(
                f"{directory / 'tokenizer_config.json'}: {role}_token {token!r} is not in {where}; "
                "the special tokens cannot be mapped onto PAD/UNK/BOS/EOS"
            )
        if role == "eos" and hf_id != special.eos:
            raise SpecialTokenError(
                f"{directory}: the tokenizer's eos_token {token!r} is id {hf_id} but the model's "
                f"eos_token_id is {special.eos}; the special tokens cannot be mapped"
            )
        if role == "unk":
            special = SpecialIds(special.pad, int(hf_id), special.bos, special.eos)
    return special


def _named_special_tokens(directory: Path) -> dict[str, str]:
    """{"eos": "</s>", "unk": "<unk>", ...} from tokenizer_config.json, where there is one."""
    path = directory / "tokenizer_config.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise PretrainedError(f"{path}: not valid JSON ({err})") from None
    out = {}
    for role in ("eos", "unk", "pad", "bos"):
        value = data.get(f"{role}_token")
        if isinstance(value, dict):  # the AddedToken form {"content": "</s>", ...}
            value = value.get("content")
        if isinstance(value, str):
            out[role] = value
    return out


def _all_supported() -> str:
    return "all tasks: " + "; ".join(f"{task}: {', '.join(types)}" for task, types in SUPPORTED.items())


def save_pretrained(model: nn.Module, directory: str | Path, tokenizer: HFTokenizer | None = None) -> Path:
    """Write `model` (an adapter from load_pretrained) as a directory transformers loads back."""
    hf_model: Any = getattr(model, "hf_model", None)
    if hf_model is None:
        raise PretrainedError(
            f"save_pretrained needs a model from treadmill.hf.load_pretrained; {type(model).__name__} has no hf_model"
        )
    from treadmill.peft import has_lora, merge_lora

    if has_lora(model):  # transformers reads plain weights: adapters go into them first
        hf_model = merge_lora(model).hf_model
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    hf_model.save_pretrained(str(out))
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    return out
