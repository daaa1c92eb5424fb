"""Sweep tables: the best epoch and the run status follow the monitored metric's direction."""

from treadmill.cli.sweep import _row, run_status


def _summary(monitor: str, values: list[float]) -> dict:
    return {"train": {"loss": 0.5}, "history": {monitor: values}}


def test_an_error_rate_is_ranked_lowest_first():
    row = _row([], _summary("val_wer", [0.40, 0.15, 0.20]), "val_wer")
    assert (row["monitor"], row["best"], row["best_epoch"]) == ("val_wer", 0.15, 2)


def test_an_accuracy_is_ranked_highest_first():
    row = _row([], _summary("val_exact_match", [0.40, 0.85, 0.80]), "val_exact_match")
    assert (row["best"], row["best_epoch"]) == (0.85, 2)


def test_an_error_rate_that_climbs_back_is_a_collapse():
    assert run_status(_summary("val_wer", [0.5, 0.1, 0.95]), "val_wer") == "collapsed"
    assert run_status(_summary("val_wer", [0.5, 0.1, 0.15]), "val_wer") == "ok"
    assert run_status(_summary("val_exact_match", [0.5, 0.9, 0.3]), "val_exact_match") == "collapsed"
    assert run_status(_summary("val_loss", [2.0, 0.5, 1.5]), "val_loss") == "ok"  # losses have no scale to judge by
    assert run_status(_summary("val_wer", [0.5, float("nan")]), "val_wer") == "diverged"


def test_sweep_eta_is_the_mean_run_time_times_the_runs_left():
    from treadmill.cli.sweep import sweep_eta

    assert sweep_eta(0.0, [], 4) == ""  # nothing timed yet: no guess
    assert sweep_eta(150.0, [60.0, 90.0], 2) == "  (sweep 2:30 so far, ETA 2:30)"
