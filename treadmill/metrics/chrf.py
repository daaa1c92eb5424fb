"""chrF (Popović 2015) and chrF++ from additive statistics, as sacrebleu's ``CHRF()`` computes them.

Our own implementation so that streaming chrF needs no private sacrebleu API. Per sentence, for
each order n (character n-grams 1..char_order, then word n-grams 1..word_order) the statistics
are three integers: hypothesis n-grams, reference n-grams and clipped matches. They add up over a
corpus; the score is computed once from the sums. Conventions copied from sacrebleu 2.x's
defaults (``CHRF(char_order=6, word_order=0, beta=2)``, ``eps_smoothing=False``,
``whitespace=False``), checked against ``sacrebleu.corpus_chrf`` in tests/test_metrics_chrf.py:

* whitespace is removed before character n-grams are taken;
* word n-grams split punctuation off a word's start or end (chrF++'s tokenisation);
* a hypothesis n-gram count is 0 for an order where the reference has no n-gram;
* with several references, a sentence takes the statistics of the reference with the best
  sentence-level F-score (the first on ties);
* the corpus score averages precision and recall over the orders where both hypothesis and
  reference have n-grams ("effective order"), then takes F-beta of the averages, times 100.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

__all__ = ["chrf_from_statistics", "chrf_statistics", "corpus_chrf_statistics"]

_PUNCTUATION = frozenset("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")


def _char_ngrams(text: str, char_order: int) -> list[Counter[str]]:
    """Character n-gram counts for n = 1..char_order, whitespace removed."""
    line = "".join(text.split())
    return [Counter(line[i : i + n] for i in range(len(line) - n + 1)) for n in range(1, char_order + 1)]


def _words(text: str) -> list[str]:
    """Split on whitespace, then punctuation off a word's end (else its start), as chrF++ does."""
    words: list[str] = []
    for word in text.split():
        if len(word) == 1:
            words.append(word)
        elif word[-1] in _PUNCTUATION:
            words += [word[:-1], word[-1]]
        elif word[0] in _PUNCTUATION:
            words += [word[0], word[1:]]
        else:
            words.append(word)
    return words


def _ngrams(text: str, char_order: int, word_order: int) -> list[Counter[str]]:
    """Counts per order: char_order character orders, then word_order word orders."""
    counts = _char_ngrams(text, char_order)
    if word_order > 0:
        words = _words(text)
        for n in range(1, word_order + 1):
            counts.append(Counter(" ".join(words[i : i + n]) for i in range(len(words) - n + 1)))
    return counts


def _match(hyp: Counter[str], ref: Counter[str]) -> list[int]:
    """[hypothesis n-grams, reference n-grams, clipped matches] for one order."""
    matches = sum(min(count, ref[gram]) for gram, count in hyp.items() if gram in ref)
    # sacrebleu counts no hypothesis n-grams where the reference has none of that order.
    return [sum(hyp.values()) if ref else 0, sum(ref.values()), matches]


def chrf_from_statistics(stats: Sequence[int], beta: float = 2) -> float:
    """chrF (0-100) from summed [hyp, ref, match] triples, one per order (effective-order average)."""
    factor = beta**2
    precision = recall = 0.0
    effective_order = 0
    for i in range(0, len(stats), 3):
        n_hyp, n_ref, n_match = stats[i : i + 3]
        if n_hyp > 0 and n_ref > 0:
            precision += n_match / n_hyp
            recall += n_match / n_ref
            effective_order += 1
    if effective_order == 0:
        return 0.0
    precision /= effective_order
    recall /= effective_order
    if precision + recall == 0:
        return 0.0
    # sacrebleu's order of operations, so that scores (and ties between references) are equal
    score = (1 + factor) * precision * recall
    score /= factor * precision + recall
    return 100 * score


def chrf_statistics(
    hyp: str,
    refs: Sequence[str],
    *,
    char_order: int = 6,
    word_order: int = 0,
    beta: float = 2,
    lowercase: bool = False,
) -> list[int]:
    """The 3 * (char_order + word_order) statistics of one sentence against its best reference."""
    if not refs:
        raise ValueError("chrf_statistics needs at least one reference.")
    if lowercase:
        hyp, refs = hyp.lower(), [ref.lower() for ref in refs]
    hyp_ngrams = _ngrams(hyp, char_order, word_order)
    best: list[int] = []
    best_score = -1.0
    for ref in refs:
        stats = [
            x
            for h, r in zip(hyp_ngrams, _ngrams(ref, char_order, word_order), strict=True)
            for x in _match(h, r)
        ]
        score = chrf_from_statistics(stats, beta)
        if score > best_score:  # strict: the first reference wins ties, as in sacrebleu
            best, best_score = stats, score
    return best


def corpus_chrf_statistics(
    hyps: Sequence[str],
    refs: Sequence[Sequence[str]],
    *,
    char_order: int = 6,
    word_order: int = 0,
    beta: float = 2,
    lowercase: bool = False,
) -> list[int]:
    """Summed statistics of a corpus; refs[i] is the list of hyps[i]'s references."""
    total = [0] * (3 * (char_order + word_order))
    for hyp, group in zip(hyps, refs, strict=True):
        stats = chrf_statistics(
            hyp, group, char_order=char_order, word_order=word_order, beta=beta, lowercase=lowercase
        )
        total = [a + b for a, b in zip(total, stats, strict=True)]
    return total
