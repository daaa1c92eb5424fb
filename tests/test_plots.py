"""Plots: training curves of several runs and attention heatmaps are written as real PNGs."""

import csv

import matplotlib.image
import pytest
import torch

from treadmill.plots import plot_attention, plot_runs, read_metrics


def write_run(directory, losses, accuracy=None):
    directory.mkdir(parents=True)
    columns = ["epoch", "step", "loss", "val_loss"] + (["val_accuracy"] if accuracy else [])
    with (directory / "metrics.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for epoch, loss in enumerate(losses, start=1):
            row = [epoch, 10 * epoch, loss, loss * 1.1] + (
                [accuracy[epoch - 1]] if accuracy else []
            )
            writer.writerow(row)
    return directory


def assert_png(path, min_bytes=5_000):
    assert path.exists() and path.stat().st_size > min_bytes
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01  # not a blank canvas
    return image


def test_plot_runs_overlays_runs(tmp_path):
    a = write_run(tmp_path / "lr1e-3", [2.0, 1.2, 0.8, 0.6], accuracy=[0.2, 0.4, 0.6, 0.7])
    b = write_run(tmp_path / "lr3e-4", [2.0, 1.6, 1.3, 1.1])
    out = plot_runs([a, b], out=tmp_path / "plots" / "curves.png")
    image = assert_png(out)
    both = plot_runs(
        [a, b], metrics=["loss", "val_loss", "val_accuracy"], out=tmp_path / "three.png"
    )
    assert (
        matplotlib.image.imread(both).shape[1] > image.shape[1]
    )  # three panels are wider than two


def test_read_metrics_and_errors(tmp_path):
    run = write_run(tmp_path / "run", [1.0, 0.5])
    assert read_metrics(run)["loss"] == [1.0, 0.5]
    with pytest.raises(ValueError, match="available: loss, val_loss"):
        plot_runs([run], metrics=["bleu"], out=tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        plot_runs([tmp_path / "missing"], out=tmp_path / "x.png")


def test_plot_attention_heatmap(tmp_path):
    weights = torch.softmax(torch.randn(5, 7), dim=-1)  # (tgt_len, src_len)
    src = ["<bos>", "h", "e", "l", "l", "o", "<eos>"]
    out = plot_attention(
        weights, src, ["HH", "AH0", "L", "OW1", "<eos>"], out=tmp_path / "attention.png"
    )
    assert_png(out)
    with pytest.raises(ValueError, match=r"shape \(5, 7\).*\(4, 7\)"):
        plot_attention(weights, src, ["a", "b", "c", "d"], out=tmp_path / "bad.png")
