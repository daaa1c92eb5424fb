"""Metrics: teacher-forced accuracy/perplexity, text metrics (BLEU, chrF, WER, PER), streaming
accumulators for free-running evaluation, and forecasting errors."""

from treadmill.metrics.classification import StandardMetrics, compute_metrics
from treadmill.metrics.forecasting import mae, mase, mse, naive_scale
from treadmill.metrics.streaming import WER_UNITS, Seq2SeqMetrics, WerUnit, check_wer_unit
from treadmill.metrics.teacher_forced import perplexity, sequence_accuracy, token_accuracy
from treadmill.metrics.text import (
    best_reference,
    corpus_bleu,
    corpus_chrf,
    edit_distance,
    exact_match,
    phoneme_error_rate,
    reference_streams,
    sentence_bleu,
    strip_special_tokens,
    token_error_rate,
    word_error_rate,
)
from treadmill.metrics.tracker import MetricsTracker

__all__ = [
    "StandardMetrics",
    "MetricsTracker",
    "compute_metrics",
    "token_accuracy",
    "sequence_accuracy",
    "perplexity",
    "corpus_bleu",
    "corpus_chrf",
    "sentence_bleu",
    "reference_streams",
    "edit_distance",
    "best_reference",
    "token_error_rate",
    "phoneme_error_rate",
    "word_error_rate",
    "exact_match",
    "strip_special_tokens",
    "Seq2SeqMetrics",
    "WER_UNITS",
    "WerUnit",
    "check_wer_unit",
    "mae",
    "mse",
    "mase",
    "naive_scale",
]
