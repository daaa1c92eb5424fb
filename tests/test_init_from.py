"""model.init_from (start from a finished run's weights) and lm-shakespeare's genres option."""

import json

import pytest
import torch
from cli_runs import train_config

from treadmill.cli import main
from treadmill.cli.build import build_model, build_task, resolve_model_sizes
from treadmill.cli.config import RunConfigError, run_config_from_dict
from treadmill.cli.merge_lora import export_merged
from treadmill.cli.run_dir import load_run
from treadmill.data.tasks.lm import build_lm_shakespeare
from treadmill.data.tasks.shakespeare import check_genres, genre_of, play_files, shakespeare_corpus
from treadmill.training.io_errors import CheckpointError
from treadmill.validation import ConfigError

TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
        "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n\n") * 30
OTHER = "HAMLET:\nTo be, or not to be: that is the question.\nWhether 'tis nobler in the mind to suffer\n\n" * 30
MODEL = {"name": "gpt", "d_model": 32, "n_heads": 2, "n_layers": 1, "d_ff": 64, "dropout": 0.0}


def _config(root, text_file="play.txt", steps=10, **model):
    return {"task": {"name": "lm-files", "options": {"train": str(root / text_file), "block_size": 16,
                                                      "cache_dir": str(root / "cache")}},
            "model": {**MODEL, **model},
            "data": {"batch_size": 8, "eval_batch_size": 16},
            "training": {"max_steps": steps, "validation_every_n_steps": 5, "progress_bar": False,
                         "optimizer": {"lr": 3.0e-3}},
            "evaluation": {"splits": ["test"], "max_batches": 1},
            "diagnostics": {"enabled": False}, "seed": 1}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("init")
    (root / "play.txt").write_text(TEXT)
    (root / "other.txt").write_text(OTHER)
    return root, train_config(root, "source", _config(root))


def _built(raw):
    config = run_config_from_dict(raw)
    resolve_model_sizes(config, build_task(config))
    return config


def test_init_from_loads_exactly_the_source_runs_evaluated_weights(source):
    root, run = source
    expected = load_run(run).model.state_dict()
    fresh = build_model(_built(_config(root)))
    assert any(not torch.equal(fresh.state_dict()[k], v) for k, v in expected.items())  # init differs
    started = build_model(_built({**_config(root), "model": {**MODEL, "init_from": str(run)}})).state_dict()
    assert started.keys() == expected.keys()
    assert all(torch.equal(started[k], v) for k, v in expected.items())


def test_full_and_lora_fine_tuning_from_a_run(source):
    root, run = source
    base = load_run(run).model.state_dict()
    full = train_config(root, "full", {**_config(root, steps=5), "model": {**MODEL, "init_from": str(run)}})
    tuned = load_run(full).model.state_dict()
    assert any(not torch.equal(tuned[k], base[k]) for k in base)  # every weight trained on
    lora = {"r": 2, "alpha": 4, "target_modules": ["in_proj", "out_proj"]}
    adapted = train_config(root, "lora", {**_config(root, steps=5), "model": {**MODEL, "init_from": str(run), "lora": lora}})
    summary = json.loads((adapted / "summary.json").read_text())
    assert 0 < summary["trainable_parameters"] < 0.2 * summary["parameters"]
    model = load_run(adapted).model  # adapters from its checkpoint, the frozen base from the source run again
    frozen = {k.replace(".base_layer", ""): v for k, v in model.named_parameters() if not v.requires_grad}
    frozen.update({k.replace(".base_layer", ""): v for k, v in model.named_buffers()})
    assert all(torch.equal(frozen[k], base[k]) for k in base if k in frozen)
    assert len([k for k in base if k in frozen]) >= len(base) - 1  # every base weight found (tied head aside)
    out = export_merged(adapted, adapted / "merged")  # whole weights: the merged config needs no source run
    assert "init_from" not in (out / "config.yaml").read_text() and "lora" not in (out / "config.yaml").read_text()


def test_another_vocabulary_is_refused_with_exit_2(source, capsys):
    root, run = source
    raw = {**_config(root, text_file="other.txt"), "model": {**MODEL, "init_from": str(run)}}
    path = root / "bad_vocab.yaml"
    path.write_text(json.dumps(raw))
    assert main(["train", str(path), "--run-dir", str(root / "bad_vocab")]) == 2
    err = capsys.readouterr().err
    assert "model.init_from" in err and "vocabulary" in err and "tokens" in err


def test_other_shapes_are_a_checkpoint_error_naming_init_from(source):
    root, run = source
    config = _built({**_config(root), "model": {**MODEL, "d_model": 16, "d_ff": 32, "init_from": str(run)}})
    with pytest.raises(CheckpointError, match="model.init_from=.*do not fit"):
        build_model(config)


def test_init_from_a_directory_that_is_no_run_is_refused(tmp_path, source):
    root, _ = source
    with pytest.raises(RunConfigError, match="not a run directory"):
        _built({**_config(root), "model": {**MODEL, "init_from": str(tmp_path)}})


def test_genres_select_the_plays_of_their_folders():
    tragedies = {p.stem for p in play_files(("tragedies",))}
    assert tragedies == {"hamlet", "king-lear", "macbeth", "othello", "romeo-and-juliet", "timon-of-athens"}
    both = play_files(check_genres(["tragedies", "comedies"]))
    assert {genre_of(p) for p in both} == {"comedies", "tragedies"} and len(both) == 8 + 6
    assert len(play_files()) == 38
    text = shakespeare_corpus(("tragedies",))
    assert "Hamlet" in text and "Macbeth" in text and "Twelfth Night" not in text


def test_genres_share_one_vocabulary_and_keep_their_own_splits(tmp_path):
    comedies = build_lm_shakespeare(genres=["comedies"], cache_dir=str(tmp_path))
    tragedies = build_lm_shakespeare(genres=["tragedies"], cache_dir=str(tmp_path))
    assert comedies.tgt_tokenizer.to_dict() == tragedies.tgt_tokenizer.to_dict()
    assert tragedies.texts["test"] == shakespeare_corpus(("tragedies",))[-len(tragedies.texts["test"]):]
    assert tragedies.texts["test"] not in comedies.texts["train"]
    assert comedies.split_sizes() != tragedies.split_sizes()


@pytest.mark.parametrize("genres", ["comedies", [], ["comedy"]])
def test_bad_genres_are_named_errors(genres):
    with pytest.raises(ConfigError, match="genres"):
        check_genres(genres)
