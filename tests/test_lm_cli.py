"""The command line on language-model tasks: train, prepare, generate --prompt (streaming), bad input."""

import contextlib
import io
import json
import math
import subprocess
import sys
import time

import pytest

from treadmill.cli import main

TEXT = ("ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the sun.\n\n"
        "JULIET:\nO Romeo, Romeo, wherefore art thou Romeo?\n\n") * 30


def treadmill(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "treadmill.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def _config(root, **task):
    options = {"train": str(root / "play.txt"), "block_size": 16, "cache_dir": str(root / "cache"), **task}
    text = (f"task: {{name: lm-files, options: {json.dumps(options)}}}\n"
            "model: {name: gpt, d_model: 32, n_heads: 2, n_layers: 1, d_ff: 64, dropout: 0.0}\n"
            "data: {batch_size: 8, eval_batch_size: 16}\n"
            "training: {max_steps: 40, validation_every_n_steps: 20, progress_bar: false, optimizer: {lr: 3.0e-3}}\n"
            "evaluation: {splits: [valid, test], max_batches: 2, generation: {strategy: sample, top_k: 20, max_len: 50}}\n"
            "diagnostics: {enabled: false}\n")
    path = root / "lm.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm")
    (root / "play.txt").write_text(TEXT)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["train", str(_config(root)), "--run-dir", str(root / "run")]) == 0
    return root, out.getvalue()


def test_train_reports_loss_perplexity_and_bits_per_char_per_split(lm_run):
    root, stdout = lm_run
    summary = json.loads((root / "run" / "summary.json").read_text())
    assert set(summary["test"]) == {"loss", "perplexity", "bits_per_char"}
    assert summary["valid"]["bits_per_char"] == pytest.approx(summary["valid"]["loss"] / math.log(2))  # char level
    assert summary["epochs"] == 2
    assert "bits/char" in stdout
    rows = (root / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and "val_bits_per_char" in rows[0]  # one row per validation period


def test_prepare_writes_token_files_once_and_reports_them(lm_run, capsys):
    root, _ = lm_run
    assert main(["prepare", str(root / "lm.yaml")]) == 0
    out = capsys.readouterr().out
    assert "uint16, char tokenizer" in out and f"train: {len(TEXT) * 9 // 10:,} tokens" in out


def test_generate_streams_the_text_as_it_is_sampled_and_respects_max_len(lm_run):
    root, _ = lm_run
    command = [sys.executable, "-m", "treadmill.cli", "generate", str(root / "run"), "--prompt", "ROMEO:",
               "--set", "strategy=sample", "--set", "temperature=0.8", "--set", "top_k=50", "--set", "max_len=300",
               "--set", "min_len=300", "--set", "seed=0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = process.stdout.read(len("ROMEO:") + 1)  # the prompt and the first sampled character
    first_at = time.perf_counter()
    still_running = process.poll() is None
    rest, log = process.communicate(timeout=600)
    ended_at = time.perf_counter()
    assert first.startswith(b"ROMEO:") and still_running
    assert ended_at - first_at > 0.2  # the text arrived while the remaining tokens were still being sampled
    assert process.returncode == 0, log.decode()
    assert b"[300 tokens in" in log  # exactly max_len tokens (min_len keeps EOS out)
    text = (first + rest).decode()
    assert text.endswith("\n") and len(text) >= len("ROMEO:") + 300


def test_generate_prints_num_return_sequences_samples(lm_run, capsys):
    root, _ = lm_run
    args = ["generate", str(root / "run"), "--prompt", "JULIET:", "--set", "num_return_sequences=2", "--set", "max_len=20",
            "--set", "min_len=20", "--set", "seed=1"]
    assert main(args) == 0
    first = capsys.readouterr()
    assert first.out.count("--- sample ") == 2 and first.out.count("\nJULIET:") == 2
    assert first.err.count("[20 tokens in") == 2
    assert main(args) == 0
    assert capsys.readouterr().out == first.out  # seeded: the same two samples again


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "text file"),
        ("empty", "is empty"),
        ("uint16", "does not fit uint16"),
        ("block_size", "is larger than model.max_len=8"),
        ("hash", "were made from other text"),
    ],
)
def test_bad_input_is_a_named_error_and_exit_2(tmp_path, capsys, setup, message):
    play = tmp_path / "play.txt"
    play.write_text(TEXT)
    task, overrides = {}, []
    if setup == "missing":
        task["train"] = str(tmp_path / "no_such.txt")
    elif setup == "empty":
        play.write_text("")
    elif setup == "uint16":  # 70,000 distinct characters: a char vocabulary beyond 65,536 ids
        play.write_text("".join(chr(c) for c in range(0x4E00, 0x4E00 + 80_000) if not 0xD800 <= c < 0xE000))
        task["dtype"] = "uint16"
    elif setup == "block_size":
        overrides = ["model.max_len=8"]
    config = _config(tmp_path, **task)
    if setup == "hash":
        assert main(["prepare", str(config)]) == 0
        play.write_text(TEXT.replace("Romeo", "Tybalt"))
    capsys.readouterr()
    if setup == "block_size":
        code = main(["train", str(config), *overrides, "--run-dir", str(tmp_path / "run")])
    else:
        code = main(["prepare", str(config)])
    error = capsys.readouterr().err
    assert code == 2, error
    assert message in error and error.startswith("treadmill ")


def test_eval_scores_a_split_as_train_did(lm_run, capsys):
    root, _ = lm_run
    assert main(["eval", str(root / "run"), "--split", "test"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    summary = json.loads((root / "run" / "summary.json").read_text())
    assert metrics == pytest.approx(summary["test"])


def test_pca_keeps_the_distances_of_points_on_a_plane():
    import torch

    from treadmill.plots.embeddings import embeddings_figure, project_2d

    torch.manual_seed(0)
    plane = torch.linalg.qr(torch.randn(16, 2))[0].T  # two orthonormal directions in 16-D
    coords = torch.randn(30, 2)
    weights = coords @ plane + torch.randn(16)  # (30, 16), all on one affine plane
    points = torch.from_numpy(project_2d(weights, "pca"))
    def distances(x):
        return (x[:, None] - x[None]).norm(dim=-1)  # (30, 30), exact (cdist's matmul path is not)

    assert torch.allclose(distances(points), distances(coords), atol=1e-4)
    labels = [f"t{i}" for i in range(30)]
    assert [t.get_text() for t in embeddings_figure(points.numpy(), labels, "x").axes[0].texts] == labels


@pytest.mark.parametrize("method", ["pca", pytest.param("tsne", marks=pytest.mark.slow)])  # t-SNE: ~15 s
def test_plot_embeddings_writes_a_png_of_the_runs_tokens(lm_run, capsys, method):
    if method == "tsne":
        pytest.importorskip("sklearn")
    root, _ = lm_run
    out = root / f"emb_{method}.png"
    assert main(["plot", str(root / "run"), "--embeddings", method, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"Wrote {out}" in capsys.readouterr().out
