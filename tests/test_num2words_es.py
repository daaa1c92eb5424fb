"""num2words-en-es and the shared fr + es target vocabulary that lets an en-fr model start an en-es run."""

import contextlib
import io
import json

import pytest
import torch

from treadmill.cli import main
from treadmill.cli.build import build_model, build_task, resolve_model_sizes
from treadmill.cli.config import RunConfigError, run_config_from_dict
from treadmill.cli.run_dir import load_run
from treadmill.constants import UNK_ID
from treadmill.data.tasks import get_task
from treadmill.validation import ConfigError

SIZES = {"n_train": 60, "n_valid": 10, "n_test": 20, "seed": 3}


@pytest.fixture(scope="module")
def es():
    return get_task("num2words-en-es", **SIZES)


def test_split_sizes_and_spanish_targets_are_num2words(es):
    from num2words import num2words

    assert es.split_sizes() == {"train": 60, "valid": 10, "test": 20}
    for split, numbers in es.metadata["numbers"].items():
        pairs = es.splits[split].pairs
        assert pairs == [(num2words(n, lang="en"), num2words(n, lang="es")) for n in numbers]
    assert not set(es.metadata["numbers"]["test"]) & set(es.metadata["numbers"]["train"])


def test_the_task_is_deterministic_and_holds_out_en_frs_numbers(es):
    again = get_task("num2words-en-es", **SIZES)
    assert all(again.splits[s].pairs == es.splits[s].pairs for s in es.splits)
    fr = get_task("num2words-en-fr", **SIZES, shared_vocab=True)
    assert fr.metadata["numbers"] == es.metadata["numbers"]  # same seed and sizes: the same numbers
    other = get_task("num2words-en-es", **{**SIZES, "seed": 4})
    assert other.metadata["numbers"]["test"] != es.metadata["numbers"]["test"]


def test_the_shared_vocabulary_covers_both_languages_and_en_fr_keeps_its_own(es):
    fr_shared = get_task("num2words-en-fr", **SIZES, shared_vocab=True)
    fr_own = get_task("num2words-en-fr", **SIZES)
    assert fr_shared.tgt_tokenizer.to_dict() == es.tgt_tokenizer.to_dict()
    assert fr_shared.src_tokenizer.to_dict() == es.src_tokenizer.to_dict()
    assert fr_own.tgt_tokenizer.vocab_size < es.tgt_tokenizer.vocab_size
    for task in (es, fr_shared):
        for split in task.splits.values():
            assert all(UNK_ID not in task.tgt_tokenizer.encode(tgt) for _, tgt in split.pairs)
            assert all(task.tgt_tokenizer.decode(task.tgt_tokenizer.encode(tgt)) == tgt for _, tgt in split.pairs)


@pytest.mark.parametrize("options", [{"n_train": -1}, {"shared_vocab": "yes"}])
def test_bad_options_are_named(options):
    with pytest.raises(ValueError, match=next(iter(options))):
        get_task("num2words-en-es", **{**SIZES, **options})


MODEL = {"name": "transformer", "d_model": 16, "n_heads": 2, "n_encoder_layers": 1, "n_decoder_layers": 1, "d_ff": 32}


def _config(task, steps=2, **model):
    return {"task": {"name": task, "options": dict(SIZES)}, "model": {**MODEL, **model},
            "data": {"batch_size": 16, "eval_batch_size": 20},
            "training": {"max_steps": steps, "progress_bar": False},
            "seq2seq": {"generation": {"max_len": 24}, "val_decode_batches": 1},
            "evaluation": {"splits": ["test"], "samples": 0}, "diagnostics": {"enabled": False}, "seed": 0}


def test_init_from_an_en_fr_run_starts_en_es_from_its_weights(tmp_path):
    raw = _config("num2words-en-fr")
    raw["task"]["options"]["shared_vocab"] = True
    path = tmp_path / "fr.yaml"
    path.write_text(json.dumps(raw))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", str(path), "--run-dir", str(tmp_path / "fr")]) == 0
    source = load_run(tmp_path / "fr").model.state_dict()
    config = run_config_from_dict(_config("num2words-en-es", init_from=str(tmp_path / "fr")))
    resolve_model_sizes(config, build_task(config))
    started = build_model(config).state_dict()
    assert started.keys() == source.keys() and all(torch.equal(started[k], v) for k, v in source.items())
    # An en-fr run with its own (French-only) vocabulary cannot start en-es: its rows mean other words.
    own = _config("num2words-en-fr")
    path.write_text(json.dumps(own))
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", str(path), "--run-dir", str(tmp_path / "fr_own")]) == 0
    config = run_config_from_dict(_config("num2words-en-es", init_from=str(tmp_path / "fr_own")))
    with pytest.raises(RunConfigError, match="tgt vocabulary"):
        resolve_model_sizes(config, build_task(config))


def test_lora_trainable_modules_train_in_full_beside_the_adapters():
    from treadmill.models.transformer_seq2seq import TransformerSeq2Seq, TransformerSeq2SeqConfig
    from treadmill.peft import LoraSettings, apply_lora

    torch.manual_seed(0)
    model = TransformerSeq2Seq(TransformerSeq2SeqConfig(src_vocab_size=12, tgt_vocab_size=14, d_model=16, n_heads=2,
                                                        n_encoder_layers=1, n_decoder_layers=1, d_ff=32))
    apply_lora(model, LoraSettings.from_dict({"r": 2, "target_modules": ["in_proj"], "trainable": ["tgt_embedding"]}))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    src, tgt = torch.randint(4, 12, (3, 5)), torch.randint(4, 14, (3, 6))
    for _ in range(2):  # B starts at zero: A moves from the second step
        optimizer.zero_grad()
        model(src, tgt[:, :-1]).logsumexp(-1).mean().backward()
        optimizer.step()
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    assert "tgt_embedding.weight" in changed and any("lora_A" in k for k in changed)
    assert all("lora_" in k or k == "tgt_embedding.weight" for k in changed)
    assert "tgt_embedding.weight" in model.state_dict()  # checkpoints hold it with the adapters
    with pytest.raises(ConfigError, match="model.lora.trainable"):
        apply_lora(TransformerSeq2Seq(model.config), LoraSettings(target_modules=("in_proj",), trainable=("nope",)))
