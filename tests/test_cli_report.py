"""The one-line result summaries and the choice of sample rows printed after training."""

import pytest

from treadmill.cli.report import headline, spread_rows


def test_g2p_headline_gives_wer_and_per_with_and_without_stress():
    metrics = {"wer": 0.3759, "per": 0.1025, "wer_nostress": 0.3231, "per_nostress": 0.0786,
               "exact_match": 0.6241, "bleu": 77.7}
    line = headline("test", metrics, 6172)
    assert line == ("test (6,172 examples): WER 37.6%  PER 10.2% with stress;  "
                    "WER 32.3%  PER 7.9% without;  exact match 62.4%")


def test_forecast_headline_compares_mase_with_both_baselines():
    metrics = {"mse": 2.0, "mae": 1.25, "mase": 0.948, "naive_mae": 3.0, "naive_mase": 2.643,
               "seasonal_naive_mae": 2.0, "seasonal_naive_mase": 1.325}
    assert headline("test", metrics) == "test: MASE 0.948 (seasonal-naive 1.325, naive 2.643);  MAE 1.25"


def test_sequence_headline_gives_exact_match_and_the_text_scores_present():
    assert headline("valid", {"exact_match": 0.999, "bleu": 99.5}) == "valid: exact match 99.9%;  bleu 99.5"
    assert headline("valid", {"loss": 0.5}) == "valid: loss 0.5"


@pytest.mark.parametrize(("n_rows", "n_samples"), [(6172, 8), (40, 2), (7, 7), (3, 10), (100, 1)])
def test_spread_rows_are_distinct_in_range_and_reach_past_the_start(n_rows, n_samples):
    rows = spread_rows(n_rows, n_samples)
    assert len(rows) == min(n_rows, n_samples)
    assert all(0 <= row < n_rows for row in rows)
    if n_samples > 1 and n_rows >= 2 * n_samples:
        assert max(rows) >= n_rows // 2  # not just the first rows of a sorted split


def test_spread_rows_is_empty_when_nothing_is_asked_or_there_is_nothing():
    assert spread_rows(100, 0) == set() and spread_rows(0, 5) == set()


def test_the_results_table_has_a_row_per_split_with_its_headline_figures():
    import io

    from rich.console import Console

    from treadmill.run_report import results_table

    out = io.StringIO()
    Console(file=out, width=100).print(results_table({
        "valid": {"loss": 0.25, "exact_match": 0.5, "wer": 0.5},
        "test": {"loss": 0.5, "exact_match": 0.625, "wer": 0.375, "bleu": 71.25}}))
    lines = [line for line in out.getvalue().splitlines() if "valid" in line or "test" in line]
    assert len(lines) == 2
    assert "0.25" in lines[0] and "50.0%" in lines[0]
    assert all(figure in lines[1] for figure in ("0.5", "62.5%", "37.5%", "71.25"))
    header = next(line for line in out.getvalue().splitlines() if "split" in line)
    assert header.index("exact_match") < header.index("wer") < header.index("bleu")
