"""The command line: errors without tracebacks, a tiny end-to-end run, eval, generate, sweep."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from treadmill.data.tasks.g2p import strip_stress_digits as strip_stress

TINY = """
task: {name: reverse, options: {alphabet_size: 6, min_len: 2, max_len: 4, n_train: 300, n_valid: 40, n_test: 40}}
model: {name: transformer, d_model: 16, n_heads: 2, n_encoder_layers: 1, n_decoder_layers: 1, d_ff: 32, dropout: 0.0}
data: {batch_size: 32, eval_batch_size: 40}
training: {epochs: 2, progress_bar: false, optimizer: {lr: 3.0e-3}}
seq2seq: {generation: {max_len: 8}}
evaluation: {samples: 2}
diagnostics: {enabled: false}
"""


def treadmill(*args, cwd=None, stdin=None):
    return subprocess.run([sys.executable, "-m", "treadmill.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, input=stdin, timeout=600)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    config = root / "tiny.yaml"
    config.write_text(TINY)
    result = treadmill("train", config, "--run-dir", root / "run")
    assert result.returncode == 0, result.stdout + result.stderr
    return root, config, result


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "no_such.yaml"], "Config file 'no_such.yaml' does not exist"),
        (["eval", "no_such_dir"], "is not a run directory"),
    ],
)
def test_missing_files_give_one_paragraph_and_exit_2(tmp_path, args, message):
    result = treadmill(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1


def test_bad_override_and_unknown_task_name_the_fix(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(TINY)
    bad_key = treadmill("train", config, "model.d_modle=8", cwd=tmp_path)
    assert bad_key.returncode == 2 and "Did you mean 'model.d_model'?" in bad_key.stderr
    bad_syntax = treadmill("train", config, "model.d_model", cwd=tmp_path)
    assert bad_syntax.returncode == 2 and "dotted.key=value" in bad_syntax.stderr
    unknown_task = treadmill("train", config, "task.name=revers", cwd=tmp_path)
    assert unknown_task.returncode == 2 and "reverse" in unknown_task.stderr
    assert "Traceback" not in bad_key.stderr + bad_syntax.stderr + unknown_task.stderr


def test_train_writes_the_run_directory(tiny_run):
    root, _, result = tiny_run
    run = root / "run"
    for name in ("config.yaml", "metrics.csv", "summary.json", "predictions.tsv", "tokenizers/src.json",
                 "tokenizers/tgt.json", "checkpoints/last.pt", "checkpoints/best.safetensors"):
        assert (run / name).exists(), name
    assert list(run.glob("events.out.tfevents.*")), "no TensorBoard events"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["parameters"] > 0 and summary["epochs"] == 2 and "exact_match" in summary["test"]
    with open(run / "metrics.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2
    with open(run / "predictions.tsv") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows[0] == ["source", "reference", "hypothesis", "score", "rank"] and len(rows) == 41
    # one hypothesis per source here, each with its summed log-probability (EOS included)
    assert all(row[4] == "1" and float(row[3]) < 0 for row in rows[1:])
    assert b"\r" not in (run / "predictions.tsv").read_bytes()  # plain lines for cut and awk
    lines = result.stdout.splitlines()
    assert any(line.startswith("test (40 examples): exact match ") for line in lines)
    # samples=2 over 40 test rows: rows 0 and 20, marked right or wrong as the predictions file has them
    header = lines.index("test samples, 2 spread over 40 rows (greedy decoding):")
    shown = [line.split("'")[1] for line in lines[header + 1:header + 3]]
    assert shown == [rows[1][0], rows[21][0]]
    for line, row in zip(lines[header + 1:header + 3], (rows[1], rows[21]), strict=True):
        assert line.strip().startswith("✓" if row[2] == row[1] else "✗")
    assert "history" not in json.loads(lines[-1]) and "test" in json.loads(lines[-1])
    # not a terminal: one plain summary line per epoch, then the plain end-of-run report
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    epochs = [line for line in lines if line.startswith("Epoch ")]
    assert len(epochs) == 2 and "loss " in epochs[1] and "[best " in epochs[1]
    report = lines[lines.index("Run report"):-1]
    assert report[-1] == f"Run directory: {run}"
    assert any(line.startswith("  model:       TransformerSeq2Seq: ") for line in report)
    assert any(line.startswith("  best:        val_loss ") for line in report)
    assert f"  weights:     {run / 'checkpoints' / 'best.safetensors'} (evaluated)" in report


def test_g2p_validation_and_test_report_wer_as_the_share_of_wrong_words(tmp_path):
    # Both must follow the task's convention (a word is wrong if any phoneme is), so that the
    # val_wer a run monitors is the test wer it reports, not the phoneme error rate.
    config = tmp_path / "g2p.yaml"
    config.write_text(TINY.replace("name: reverse, options: {alphabet_size: 6, min_len: 2, max_len: 4, "
                                   "n_train: 300, n_valid: 40, n_test: 40}",
                                   "name: g2p-cmudict, options: {max_words: 2000}")
                      .replace("max_len: 8", "max_len: 16").replace("epochs: 2", "epochs: 1"))
    result = treadmill("train", config, "--run-dir", tmp_path / "run")
    assert result.returncode == 0, result.stdout + result.stderr
    with open(tmp_path / "run" / "metrics.csv") as handle:
        (epoch,) = list(csv.DictReader(handle))
    assert float(epoch["val_wer"]) == pytest.approx(1.0 - float(epoch["val_exact_match"]))
    test = json.loads((tmp_path / "run" / "summary.json").read_text())["test"]
    assert test["wer"] == pytest.approx(1.0 - test["exact_match"])
    assert test["wer_nostress"] == pytest.approx(1.0 - test["exact_match_nostress"])
    # removing stress digits can only remove errors
    assert test["wer_nostress"] <= test["wer"] and test["per_nostress"] <= test["per"]
    assert "% with stress;  WER " in result.stdout and "% without;  exact match " in result.stdout


def test_a_forecast_example_trains_from_the_command_line_and_reports_mase(tmp_path):
    example = Path(__file__).parents[1] / "examples" / "forecast_sunspots.yaml"
    result = treadmill("train", example, "--run-dir", tmp_path / "run", "training.epochs=2")
    assert result.returncode == 0, result.stdout + result.stderr
    test = json.loads((tmp_path / "run" / "summary.json").read_text())["test"]
    assert test["mase"] > 0 and test["seasonal_naive_mase"] > 0 and test["naive_mase"] > 0
    assert f"MASE {test['mase']:.3f} (seasonal-naive {test['seasonal_naive_mase']:.3f}" in result.stdout


def test_own_tsv_files_train_from_the_command_line_and_eval_rescores_them(tmp_path):
    for split, numbers in (("train", range(300)), ("valid", range(300, 340)), ("test", range(340, 380))):
        (tmp_path / f"{split}.tsv").write_text("".join(f"{' '.join(str(n))}\t{' '.join(str(n)[::-1])}\n" for n in numbers))
    config = tmp_path / "files.yaml"
    config.write_text(TINY.replace("name: reverse, options: {alphabet_size: 6, min_len: 2, max_len: 4, "
                                   "n_train: 300, n_valid: 40, n_test: 40}",
                                   "name: files, options: {train: train.tsv, valid: valid.tsv, test: test.tsv}"))
    trained = treadmill("train", config, "--run-dir", "run", cwd=tmp_path)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "test (40 examples): exact match " in trained.stdout
    reported = json.loads((tmp_path / "run" / "summary.json").read_text())["test"]
    rescored = _last_json(treadmill("eval", "run", cwd=tmp_path))
    assert rescored["exact_match"] == reported["exact_match"]
    assert rescored["loss"] == pytest.approx(reported["loss"], rel=1e-5)


def test_strip_stress_removes_only_the_stress_digits():
    assert strip_stress("HH AH0 L OW1") == "HH AH L OW"
    assert strip_stress("EY2 B IY2 D IY1") == "EY B IY D IY"
    assert strip_stress("K AE1 T S") == "K AE T S"  # consonants carry no digit and are kept


def test_eval_refuses_task_data_that_no_longer_encodes_as_in_training(tiny_run):
    root, _, _ = tiny_run
    # a smaller alphabet refits a smaller vocabulary: the test split's ids would mean other symbols
    result = treadmill("eval", root / "run", "task.options.alphabet_size=5")
    assert result.returncode == 2
    assert "differs from the run's" in result.stderr and "src.json" in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_prints_json_on_its_last_line(tiny_run):
    root, _, _ = tiny_run
    result = treadmill("eval", root / "run", "--split", "valid")
    assert result.returncode == 0, result.stderr
    metrics = json.loads(result.stdout.strip().splitlines()[-1])
    assert 0.0 <= metrics["exact_match"] <= 1.0 and "per" in metrics


def test_generate_prints_one_output_per_input(tiny_run):
    root, _, _ = tiny_run
    result = treadmill("generate", root / "run", "a1 a2 a3", "a0 a4")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 2
    piped = treadmill("generate", root / "run", stdin="a1 a2\na3 a4 a5\na0 a1\n")
    assert len(piped.stdout.strip().splitlines()) == 3


def test_generate_keeps_blank_lines_so_outputs_line_up_with_inputs(tiny_run):
    root, _, _ = tiny_run
    alone = treadmill("generate", root / "run", "a1 a2", "a3 a4").stdout.splitlines()
    piped = treadmill("generate", root / "run", stdin="a1 a2\n\na3 a4\n")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.split("\n")[:3] == [alone[0], "", alone[1]]


def test_generate_prints_n_scored_hypotheses_per_input(tiny_run):
    root, _, _ = tiny_run
    beam = ["--set", "strategy=beam", "--set", "beam_size=5"]
    best = treadmill("generate", root / "run", *beam, stdin="a1 a2\na3 a0 a4\n").stdout.splitlines()
    result = treadmill("generate", root / "run", *beam, "--set", "num_return_sequences=3", stdin="a1 a2\n\na3 a0 a4\n")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [(line[0], line[1]) for line in lines] == [
        ("a1 a2", "1"), ("a1 a2", "2"), ("a1 a2", "3"), ("", ""), ("a3 a0 a4", "1"), ("a3 a0 a4", "2"), ("a3 a0 a4", "3")]
    for group in (lines[0:3], lines[4:7]):
        scores = [float(line[2]) for line in group]
        assert scores == sorted(scores, reverse=True) and all(score < 0 for score in scores)
        assert len({line[3] for line in group}) == 3  # three different hypotheses
    assert [lines[0][3], lines[4][3]] == best  # the first of the n is the beam's one best


def test_generate_decodes_with_a_decoder_only_run(tmp_path):
    model_line = next(line for line in TINY.splitlines() if line.startswith("model:"))
    gpt = "model: {name: gpt, d_model: 16, n_heads: 2, n_layers: 1, d_ff: 32, max_len: 32, dropout: 0.0}"
    config = tmp_path / "gpt.yaml"
    config.write_text(TINY.replace(model_line, gpt))
    # Diagnostics on with the default watch list, which a model without an encoder must skip.
    trained = treadmill("train", config, "--run-dir", tmp_path / "gpt", "training.epochs=1",
                        "diagnostics.enabled=true", "diagnostics.every_n_steps=2")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    with open(tmp_path / "gpt" / "predictions.tsv") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))[:2]
    result = treadmill("generate", tmp_path / "gpt", *(row["source"] for row in rows))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    # one line per input, as the run's own evaluation decoded them
    assert result.stdout.splitlines() == [row["hypothesis"] for row in rows]


def test_sweep_runs_the_grid_into_a_table_and_skips_finished_runs(tiny_run, tmp_path):
    _, config, _ = tiny_run
    args = ("sweep", config, "model.d_model=8,16", "training.epochs=1", "--sweep-dir", tmp_path / "sweep")
    first = treadmill(*args)
    assert first.returncode == 0, first.stdout + first.stderr
    table = (tmp_path / "sweep" / "experiments.md").read_text().strip().splitlines()
    assert len(table) == 2 + 2  # header, rule, two runs
    assert "d_model=8" in table[2] and "d_model=16" in table[3] and "| ok |" in table[2]
    with open(tmp_path / "sweep" / "experiments.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2
    second = treadmill(*args)
    assert second.stdout.count("finished before; skipped") == 2


def test_sweep_records_a_failing_run_and_goes_on(tiny_run, tmp_path):
    _, config, _ = tiny_run
    # average_last=2 validates (two checkpoints are kept) but one epoch writes only one: that run
    # fails after training, when its weights are averaged
    result = treadmill("sweep", config, "evaluation.average_last=2,null", "training.epochs=1",
                       "training.keep_last_checkpoints=2", "--sweep-dir", tmp_path / "sweep")
    assert result.returncode == 1, result.stderr  # the table is complete, and the exit code says a run failed
    assert "2 runs (1 failed)" in result.stdout
    rows = list(csv.DictReader(open(tmp_path / "sweep" / "experiments.csv")))
    assert [r["status"] for r in rows] == ["failed", "ok"]
    assert "needs 2 kept checkpoints" in rows[0]["error"]


def test_a_bad_model_value_fails_validate_train_and_sweep_before_anything_is_written(tiny_run, tmp_path):
    _, config, _ = tiny_run
    for args in (("validate", config), ("train", config, "--run-dir", tmp_path / "run"),
                 ("sweep", config, "model.d_model=32,16", "--sweep-dir", tmp_path / "sweep")):
        # n_heads=3 divides neither d_model=16 nor 32
        result = treadmill(*args, "model.n_heads=3", cwd=tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "model.n_heads" in result.stderr and "d_model" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no run directory, no sweep table


def test_validate_prints_the_resolved_config_and_writes_nothing(tmp_path):
    import yaml

    examples = Path(__file__).parents[1] / "examples"
    result = treadmill("validate", examples / "g2p.yaml", "training.epochs=2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert resolved["training"]["epochs"] == 2 and resolved["model"]["d_model"] == 128
    assert resolved["data"]["num_workers"] == 0 and resolved["training"]["log_frequency"] == 50  # defaults and file
    assert list(tmp_path.iterdir()) == []


def test_tasks_lists_every_builtin_task():
    result = treadmill("tasks")
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.strip().splitlines()}
    assert {"reverse", "g2p-cmudict", "num2words-en-fr", "forecast-sunspots", "forecast-co2"} <= set(lines)
    # each with its split sizes, e.g. the G2P split of docs/results.md
    assert "train 120,720, valid 6,187, test 6,172" in lines["g2p-cmudict"]
    user_files = {"files", "lm-files"}  # nothing to count until the user names their files
    assert all("train " in line and "test " in line for name, line in lines.items() if name not in user_files)
    assert all("(the sizes of your files)" in lines[name] for name in user_files)


def test_generate_writes_the_attention_heatmap_and_plot_overlays_runs(tiny_run, tmp_path):
    import matplotlib.image

    root, _, _ = tiny_run
    png = tmp_path / "attention.png"
    result = treadmill("generate", root / "run", "a1 a2 a3", "--attention", png, "--layer", "1", "--head", "2")
    assert result.returncode == 0, result.stderr
    assert f"Wrote {png}" in result.stderr and len(result.stdout.splitlines()) == 1  # stdout keeps the output only
    height, width = matplotlib.image.imread(png).shape[:2]
    assert width == 410  # one head, four source tokens (a1 a2 a3 <eos>): (0.4 x 4 + 2.5) inches at 100 dpi
    plotted = treadmill("plot", root / "run", root / "run", "--metrics", "loss,val_loss")
    assert plotted.returncode == 0, plotted.stderr
    curves = root / "run" / "curves.png"  # by default in the (first) run directory, and it says so
    assert plotted.stdout.strip() == f"Wrote {curves}"
    assert matplotlib.image.imread(curves).shape[:2] == (400, 960)  # loss and learning-rate panels
    bad = treadmill("plot", root / "run", "--metrics", "blue")
    assert bad.returncode == 2 and "['blue']" in bad.stderr and "bleu, " in bad.stderr and "Traceback" not in bad.stderr


def test_eval_on_a_terminal_shows_decoding_progress_and_still_ends_with_json(tiny_run):
    import os
    import pty
    import re

    root, _, _ = tiny_run
    leader, follower = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "treadmill.cli", "eval", str(root / "run")],
                               stdin=follower, stdout=follower, stderr=follower, env={**os.environ, "COLUMNS": "120"})
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=600) == 0
    raw = b"".join(chunks).decode("utf-8", "replace")
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw)
    assert "decoding test" in text and "━" in text and "/40" in text  # the bar, counting the 40 test rows
    metrics = json.loads(text.replace("\r", "").strip().splitlines()[-1])
    assert 0.0 <= metrics["exact_match"] <= 1.0


def test_overrides_may_follow_options():
    from treadmill.cli import _parse

    args = _parse(["train", "c.yaml", "model.d_model=8", "--run-dir", "out", "training.epochs=3"])
    assert args.run_dir == "out" and args.overrides == ["model.d_model=8", "training.epochs=3"]
    with pytest.raises(SystemExit):
        _parse(["train", "c.yaml", "--run-dir", "out", "--no-such-flag"])
    generate = _parse(["generate", "run", "a b", "--set", "beam_size=3", "c d", ""])
    assert generate.texts == ["a b", "c d", ""] and generate.settings == ["beam_size=3"]
    sweep = _parse(["sweep", "c.yaml", "model.d_model=8,16", "--sweep-dir", "out", "training.epochs=3"])
    assert sweep.sweep_dir == "out" and sweep.grid == ["model.d_model=8,16", "training.epochs=3"]
    with pytest.raises(SystemExit):
        _parse(["tasks", "a=b"])  # a command without key=value items


def test_an_override_after_run_dir_is_checked_like_any_other(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(TINY)
    result = treadmill("train", config, "--run-dir", tmp_path / "run", "model.d_modle=8", cwd=tmp_path)
    assert result.returncode == 2 and "Did you mean 'model.d_model'?" in result.stderr


def test_generate_strategy_override_drops_the_runs_other_strategy_settings(tiny_run, tmp_path):
    import shutil

    import yaml

    root, _, _ = tiny_run
    run = tmp_path / "beam_run"
    shutil.copytree(root / "run", run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["evaluation"]["generation"] = {"strategy": "beam", "beam_size": 3}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    greedy = treadmill("generate", run, "a b", "--set", "strategy=greedy")
    assert greedy.returncode == 0, greedy.stderr
    beam = treadmill("generate", run, "a b")
    assert beam.returncode == 0, beam.stderr
    assert len(greedy.stdout.strip().splitlines()) == len(beam.stdout.strip().splitlines()) == 1


def _last_json(result):
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_eval_ensemble_of_a_run_with_itself_scores_like_the_run_and_keeps_its_predictions(tiny_run, tmp_path):
    root, _, _ = tiny_run
    run = tmp_path / "run"
    shutil.copytree(root / "run", run)
    alone = _last_json(treadmill("eval", run, "--split", "test"))
    (run / "predictions.tsv").write_text("the run's own predictions\n")
    together = _last_json(treadmill("eval", run, "--split", "test", "--ensemble", run))
    assert together["exact_match"] == alone["exact_match"]
    assert together["loss"] == pytest.approx(alone["loss"], rel=1e-4)
    assert (run / "predictions.tsv").read_text() == "the run's own predictions\n"


def test_eval_ensemble_refuses_runs_of_another_task_or_tokenizer(tiny_run, tmp_path):
    root, _, _ = tiny_run
    other_task = tmp_path / "other_task"
    shutil.copytree(root / "run", other_task)
    config = other_task / "config.yaml"
    config.write_text(config.read_text().replace("n_train: 300", "n_train: 301"))
    result = treadmill("eval", root / "run", "--ensemble", other_task)
    assert result.returncode == 2 and "trained on different tasks" in result.stderr
    other_vocab = tmp_path / "other_vocab"
    shutil.copytree(root / "run", other_vocab)
    vocab = other_vocab / "tokenizers" / "tgt.json"
    vocab.write_text(vocab.read_text().replace('"a1"', '"b1"'))
    result = treadmill("eval", root / "run", "--ensemble", other_vocab)
    assert result.returncode == 2 and "saved tokenizers" in result.stderr and str(other_vocab) in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_of_a_fine_tuned_run_loads_the_fine_tuned_weights(tiny_run, tmp_path):
    from treadmill.checkpoint import load_checkpoint
    from treadmill.cli.run_dir import load_run

    _, config, _ = tiny_run
    run = tmp_path / "mrt"
    result = treadmill("train", config, "--run-dir", run, "training.epochs=1", "sequence_level.enabled=true",
                       "sequence_level.max_steps=3", "sequence_level.lr=0.01")
    assert result.returncode == 0, result.stdout + result.stderr
    # the end-of-run report names the weights the test split was scored with: the phase's
    assert f"  weights:     {run / 'checkpoints_finetune' / 'best.safetensors'} (evaluated)" in result.stdout
    model = load_run(run).model
    tuned = load_checkpoint(run / "checkpoints_finetune" / "best.safetensors")["model"]
    before = load_checkpoint(run / "checkpoints" / "best.safetensors")["model"]
    state = model.state_dict()
    assert all(torch.equal(state[key], value) for key, value in tuned.items())
    assert not all(torch.equal(state[key], value) for key, value in before.items())


def test_layer_and_head_without_attention_are_refused_before_anything_loads():
    from treadmill.cli import _parse
    from treadmill.cli.config import RunConfigError
    from treadmill.cli.generate import run

    with pytest.raises(RunConfigError, match="give --attention too"):
        run(_parse(["generate", "no_such_run", "a1", "--head", "2"]))
