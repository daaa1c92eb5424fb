"""Classification heads (pooling), their metrics, and classification runs on the command line."""

import contextlib
import io
import json

import pytest
import torch
from cli_runs import train_config

from treadmill.classification import ClassificationTrainer
from treadmill.cli import main
from treadmill.cli.build import build_model, build_task, resolve_model_sizes
from treadmill.cli.config import run_config_from_dict
from treadmill.cli.run_dir import load_run
from treadmill.metrics.confusion import accuracy_of, confusion_matrix, macro_f1, per_class_scores
from treadmill.models.classifier import SequenceClassifier, pool
from treadmill.models.gpt import GPT, GPTConfig

BODY = {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "max_len": 32, "dropout": 0.0}


def _masked_batch():
    hidden = torch.randn(2, 5, 4)
    mask = torch.tensor([[False] * 5, [False, False, False, True, True]])
    return hidden, mask


def test_last_pooling_takes_the_last_real_token_of_each_row():
    hidden, mask = _masked_batch()
    out = pool(hidden, mask, "last")
    assert torch.equal(out[0], hidden[0, 4]) and torch.equal(out[1], hidden[1, 2])
    left = torch.tensor([[True, False, False, False, False], [True, True, False, False, True]])  # not only right pads
    assert torch.equal(pool(hidden, left, "last")[1], hidden[1, 3])


def test_mean_and_attention_pooling_ignore_pads():
    hidden, mask = _masked_batch()
    assert torch.allclose(pool(hidden, mask, "mean")[1], hidden[1, :3].mean(dim=0))
    scores = torch.randn(2, 5)
    changed = hidden.clone()
    changed[1, 3:] = 1e6  # what sits at the pads must not matter
    bigger = scores.clone()
    bigger[1, 3:] = 1e6
    for how, s, t in (("mean", None, None), ("attention", scores, bigger)):
        assert torch.allclose(pool(hidden, mask, how, s), pool(changed, mask, how, t if t is not None else s))
    weights = scores[1, :3].softmax(dim=0)
    assert torch.allclose(pool(hidden, mask, "attention", scores)[1], (weights[:, None] * hidden[1, :3]).sum(0))


@pytest.mark.parametrize("pooling", ["last", "mean", "attention"])
def test_a_padded_row_is_classified_as_it_is_alone(pooling):
    torch.manual_seed(0)
    model = SequenceClassifier(GPT(GPTConfig(vocab_size=20, **BODY)), 3, pooling).eval()
    src = torch.tensor([[5, 6, 7, 8, 9], [4, 11, 12, 0, 0]])
    mask = src == 0
    batch = model(src, mask)
    alone = model(src[1:, :3], mask[1:, :3])
    assert torch.allclose(batch[1], alone[0], atol=1e-5)
    assert not torch.allclose(model(src[1:], torch.zeros_like(mask[1:])), alone)  # reading the pads would differ


def test_accuracy_and_macro_f1_of_a_hand_made_confusion():
    true = torch.tensor([0, 0, 0, 1, 1, 2])
    predicted = torch.tensor([0, 0, 1, 1, 2, 2])
    counts = confusion_matrix(predicted, true, 4)  # class 3: neither true nor predicted
    assert counts[:3, :3].tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]] and counts[3].sum() == 0
    assert accuracy_of(counts) == pytest.approx(4 / 6)
    # F1 = 2TP / (2TP + FP + FN): class 0: 4/5, class 1: 2/4, class 2: 2/3; class 3 has none and is left out
    assert [row["f1"] for row in per_class_scores(counts)[:3]] == pytest.approx([0.8, 0.5, 2 / 3])
    assert macro_f1(counts) == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    never_predicted = confusion_matrix(torch.tensor([0, 0]), torch.tensor([0, 1]), 2)
    assert macro_f1(never_predicted) == pytest.approx((2 / 3 + 0.0) / 2)


def test_macro_f1_is_counted_over_the_whole_loader_not_averaged_per_batch():
    class Fixed(torch.nn.Module):  # predicts the class stored in the source's first token
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

        def forward(self, src, src_padding_mask):
            return torch.nn.functional.one_hot(src[:, 0], 2).float() * 10 + self.unused

    def batch(pred, label):
        return {"src": torch.tensor(pred)[:, None], "src_padding_mask": torch.zeros(len(pred), 1, dtype=torch.bool),
                "label": torch.tensor(label), "index": torch.arange(len(pred))}

    loader = [batch([0, 0], [0, 0]), batch([1, 0], [1, 1])]
    metrics = ClassificationTrainer(Fixed(), {"progress_bar": False}, None, None, num_labels=2).evaluate(loader)
    whole = confusion_matrix(torch.tensor([0, 0, 1, 0]), torch.tensor([0, 0, 1, 1]), 2)
    assert metrics["macro_f1"] == pytest.approx(macro_f1(whole)) == pytest.approx((0.8 + 2 / 3) / 2)
    assert metrics["accuracy"] == pytest.approx(0.75)


