"""Weighted sampling by an example field, metrics per group, module freezing, and their config errors."""

import math

import pytest
import torch

from treadmill.cli.config import RunConfigError, run_config_from_dict
from treadmill.data.tasks import get_task
from treadmill.data.weighted import WeightedEpochSampler, example_weights, realised_distribution
from treadmill.training.data_order import epoch_iterator, seed_epoch


def _sizes(task):
    return {k: v for k, v in task.model_sizes().items() if k != "vocab_size"}


@pytest.fixture(scope="module")
def task():
    return get_task("fewshot-rules", n_train=600, n_valid=96, n_test=96, seed=0)


def test_weighted_draws_match_the_weights_within_a_binomial_bound():
    values = [0] * 500 + [1] * 300 + [2] * 150 + [3] * 50  # seed 003's depths, mostly shallow
    weights = {"0": 1, "1": 2, "2": 3, "3": 4}
    sampler = WeightedEpochSampler(example_weights(values, weights), num_samples=20_000, seed=7)
    shares = realised_distribution(values, sampler.indices(0))
    mass = {v: weights[str(v)] * values.count(v) for v in range(4)}
    for v in range(4):
        p = mass[v] / sum(mass.values())
        bound = 4 * math.sqrt(p * (1 - p) / 20_000)  # 4 standard deviations of a binomial share
        assert abs(shares[str(v)] - p) < bound, (v, shares[str(v)], p)


def test_weighted_order_depends_on_seed_and_epoch_only_and_resumes_exactly(task):
    values = task.fields["train"]["depth"]
    loader = task.loader("train", batch_size=32, seed=3, sample_weights=example_weights(values, {"2": 3}))
    seed_epoch(loader, 3, 1)
    whole = [b["index"].tolist() for b in loader]
    seed_epoch(loader, 3, 0)  # some other epoch in between, as a resumed process would not have
    list(loader)
    seed_epoch(loader, 3, 1)
    resumed = [b["index"].tolist() for b in epoch_iterator(loader, skip=5)]
    assert resumed == whole[5:] and len(whole) == math.ceil(600 / 32)
    seed_epoch(loader, 3, 2)
    assert [b["index"].tolist() for b in loader] != whole  # epochs differ
    fresh = task.loader("train", batch_size=32, seed=3, sample_weights=example_weights(values, {"2": 3}))
    seed_epoch(fresh, 3, 1)
    assert [b["index"].tolist() for b in fresh] == whole


def test_group_metrics_sum_back_to_the_overall_metric(task):
    from treadmill.cli.build import group_fn
    from treadmill.models.registry import build_model
    from treadmill.seq2seq.evaluation import decode_loader

    torch.manual_seed(0)
    model = build_model("setencoder-seq2seq", {**_sizes(task), "d_model": 32, "n_heads": 4, "d_ff": 64}).eval()
    loader = task.loader("valid", batch_size=32)
    first = decode_loader(model, loader, {"max_len": 12}, keep_hypotheses=True)
    hyps = dict(zip(first.rows, (h[0] for h in first.hypotheses), strict=True))
    dataset = task.splits["valid"]

    def references(batch):  # every third example "right" so that groups score differently
        return [[hyps[int(i)] if int(i) % 3 == 0 else dataset.tgt_ids[int(i)][1:-1]] for i in batch["index"]]

    groups = group_fn(task, "valid", ["n_demos", "depth"])
    metrics = decode_loader(model, loader, {"max_len": 12}, references, groups=groups).metrics
    assert 0.3 < metrics["exact_match"] < 0.5
    for field, values in (("n_demos", (2, 3, 4)), ("depth", (1, 2))):
        counts = [metrics[f"n_examples/{field}={v}"] for v in values]
        assert sum(counts) == len(dataset)
        weighted = sum(c * metrics[f"exact_match/{field}={v}"] for c, v in zip(counts, values, strict=True))
        assert weighted / len(dataset) == pytest.approx(metrics["exact_match"], abs=1e-12)
        assert len({metrics[f"exact_match/{field}={v}"] for v in values}) > 1  # the groups do differ


def test_frozen_parameters_do_not_change_until_the_unfreeze_step(task):
    from treadmill import TrainingConfig
    from treadmill.callbacks import Callback
    from treadmill.models.registry import build_model
    from treadmill.seq2seq.trainer import Seq2SeqTrainer

    torch.manual_seed(0)
    model = build_model("setencoder-seq2seq", {**_sizes(task), "d_model": 32, "n_heads": 4, "d_ff": 64})
    snapshots = []

    class Snapshot(Callback):
        def on_after_optimizer_step(self, trainer):
            snapshots.append({n: p.detach().clone() for n, p in model.named_parameters()})

    initial = {n: p.detach().clone() for n, p in model.named_parameters()}
    config = TrainingConfig(epochs=1, max_steps=6, freeze=["pair_encoder", "set_encoder.cross_*"], unfreeze_at_step=3,
                            optimizer={"optimizer_class": "AdamW", "lr": 1e-2, "weight_decay": 0.1},
                            progress_bar=False, save_best_model=False, save_last_model=False, device="cpu")
    trainer = Seq2SeqTrainer(model, config, task.loader("train", batch_size=16), callbacks=[Snapshot()])
    messages = []
    trainer.print = messages.append
    trainer.fit()
    frozen = [n for n in initial if n.startswith(("pair_encoder.", "set_encoder.cross_blocks."))]
    others = [n for n in initial if n not in frozen and not n.startswith("src_positions")]
    assert frozen and len(snapshots) == 6
    for step in range(3):  # steps 1..3 run frozen (weight decay included)
        assert all(torch.equal(snapshots[step][n], initial[n]) for n in frozen), step
    assert all(not torch.equal(snapshots[3][n], initial[n]) for n in frozen if n.endswith("weight"))
    assert any(not torch.equal(snapshots[0][n], initial[n]) for n in others)
    assert any(m.startswith("Froze ") for m in messages) and any("Unfroze" in m and "step 3" in m for m in messages)
    assert all(p.requires_grad for p in model.parameters())


