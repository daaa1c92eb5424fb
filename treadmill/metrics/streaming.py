"""Streaming accumulator of free-running seq2seq metrics, updated batch by batch.

Memory is O(1) in the number of sentences: per batch we reduce each sentence to integer sums
(matches, edits, lengths) and to sufficient statistics (BLEU: hypothesis/reference lengths and
n-gram matches/totals, from sacrebleu's public API; chrF: hypothesis/reference/match n-gram counts
per order, from treadmill.metrics.chrf), which are additive over a corpus; `compute()` turns the
sums into scores exactly as sacrebleu's `corpus_score` would on all the strings at once.

Two views of every hypothesis and reference:
* units: the token sequence (the ids/symbols given, or `text.split()` for strings). Exact match,
  free-running token accuracy and `per` (token error rate) use units.
* text: the string given, or `detokenize(tokens)` (default: tokens joined by spaces, BLEU then
  uses sacrebleu's "none" tokenizer so that each token is one word). BLEU, chrF and `wer` use text.
So with token input and no `detokenize`, `wer` equals `per`; they differ when `detokenize` maps
subwords to real words.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal, get_args

from sacrebleu.metrics import BLEU

from treadmill.metrics.chrf import chrf_from_statistics, corpus_chrf_statistics
from treadmill.metrics.text import (
    _as_list,
    _reference_lists,
    best_reference,
)

__all__ = ["Seq2SeqMetrics", "WER_UNITS", "WerUnit", "check_wer_unit"]

WerUnit = Literal["word", "sequence"]  # what WER counts as one word: a space-separated word, or a whole output
WER_UNITS: tuple[WerUnit, ...] = get_args(WerUnit)


def check_wer_unit(wer_unit: str, owner: str) -> WerUnit:
    """`wer_unit` itself when it is one of WER_UNITS; a ValueError naming `owner` otherwise."""
    if wer_unit not in WER_UNITS:
        raise ValueError(f"{owner}: wer_unit must be one of {WER_UNITS}, got {wer_unit!r}.")
    return wer_unit  # type: ignore[return-value]


_BLEU_ORDER = 4  # sacrebleu's default maximum n-gram order

_COUNT_KEYS = (
    "sentences",
    "exact",
    "token_matches",
    "token_positions",
    "token_edits",
    "ref_tokens",
    "word_edits",
    "ref_words",
)


class Seq2SeqMetrics:
    """Accumulate exact match, token accuracy, BLEU, chrF, WER and PER over decoded outputs.

    `compute()` keys (fractions in [0, 1] unless said): `exact_match` (= `sequence_accuracy`, a
    hypothesis equal to any reference), `token_accuracy` (free-running: per sentence, positions i
    where hyp[i] == ref[i], divided by max(len(hyp), len(ref)); summed over the corpus before
    dividing), `bleu` and `chrf` (0-100, sacrebleu corpus scores), `wer` and `per` (sum of edits
    over sum of reference lengths). With several references per hypothesis, token accuracy and PER
    use the reference with the fewest token edits, WER the one with the fewest word edits.

    `wer_unit="sequence"` is for tasks whose every example is one word, spelled out in units (G2P:
    a word's phonemes): WER is then the share of hypotheses with any error, 1 - `exact_match`, as
    that literature reports it, and PER keeps the unit-level rate.
    """

    def __init__(
        self,
        *,
        detokenize: Callable[[list[Any]], str] | None = None,
        bleu_tokenize: str | None = None,
        lowercase: bool = False,
        smooth_method: str = "exp",
        chrf_char_order: int = 6,
        chrf_word_order: int = 0,
        chrf_beta: int = 2,
        wer_unit: WerUnit = "word",
    ) -> None:
        self.wer_unit = check_wer_unit(wer_unit, "Seq2SeqMetrics")
        self.detokenize = detokenize
        self.bleu_tokenize = bleu_tokenize
        self.lowercase = lowercase
        self.smooth_method = smooth_method
        self.chrf_char_order = chrf_char_order
        self.chrf_word_order = chrf_word_order
        self.chrf_beta = chrf_beta
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._counts = dict.fromkeys(_COUNT_KEYS, 0)
        self._bleu_stats = [0] * (2 + 2 * _BLEU_ORDER)
        self._chrf_stats = [0] * (3 * (self.chrf_char_order + self.chrf_word_order))
        self._mode: str | None = None
        # Built on the first update, once the input kind (text or tokens) picks its tokenizer.
        self._bleu: BLEU | None = None

    def __len__(self) -> int:
        """Number of sentences accumulated."""
        return self._counts["sentences"]

    def _views(self, item: object, where: str) -> tuple[list[Hashable], str]:
        """Return (units, text) for one hypothesis or reference, checking the input kind."""
        mode = "text" if isinstance(item, str) else "tokens"
        if self._mode is None:
            self._mode = mode
        elif mode != self._mode:
            raise TypeError(
                f"{where} is {'a string' if mode == 'text' else 'a token sequence'} but this "
                f"Seq2SeqMetrics has been fed {self._mode}: use one kind per accumulator "
                "(or call reset())."
            )
        if isinstance(item, str):
            return item.split(), item  # type: ignore[return-value]
        units = _as_list(item)  # type: ignore[arg-type]
        if self.detokenize is not None:
            return units, self.detokenize(units)
        return units, " ".join(map(str, units))

    def _bleu_extractor(self) -> BLEU:
        if self._bleu is None:
            tokenize = self.bleu_tokenize
            if tokenize is None:
                joined_tokens = self._mode == "tokens" and self.detokenize is None
                tokenize = "none" if joined_tokens else "13a"
            # smooth_method="none" here: smoothing only matters when scoring, and "add-k" would
            # add its constant into the returned counts.
            self._bleu = BLEU(
                tokenize=tokenize,
                lowercase=self.lowercase,
                smooth_method="none",
                max_ngram_order=_BLEU_ORDER,
            )
        return self._bleu

    def update(self, hyps: Sequence[Any], refs: Sequence[Any]) -> None:
        """Add a batch: hyps[i] is a string or token list, refs[i] one reference or a list of them."""
        text = bool(hyps) and isinstance(hyps[0], str)
        ref_lists = _reference_lists(hyps, refs, text=text)
        hyp_texts: list[str] = []
        ref_text_lists: list[list[str]] = []
        for i, (hyp, group) in enumerate(zip(hyps, ref_lists, strict=True)):
            hyp_units, hyp_text = self._views(hyp, f"hyps[{i}]")
            ref_views = [self._views(ref, f"refs[{i}]") for ref in group]
            self._add_sentence(hyp_units, hyp_text, ref_views)
            hyp_texts.append(hyp_text)
            ref_text_lists.append([ref_text for _, ref_text in ref_views])
        if hyp_texts:
            self._add_corpus_stats(hyp_texts, ref_text_lists)

    def _add_sentence(
        self, hyp_units: list[Hashable], hyp_text: str, ref_views: list[tuple[list[Hashable], str]]
    ) -> None:
        counts = self._counts
        counts["sentences"] += 1
        counts["exact"] += any(hyp_units == ref_units for ref_units, _ in ref_views)
        edits, ref_units = best_reference(hyp_units, [ref_units for ref_units, _ in ref_views])
        counts["token_edits"] += edits
        counts["ref_tokens"] += len(ref_units)
        counts["token_matches"] += sum(h == r for h, r in zip(hyp_units, ref_units, strict=False))
        counts["token_positions"] += max(len(hyp_units), len(ref_units))
        word_edits, ref_words = best_reference(
            hyp_text.split(), [ref_text.split() for _, ref_text in ref_views]
        )
        counts["word_edits"] += word_edits
        counts["ref_words"] += len(ref_words)

    def _add_corpus_stats(self, hyp_texts: list[str], ref_text_lists: list[list[str]]) -> None:
        bleu = self._bleu_extractor()
        for hyp_text, group in zip(hyp_texts, ref_text_lists, strict=True):
            # Public sacrebleu API: a one-sentence corpus score carries that sentence's counts.
            score = bleu.corpus_score([hyp_text], [[ref] for ref in group])
            sentence_stats = [score.sys_len, score.ref_len, *score.counts, *score.totals]
            self._bleu_stats = [
                a + b for a, b in zip(self._bleu_stats, sentence_stats, strict=True)
            ]
        # sacrebleu has no public per-sentence chrF statistics: ours match its CHRF() (tested).
        chrf_stats = corpus_chrf_statistics(
            hyp_texts,
            ref_text_lists,
            char_order=self.chrf_char_order,
            word_order=self.chrf_word_order,
            beta=self.chrf_beta,
            lowercase=self.lowercase,
        )
        self._chrf_stats = [a + b for a, b in zip(self._chrf_stats, chrf_stats, strict=True)]

    def compute(self) -> dict[str, float]:
        """Return the corpus metrics accumulated so far (see the class docstring for keys)."""
        counts = self._counts
        if counts["sentences"] == 0:
            raise ValueError("Seq2SeqMetrics.compute() called before any update(): no sentences.")
        exact = counts["exact"] / counts["sentences"]
        order = _BLEU_ORDER
        bleu = BLEU.compute_bleu(
            correct=list(self._bleu_stats[2 : 2 + order]),
            total=list(self._bleu_stats[2 + order :]),
            sys_len=self._bleu_stats[0],
            ref_len=self._bleu_stats[1],
            smooth_method=self.smooth_method,
            max_ngram_order=_BLEU_ORDER,
        ).score
        return {
            "exact_match": exact,
            "sequence_accuracy": exact,
            "token_accuracy": _ratio(counts["token_matches"], counts["token_positions"], empty=1.0),
            "bleu": float(bleu),
            "chrf": chrf_from_statistics(self._chrf_stats, self.chrf_beta),
            "wer": 1.0 - exact if self.wer_unit == "sequence"
            else _ratio(counts["word_edits"], counts["ref_words"], empty=0.0),
            "per": _ratio(counts["token_edits"], counts["ref_tokens"], empty=0.0),
        }

    def state_dict(self) -> dict[str, Any]:
        """Return the accumulated sums (plain ints), e.g. to gather them across processes."""
        return {
            "counts": dict(self._counts),
            "bleu_stats": list(self._bleu_stats),
            "chrf_stats": list(self._chrf_stats),
            "mode": self._mode,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the accumulated sums with `state` (from `state_dict()`)."""
        self.reset()
        self.merge_state(state)

    def merge_state(self, state: dict[str, Any]) -> None:
        """Add another accumulator's `state_dict()` to this one (e.g. from another process)."""
        if state["mode"] is not None and self._mode not in (None, state["mode"]):
            raise TypeError(f"cannot merge a state fed {state['mode']} into one fed {self._mode}.")
        if len(state["chrf_stats"]) != len(self._chrf_stats):
            raise ValueError("cannot merge states built with different chrF orders.")
        self._mode = self._mode or state["mode"]
        for key in _COUNT_KEYS:
            self._counts[key] += int(state["counts"][key])
        self._bleu_stats = [
            a + int(b) for a, b in zip(self._bleu_stats, state["bleu_stats"], strict=True)
        ]
        self._chrf_stats = [
            a + int(b) for a, b in zip(self._chrf_stats, state["chrf_stats"], strict=True)
        ]


def _ratio(numerator: int, denominator: int, empty: float) -> float:
    """numerator / denominator, or `empty` when there was nothing to count (all-empty corpus)."""
    if denominator == 0:
        return empty if numerator == 0 else float("inf")
    return numerator / denominator