def _genre(root, name, steps=3, **model):
    return {"task": {"name": "shakespeare-genre", "options": {"min_chars": 20, "max_chars": 32}},
            "model": {"name": "gpt", **BODY, "head": {"type": "classification", "pooling": "mean"}, **model},
            "data": {"batch_size": 8, "eval_batch_size": 512},
            "training": {"max_steps": steps, "progress_bar": False, "monitor": "val_macro_f1"},
            "evaluation": {"splits": ["test"]}, "diagnostics": {"enabled": False}, "seed": 0}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A tiny language model on the comedies (the shared vocabulary) and a classifier from scratch."""
    root = tmp_path_factory.mktemp("genre")
    lm = {"task": {"name": "lm-shakespeare", "options": {"block_size": 32, "genres": ["comedies"],
                                                         "cache_dir": str(root / "cache")}},
          "model": {"name": "gpt", **BODY}, "data": {"batch_size": 4, "eval_batch_size": 8},
          "training": {"max_steps": 3, "progress_bar": False}, "evaluation": {"splits": ["test"], "max_batches": 1},
          "diagnostics": {"enabled": False}, "seed": 0}
    return root, train_config(root, "lm", lm), train_config(root, "scratch", _genre(root, "scratch"))


def test_train_writes_accuracy_macro_f1_and_the_confusion_matrix(runs):
    _, _, run = runs
    summary = json.loads((run / "summary.json").read_text())
    report = json.loads((run / "confusion_test.json").read_text())
    assert report["labels"] == ["comedies", "histories", "problems", "roman", "romances", "tragedies"]
    counts = torch.tensor(report["matrix"])
    assert counts.shape == (6, 6) and int(counts.sum()) == len(build_task(run_config_from_dict(_genre(run, "x"))).splits["test"])
    assert summary["test"]["accuracy"] == pytest.approx(accuracy_of(counts))
    assert summary["test"]["macro_f1"] == pytest.approx(macro_f1(counts))
    assert (run / "confusion_test.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "val_macro_f1" in (run / "metrics.csv").read_text().splitlines()[0]
    with contextlib.redirect_stdout(io.StringIO()) as out:  # eval rebuilds body + head from the run
        assert main(["eval", str(run), "--split", "test"]) == 0
    assert json.loads(out.getvalue().strip().splitlines()[-1])["accuracy"] == pytest.approx(summary["test"]["accuracy"])


def test_init_from_loads_the_language_models_body_and_a_new_head(runs):
    root, lm, _ = runs
    source = load_run(lm).model.state_dict()
    config = run_config_from_dict(_genre(root, "tuned", init_from=str(lm)))
    resolve_model_sizes(config, build_task(config))
    model = build_model(config)
    body = model.body.state_dict()
    assert body.keys() == source.keys() and all(torch.equal(body[k], v) for k, v in source.items())
    assert model.head.out_features == 6


def test_lora_trains_only_the_adapters_and_the_head(runs):
    root, lm, _ = runs
    lora = {"r": 2, "alpha": 4, "target_modules": ["in_proj", "out_proj"]}
    config = run_config_from_dict(_genre(root, "lora", init_from=str(lm), lora=lora))
    task = build_task(config)
    resolve_model_sizes(config, task)
    model = build_model(config)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainer = ClassificationTrainer(model, {"max_steps": 3, "progress_bar": False, "optimizer": {"lr": 1e-2}},
                                    task.loader("train", batch_size=8, seed=0), None, num_labels=6)
    trainer.fit()
    changed = {k for k, v in model.named_parameters() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k or k.startswith("head.") for k in changed)
    assert {k for k in before if k.startswith("head.")} <= changed
    assert set(model.state_dict()) == {k for k, v in model.named_parameters() if v.requires_grad}  # what checkpoints hold
    run = train_config(root, "lora_run", _genre(root, "lora_run", init_from=str(lm), lora=lora))
    summary = json.loads((run / "summary.json").read_text())
    assert 0 < summary["trainable_parameters"] < 0.2 * summary["parameters"]


def test_a_head_on_a_sequence_task_and_a_classification_task_without_head_are_refused(tmp_path, capsys):
    raw = _genre(tmp_path, "x")
    raw["model"].pop("head")
    path = tmp_path / "genre.yaml"
    path.write_text(json.dumps(raw))
    assert main(["train", str(path), "--run-dir", str(tmp_path / "a")]) == 2
    assert "model.head" in capsys.readouterr().err
    path.write_text(json.dumps({"task": {"name": "reverse"}, "model": {"name": "gpt", "head": {"pooling": "mean"}}}))
    assert main(["train", str(path), "--run-dir", str(tmp_path / "b")]) == 2
    assert "model.head classifies" in capsys.readouterr().err
    path.write_text(json.dumps({**_genre(tmp_path, "x"), "model": {"name": "gpt", "head": {"pooling": "max"}}}))
    assert main(["train", str(path), "--run-dir", str(tmp_path / "c")]) == 2
    assert "model.head.pooling" in capsys.readouterr().err