BASE = {
    "task": {"name": "fewshot-rules", "options": {"n_train": 100, "max_depth": 2}},
    "model": {"name": "setencoder-seq2seq", "d_model": 32, "n_heads": 4},
}


def _load(**sections):
    return run_config_from_dict({**BASE, **sections})


def test_fields_weights_and_freeze_patterns_are_checked_at_config_load():
    config = _load(data={"sample_weights": {"by": "depth", "weights": {1: 1, 2: 3}}},
                   evaluation={"group_by": ["n_demos", "depth"]}, training={"freeze": ["pair_encoder*"]})
    assert config.data.weight_of() == ("depth", {"1": 1.0, "2": 3.0})
    with pytest.raises(RunConfigError, match=r"group_by='length'.*its fields: rule, n_demos, depth"):
        _load(evaluation={"group_by": "length"})
    with pytest.raises(RunConfigError, match=r"sample_weights.by='level'.*its fields: rule, n_demos, depth"):
        _load(data={"sample_weights": {"by": "level", "weights": {1: 2}}})
    with pytest.raises(RunConfigError, match=r"depth=3, which never occur.*takes the values 1, 2"):
        _load(data={"sample_weights": {"by": "depth", "weights": {1: 1, 3: 4}}})
    with pytest.raises(RunConfigError, match=r"'encoder' matches no module.*pair_encoder, .*set_encoder"):
        _load(training={"freeze": ["encoder"]})
    with pytest.raises(RunConfigError, match="max_tokens"):
        _load(data={"max_tokens": 512, "sample_weights": {"by": "depth", "weights": {1: 1}}})
    with pytest.raises(RunConfigError, match="unfreeze_at_step"):
        _load(training={"unfreeze_at_step": 5})
    with pytest.raises(RunConfigError, match="no example field"):  # a task without fields lists none
        run_config_from_dict({"task": {"name": "reverse"}, "evaluation": {"group_by": "rule"}})


@pytest.mark.slow
def test_a_sweep_of_named_rows_tabulates_groups_times_and_alarms(tmp_path):
    import csv

    from treadmill.cli.sweep import run_sweep

    config = tmp_path / "fewshot.yaml"
    config.write_text(
        "task: {name: fewshot-rules, options: {n_train: 64, n_valid: 32, n_test: 32, max_depth: 1}}\n"
        "model: {name: setencoder-seq2seq, d_model: 16, n_heads: 2, d_ff: 32, pair_layers: 1, n_decoder_layers: 1}\n"
        "data: {batch_size: 32, eval_batch_size: 32}\n"
        "training: {epochs: 1, progress_bar: false, optimizer: {lr: 1.0e-3}}\n"
        "seq2seq: {generation: {max_len: 12}}\n"
        "evaluation: {group_by: [n_demos, depth], samples: 0}\n"
        "diagnostics: {enabled: false}\n")
    rows = tmp_path / "rows.yaml"
    rows.write_text(
        "rows:\n"
        "  - {name: E0}\n"
        "  - {name: E7, overrides: {model.pooling: attention, training.freeze: [pair_encoder]}}\n"
        "  - {name: W, overrides: {data.sample_weights: {by: n_demos, weights: {2: 1, 4: 3}}}}\n")
    table = run_sweep(config, ["training.max_grad_norm=1.0"], tmp_path / "sweep", rows_path=rows)
    assert [r["row"] for r in table] == ["E0", "E7", "W"] and all(r["status"] == "ok" for r in table)
    assert table[1]["overrides"] == 'model.pooling=attention training.freeze=["pair_encoder"] training.max_grad_norm=1.0'
    assert (tmp_path / "sweep" / "E7-max_grad_norm=1.0" / "summary.json").exists()
    with open(tmp_path / "sweep" / "experiments.csv") as handle:
        header = next(csv.reader(handle))
    for column in ("row", "test:exact_match", "test:exact_match/n_demos=2", "test:exact_match/depth=1", "train_s", "alarms"):
        assert column in header
    assert not any(c.startswith("test:bleu/") for c in header)  # groups: exact match only


def test_rows_files_are_checked_before_anything_trains(tmp_path):
    from treadmill.cli.sweep import read_rows, run_sweep

    config = tmp_path / "fewshot.yaml"
    config.write_text("task: {name: fewshot-rules, options: {n_train: 64}}\nmodel: {name: setencoder-seq2seq}\n")
    bad = tmp_path / "bad.yaml"
    bad.write_text("rows:\n  - {name: E0}\n  - {name: E0, overrides: {model.d_model: 8}}\n")
    with pytest.raises(RunConfigError, match="used twice"):
        read_rows(bad)
    bad.write_text("rows:\n  - {name: E1, overrides: {training.overfit_batches: 4}}\n"
                   "  - {name: E9, overrides: {model.layer_scale: 1.0e-4}}\n")
    with pytest.raises(RunConfigError, match="layer_scale_init"):  # row E9's typo, found before E1 trains
        run_sweep(config, [], tmp_path / "sweep", rows_path=bad)
    assert not (tmp_path / "sweep").exists()
    bad.write_text("rows: {E0: {}}\n")
    with pytest.raises(RunConfigError, match="non-empty list"):
        read_rows(bad)
