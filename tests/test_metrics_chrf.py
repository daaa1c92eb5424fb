"""Our chrF statistics against sacrebleu's public corpus_chrf / sentence_chrf; streaming == one-shot."""

import random

import pytest
import sacrebleu

from treadmill.metrics import Seq2SeqMetrics
from treadmill.metrics.chrf import chrf_from_statistics, chrf_statistics, corpus_chrf_statistics

PAIRS: list[tuple[str, str]] = [
    ("the cat sat on the mat", "the cat sat on the mat"),
    ("the cat sat on a mat", "the cat sat on the mat"),
    ("", "a reference with no hypothesis"),
    ("", ""),
    ("hypothesis with an empty reference", ""),
    ("a", "a"),
    ("ab", "ba"),
    ("Hello, world!", "hello world"),
    ("(hi) there.", "hi there"),
    ("it's 3:45 p.m.", "it is 3:45 pm"),
    ("Grüße aus Köln", "Grüsse aus Köln"),
    ("naïve café façade", "naive cafe facade"),
    ("日本語のテキスト", "日本語の文章"),
    ("Привет, мир", "Привет мир!"),
    ("emoji 🙂🙂 test", "emoji 🙂 test"),
    ("مرحبا بالعالم", "مرحبا بكم في العالم"),
    ("HH AH0 L OW1", "HH AH0 L OW1"),
    ("HH AH L OW", "HH AH0 L OW1"),
    ("  spaced   out  words ", "spaced out words"),
    ("tab\tseparated\nlines", "tab separated lines"),
    ("aaaaaaa", "aaa"),
    ("abcabcabc", "abc"),
    ("short", "a much longer reference sentence than the hypothesis"),
    ("a much longer hypothesis sentence than the reference", "short"),
    ("one two three four five six seven", "seven six five four three two one"),
    ("x", "y"),
    ("12345", "123456"),
    ("punctuation!!! everywhere???", "punctuation everywhere"),
    ("Mixed CASE words", "mixed case WORDS"),
    ("ça va ?", "ça va?"),
    ("el niño", "el nino"),
    ("the the the the", "the cat"),
    ("quick brown fox jumps", "the quick brown fox jumps over the lazy dog"),
    ("北京 欢迎 你", "北京欢迎你"),
    ("a-b-c d_e_f", "a b c d e f"),
    ("ελληνικά κείμενα", "ελληνικό κείμενο"),
]


def _texts() -> tuple[list[str], list[str]]:
    return [h for h, _ in PAIRS], [r for _, r in PAIRS]


@pytest.mark.parametrize(
    "options",
    [
        dict(),
        dict(word_order=2),
        dict(lowercase=True),
        dict(char_order=4, beta=1),
        dict(char_order=6, word_order=1, beta=3, lowercase=True),
    ],
)
def test_corpus_chrf_equals_sacrebleu(options: dict) -> None:
    hyps, refs = _texts()
    stats = corpus_chrf_statistics(hyps, [[r] for r in refs], **options)
    ours = chrf_from_statistics(stats, options.get("beta", 2))
    theirs = sacrebleu.CHRF(**options).corpus_score(hyps, [refs]).score  # public API
    assert ours == pytest.approx(theirs, abs=1e-6)


def test_sentence_chrf_equals_sacrebleu_on_every_pair() -> None:
    for hyp, ref in PAIRS:
        ours = chrf_from_statistics(chrf_statistics(hyp, [ref]))
        assert ours == pytest.approx(sacrebleu.sentence_chrf(hyp, [ref]).score, abs=1e-6), (hyp, ref)


def test_several_references_pick_the_best_one_like_sacrebleu() -> None:
    hyps, refs = _texts()
    second = list(reversed(refs))
    for options in (dict(), dict(word_order=2)):
        stats = corpus_chrf_statistics(hyps, [[a, b] for a, b in zip(refs, second, strict=True)], **options)
        theirs = sacrebleu.corpus_chrf(hyps, [refs, second], **options).score
        assert chrf_from_statistics(stats) == pytest.approx(theirs, abs=1e-6)


def test_empty_corpus_statistics_score_zero() -> None:
    assert chrf_from_statistics(corpus_chrf_statistics([""], [[""]])) == 0.0
    assert sacrebleu.corpus_chrf([""], [[""]]).score == 0.0
    with pytest.raises(ValueError, match="at least one reference"):
        chrf_statistics("a", [])


@pytest.mark.parametrize("batch_size", [1, 5, 7, len(PAIRS)])
def test_streaming_chrf_in_batches_equals_one_shot_and_sacrebleu(batch_size: int) -> None:
    hyps, refs = _texts()
    order = list(range(len(hyps)))
    random.Random(batch_size).shuffle(order)  # the order of batches does not matter either
    hyps, refs = [hyps[i] for i in order], [refs[i] for i in order]
    streaming = Seq2SeqMetrics(chrf_word_order=2)
    for start in range(0, len(hyps), batch_size):
        streaming.update(hyps[start : start + batch_size], refs[start : start + batch_size])
    one_shot = Seq2SeqMetrics(chrf_word_order=2)
    one_shot.update(hyps, refs)
    assert streaming.compute()["chrf"] == one_shot.compute()["chrf"]
    expected = sacrebleu.corpus_chrf(hyps, [refs], word_order=2).score
    assert streaming.compute()["chrf"] == pytest.approx(expected, abs=1e-6)
