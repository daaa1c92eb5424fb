"""Pictures read back: the curves' lines and points, axes and legends; attention maps' token labels."""

import csv
import math

import matplotlib.image
import numpy as np
import pytest
import torch
import yaml

from treadmill.plots import (
    attention_figure,
    attention_grid_figure,
    curves_figure,
    plot_attention,
    plot_runs,
    read_metrics,
    run_labels,
)
from treadmill.plots.curves import smooth


def write_csv(path, columns, rows):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(rows)


def write_run(directory, lr=1e-3, epochs=3, steps_per_epoch=4, monitor="val_exact_match", seconds_per_step=0.5):
    """A run directory as `treadmill train` writes it: steps.csv, metrics.csv, config.yaml."""
    directory.mkdir(parents=True)
    steps = [(s, (s - 1) // steps_per_epoch + 1, s * seconds_per_step, 2.0 / s, lr) for s in range(1, epochs * steps_per_epoch + 1)]
    write_csv(directory / "steps.csv", ["step", "epoch", "elapsed_s", "loss", "lr"], steps)
    epochs_rows = [(e, e * steps_per_epoch, e * steps_per_epoch * seconds_per_step + 1.0, 1.0 / e, 1.2 / e, 0.2 * e)
                   for e in range(1, epochs + 1)]
    write_csv(directory / "metrics.csv", ["epoch", "step", "elapsed_s", "loss", "val_loss", "val_exact_match"], epochs_rows)
    config = {"model": {"d_model": 64}, "training": {"monitor": monitor, "optimizer": {"lr": lr}, "checkpoint_dir": str(directory)}}
    (directory / "config.yaml").write_text(yaml.safe_dump(config))
    return directory


def lines_by_kind(ax):
    kinds = {}
    for line in ax.get_lines():
        kind, run = line.get_gid().split(":")
        kinds.setdefault(kind, []).append((int(run), line))
    return kinds


def test_curves_draw_every_logged_step_and_validation_points_on_the_same_axes(tmp_path):
    run = write_run(tmp_path / "a")
    fig = curves_figure([run])
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
    assert titles == ["loss", "exact_match", "learning rate"]  # default: loss, the monitored metric, the LR
    loss_ax = fig.axes[0]
    kinds = lines_by_kind(loss_ax)
    raw, smoothed, valid = kinds["train-raw"][0][1], kinds["train"][0][1], kinds["valid"][0][1]
    assert list(raw.get_xdata()) == list(range(1, 13)) and len(smoothed.get_xdata()) == 12  # every step
    assert raw.get_alpha() < 0.5 and smoothed.get_alpha() is None  # the raw values faint
    np.testing.assert_allclose(raw.get_ydata(), [2.0 / s for s in range(1, 13)])
    assert list(valid.get_xdata()) == [4, 8, 12] and list(valid.get_ydata()) == pytest.approx([1.2, 0.6, 0.4])
    assert valid.get_marker() == "o"
    assert loss_ax.get_xlabel() == "step" and loss_ax.get_ylabel() == "loss"
    lr_lines = fig.axes[2].get_lines()
    assert len(lr_lines) == 1 and list(lr_lines[0].get_ydata()) == [1e-3] * 12  # the schedule, unsmoothed
    monitored = lines_by_kind(fig.axes[1])
    assert set(monitored) == {"valid"} and list(monitored["valid"][0][1].get_ydata()) == pytest.approx([0.2, 0.4, 0.6])


def test_smoothing_is_light_debiased_and_skips_missing_values():
    values = [1.0, 1.0, float("nan"), 0.0]
    out = smooth(values, weight=0.6)
    assert out[0] == 1.0 and out[1] == 1.0 and out[2] == 1.0  # debiased: no pull towards 0 at the start
    assert out[3] == pytest.approx((0.6 * 0.64 + 0.0) / (1 - 0.6**3))  # EMA 0.64 after two ones, then a zero


def test_runs_overlay_with_a_legend_of_their_differing_config_values(tmp_path):
    a = write_run(tmp_path / "sweep" / "lr=0.001", lr=1e-3)
    b = write_run(tmp_path / "sweep" / "lr=0.0003", lr=3e-4, epochs=2)
    fig = curves_figure([a, b], metrics=["val_loss"])  # val_ prefix or not: the same panel
    assert [ax.get_title() for ax in fig.axes if ax.get_visible()] == ["loss", "learning rate"]
    kinds = lines_by_kind(fig.axes[0])
    assert sorted(run for run, _ in kinds["train"]) == [0, 1] and len(kinds["valid"]) == 2
    colours = {run: line.get_color() for run, line in kinds["train"]}
    assert colours[0] != colours[1]
    assert all(line.get_color() == colours[run] for run, line in kinds["valid"])  # a run keeps its colour
    legend = [text.get_text() for text in fig.legends[0].get_texts()]
    # checkpoint_dir differs too, but says where a run lives, not what it is
    assert legend == ["lr=0.001", "lr=0.0003", "train (smoothed)", "train (raw)", "validation"]


def test_run_labels_fall_back_to_directory_names():
    assert run_labels(["runs/a", "other/b"]) == ["a", "b"]
    assert run_labels(["x/run", "y/run"]) == ["x/run", "y/run"]


def test_x_time_plots_against_seconds_of_training(tmp_path):
    a = write_run(tmp_path / "a", seconds_per_step=0.5)
    b = write_run(tmp_path / "b", lr=3e-4, seconds_per_step=2.0)
    fig = curves_figure([a, b], metrics=["loss"], x="time")
    ax = fig.axes[0]
    assert ax.get_xlabel() == "training time (s)"
    kinds = dict(lines_by_kind(ax)["train-raw"])
    assert kinds[0].get_xdata()[-1] == 6.0 and kinds[1].get_xdata()[-1] == 24.0
    assert list(dict(lines_by_kind(ax)["valid"])[1].get_xdata()) == [9.0, 17.0, 25.0]
    long = write_run(tmp_path / "long", seconds_per_step=100.0)
    assert curves_figure([long], metrics=["loss"], x="time").axes[0].get_xlabel() == "training time (min)"


def test_plot_runs_writes_into_the_first_run_directory_by_default(tmp_path):
    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b", lr=3e-4)
    out = plot_runs([a, b])
    assert out == a / "curves.png"
    image = matplotlib.image.imread(out)
    assert image.shape[:2] == (400, 1440)  # three panels of 4.8 x (3.4 + 0.6) inches at 100 dpi
    assert image[..., :3].std() > 0.01  # not a blank canvas
    assert plot_runs([a], x="time") == a / "curves_time.png"


def test_errors_name_the_file_and_what_is_available(tmp_path):
    run = write_run(tmp_path / "run")
    assert read_metrics(run)["loss"] == [1.0, 0.5, pytest.approx(1 / 3)]
    with pytest.raises(ValueError, match=r"\['bleu'\].*available: exact_match, loss, lr"):
        plot_runs([run], metrics=["bleu"], out=tmp_path / "x.png")
    with pytest.raises(FileNotFoundError, match="metrics.csv"):
        plot_runs([tmp_path / "missing"])
    old = tmp_path / "old"
    old.mkdir()
    write_csv(old / "metrics.csv", ["epoch", "step", "loss", "val_loss"], [(1, 10, 1.0, 1.1)])
    with pytest.raises(ValueError, match="old/metrics.csv has no 'elapsed_s' column"):
        plot_runs([old], x="time")
    fig = curves_figure([old])  # a run from before steps.csv: per-epoch points still plot
    assert list(lines_by_kind(fig.axes[0])["train"][0][1].get_xdata()) == [10]


def test_attention_heatmap_names_every_token_and_says_which_head(tmp_path):
    weights = torch.softmax(torch.randn(5, 7), dim=-1)  # (tgt_len, src_len)
    src = ["t", "r", "e", "a", "d", "s", "<eos>"]
    tgt = ["T", "R", "EH1", "D", "<eos>"]
    fig = attention_figure(weights, src, tgt, title="cross-attention, layer 2/3, head 1/4")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == src
    assert [t.get_text() for t in ax.get_yticklabels()] == tgt
    assert ax.get_title() == "cross-attention, layer 2/3, head 1/4"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("source", "output")
    np.testing.assert_allclose(ax.get_images()[0].get_array(), weights.numpy(), rtol=1e-6)
    out = plot_attention(weights, src, tgt, out=tmp_path / "attention.png")
    height, width = matplotlib.image.imread(out).shape[:2]
    assert (width, height) == (530, 380)  # (0.4 x 7 + 2.5) x (0.4 x 5 + 1.8) inches at 100 dpi
    with pytest.raises(ValueError, match=r"shape \(5, 7\).*\(4, 7\)"):
        plot_attention(weights, src, tgt[:4], out=tmp_path / "bad.png")


def test_attention_grid_has_a_panel_per_head_on_one_colour_scale():
    weights = torch.softmax(torch.randn(6, 3, 4), dim=-1)  # (heads, tgt_len, src_len)
    fig = attention_grid_figure(weights, ["a", "b", "c", "<eos>"], ["x", "y", "<eos>"], title="layer 1/1, all 6 heads")
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.get_images()]
    assert [ax.get_title() for ax in panels] == [f"head {h}" for h in range(1, 7)]
    assert all([t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "<eos>"] for ax in panels)
    assert len({ax.get_images()[0].get_clim() for ax in panels}) == 1
    assert fig.get_suptitle() == "layer 1/1, all 6 heads"
    assert not math.isclose(float(panels[0].get_images()[0].get_array().sum()), 0.0)
