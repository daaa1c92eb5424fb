"""Metrics: hand-computed cases, sacrebleu as the reference, streaming == one-shot."""

import math
import random

import pytest
import sacrebleu
import torch

from treadmill.metrics import (
    Seq2SeqMetrics,
    corpus_bleu,
    corpus_chrf,
    edit_distance,
    exact_match,
    mae,
    mase,
    mse,
    naive_scale,
    perplexity,
    phoneme_error_rate,
    sentence_bleu,
    sequence_accuracy,
    strip_special_tokens,
    token_accuracy,
    token_error_rate,
    word_error_rate,
)
from treadmill.seq2seq import Seq2SeqTrainer

# ---------------------------------------------------------------- teacher-forced counts


def _one_hot_logits(pred: torch.Tensor, vocab: int = 7) -> torch.Tensor:
    return torch.nn.functional.one_hot(pred, vocab).float() * 5.0  # (batch, tgt_len, vocab)


def test_token_and_sequence_accuracy_hand_case():
    target = torch.tensor([[4, 5, 6, 3], [4, 4, 3, 0], [0, 0, 0, 0]])
    pred = torch.tensor([[4, 5, 6, 3], [4, 5, 3, 6], [1, 2, 1, 2]])  # row 1: one wrong, pad junk
    for inputs in (pred, _one_hot_logits(pred)):
        correct, total = token_accuracy(inputs, target)
        assert (correct.item(), total.item()) == (6, 7)
        seq_correct, seq_total = sequence_accuracy(inputs, target)
        # The all-pad row is not a sequence; junk under PAD never makes a row wrong.
        assert (seq_correct.item(), seq_total.item()) == (1, 2)
    assert isinstance(correct, torch.Tensor) and isinstance(seq_total, torch.Tensor)


def test_sequence_accuracy_ignores_predictions_at_pad():
    target = torch.tensor([[4, 3, 0, 0]])
    pred = torch.tensor([[4, 3, 5, 6]])
    assert sequence_accuracy(pred, target)[0].item() == 1


def test_accuracy_shape_mismatch_names_the_fix():
    with pytest.raises(ValueError, match=r"tgt\[:, 1:\]"):
        token_accuracy(torch.zeros(2, 5, 7), torch.zeros(2, 4, dtype=torch.long))


def test_perplexity():
    assert perplexity(torch.tensor(6.0), torch.tensor(3)) == pytest.approx(math.exp(2.0))
    assert perplexity(0.0, 10) == 1.0
    assert perplexity(1e6, 1) == math.inf
    with pytest.raises(ValueError, match="n_tokens"):
        perplexity(1.0, 0)


# ---------------------------------------------------------------- edit distance, WER, PER


def test_edit_distance_hand_cases():
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance([1, 2, 3], [1, 3, 4]) == 2
    assert edit_distance(["AH0", "B"], ["AH0"]) == 1
    assert edit_distance([], [7, 8]) == 2
    assert edit_distance(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 3])) == 0
    with pytest.raises(TypeError, match="split"):
        edit_distance("a b", ["a", "b"])


def test_word_error_rate_hand_case():
    hyps = ["the cat sat", "a b"]
    refs = ["the cat sat down", "a c"]
    # 1 deletion + 1 substitution over 4 + 2 reference words.
    assert word_error_rate(hyps, refs) == pytest.approx(2 / 6)
    assert word_error_rate(["  the   cat "], ["the cat"]) == 0.0


def test_multi_reference_error_rate_uses_closest_reference():
    # refs[0]: "a b d e" is 2 edits away, "a b c" 0 -> 0 edits over 3 words.
    # refs[1]: "x y z w" is 1 edit away (1 deletion), "q" 3 edits -> the longer one is chosen.
    hyps = ["a b c", "x y z"]
    refs = [["a b d e", "a b c"], ["q", "x y z w"]]
    assert word_error_rate(hyps, refs) == pytest.approx((0 + 1) / (3 + 4))
    # Ties go to the first reference (its length is the denominator).
    assert word_error_rate(["a"], [["b c", "d"]]) == pytest.approx(2 / 2)


def test_token_error_rate_on_phonemes_and_ids():
    hyps = [["HH", "AH0", "L", "OW1"], ["K", "AE1", "T"]]
    refs = [["HH", "AH0", "L", "OW1"], ["K", "AE1", "T", "S"]]
    assert phoneme_error_rate(hyps, refs) == pytest.approx(1 / 8)
    assert phoneme_error_rate is token_error_rate
    # Multiple references of token ids, with a varying count.
    assert token_error_rate([[1, 2], [5]], [[[1, 3], [1, 2]], [5, 6]]) == pytest.approx(1 / 4)
    with pytest.raises(TypeError, match="word_error_rate"):
        token_error_rate(["a b"], ["a b"])
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        token_error_rate([[1], [2]], [[1]])


def test_exact_match_any_reference():
    assert exact_match([[1, 2], [3]], [[[9], [1, 2]], [4]]) == (1, 2)
    assert exact_match(["a  b", "c"], [["x", "a b"], "d"]) == (1, 2)


def test_strip_special_tokens():
    assert strip_special_tokens([2, 5, 6, 3, 0, 0]) == [5, 6]
    assert strip_special_tokens([5, 0, 6]) == [5, 6]
    assert strip_special_tokens([5, 3, 7]) == [5]


# ---------------------------------------------------------------- BLEU / chrF against sacrebleu

HYPS = [
    "the cat sat on the mat",
    "there is a dog in the garden today",
    "hello world",
    "it was the best of times",
]
REFS = [
    "the cat sat on a mat",
    "a dog is in the garden",
    "hello there world",
    "it was the best of times",
]


def test_corpus_bleu_and_chrf_equal_sacrebleu_single_reference():
    assert corpus_bleu(HYPS, REFS) == pytest.approx(sacrebleu.corpus_bleu(HYPS, [REFS]).score)
    assert corpus_chrf(HYPS, REFS) == pytest.approx(sacrebleu.corpus_chrf(HYPS, [REFS]).score)
    assert 0.0 < corpus_bleu(HYPS, REFS) < 100.0


def test_corpus_bleu_multi_reference_varying_count():
    extra = ["the cat is on the mat", None, "hello world", None]
    refs = [[r] if e is None else [r, e] for r, e in zip(REFS, extra, strict=True)]
    # Repeating a reference changes neither BLEU's clipped counts nor chrF's best-reference
    # choice, so filling the gaps with a copy gives sacrebleu an equal-count equivalent.
    stream2 = [r if e is None else e for r, e in zip(REFS, extra, strict=True)]
    expected_bleu = sacrebleu.corpus_bleu(HYPS, [REFS, stream2]).score
    expected_chrf = sacrebleu.corpus_chrf(HYPS, [REFS, stream2]).score
    assert corpus_bleu(HYPS, refs) == pytest.approx(expected_bleu)
    assert corpus_chrf(HYPS, refs) == pytest.approx(expected_chrf)
    # The second references help: "hello world" now matches exactly.
    assert expected_bleu > sacrebleu.corpus_bleu(HYPS, [REFS]).score


def test_sentence_bleu_equals_sacrebleu():
    expected = sacrebleu.sentence_bleu(HYPS[0], [REFS[0]]).score
    assert sentence_bleu(HYPS[0], REFS[0]) == pytest.approx(expected)
    assert sentence_bleu(HYPS[3], [REFS[3]]) == pytest.approx(100.0)


# ---------------------------------------------------------------- streaming accumulator


def _random_corpus(n: int, seed: int) -> tuple[list[str], list[list[str]]]:
    rng = random.Random(seed)
    words = ["a", "b", "c", "d", "cat", "dog", "sat", "the", "on", "mat", "."]
    hyps, refs = [], []
    for _ in range(n):
        ref = [rng.choice(words) for _ in range(rng.randint(1, 9))]
        hyp = [w if rng.random() < 0.7 else rng.choice(words) for w in ref]
        if rng.random() < 0.3:
            hyp = hyp[:-1]
        group = [" ".join(ref)]
        if rng.random() < 0.4:
            group.append(" ".join(rng.choice(words) for _ in range(rng.randint(1, 9))))
        hyps.append(" ".join(hyp))
        refs.append(group)
    return hyps, refs


def _feed(metrics: Seq2SeqMetrics, hyps: list, refs: list, seed: int) -> None:
    rng = random.Random(seed)
    start = 0
    while start < len(hyps):
        size = rng.randint(1, 7)
        metrics.update(hyps[start : start + size], refs[start : start + size])
        start += size


def test_streaming_text_equals_one_shot():
    hyps, refs = _random_corpus(60, seed=1)
    metrics = Seq2SeqMetrics()
    _feed(metrics, hyps, refs, seed=2)
    result = metrics.compute()
    assert len(metrics) == 60
    assert result["bleu"] == pytest.approx(corpus_bleu(hyps, refs), abs=1e-9)
    assert result["chrf"] == pytest.approx(corpus_chrf(hyps, refs), abs=1e-9)
    assert result["wer"] == pytest.approx(word_error_rate(hyps, refs))
    assert result["per"] == pytest.approx(
        token_error_rate([h.split() for h in hyps], [[r.split() for r in g] for g in refs])
    )
    matches, total = exact_match(hyps, refs)
    assert result["exact_match"] == result["sequence_accuracy"] == pytest.approx(matches / total)
    assert 0.0 < result["bleu"] < 100.0 and 0.0 < result["wer"] < 1.0


def test_streaming_memory_does_not_grow():
    hyps, refs = _random_corpus(200, seed=3)
    metrics = Seq2SeqMetrics()
    metrics.update(hyps[:5], refs[:5])
    sizes = {k: len(v) for k, v in metrics.state_dict().items() if isinstance(v, list | dict)}
    _feed(metrics, hyps[5:], refs[5:], seed=4)
    assert {
        k: len(v) for k, v in metrics.state_dict().items() if isinstance(v, list | dict)
    } == sizes
    # No attribute holds anything proportional to the corpus.
    assert all(len(v) <= 20 for v in vars(metrics).values() if isinstance(v, list | dict))


def test_streaming_tokens_hand_case():
    metrics = Seq2SeqMetrics()
    metrics.update([[1, 2, 3, 4], [5]], [[1, 2, 4], [[9, 9, 9], [5, 6]]])
    result = metrics.compute()
    # Sentence 1: positions 0,1 match over max(4, 3); 1 edit (insert 3) over 3 ref tokens.
    # Sentence 2: closest reference [5, 6]: 1 match over 2 positions, 1 edit over 2 tokens.
    assert result["token_accuracy"] == pytest.approx(3 / 6)
    assert result["per"] == pytest.approx(2 / 5)
    assert result["wer"] == result["per"]  # tokens joined by spaces: each token is a word
    assert result["exact_match"] == 0.0
    hyps_text = ["1 2 3 4", "5"]
    refs_text = [["1 2 4"], ["9 9 9", "5 6"]]
    assert result["bleu"] == pytest.approx(corpus_bleu(hyps_text, refs_text, tokenize="none"))
    assert result["chrf"] == pytest.approx(corpus_chrf(hyps_text, refs_text))


def test_streaming_detokenize_separates_wer_from_per():
    letters = "abcdefghij"
    metrics = Seq2SeqMetrics(detokenize=lambda ids: "".join(letters[i] for i in ids))
    metrics.update([[1, 2, 3]], [[1, 2, 4]])  # "bcd" vs "bce": one word, one token wrong
    result = metrics.compute()
    assert result["per"] == pytest.approx(1 / 3)
    assert result["wer"] == pytest.approx(1.0)


def test_streaming_merge_equals_single_accumulator():
    hyps, refs = _random_corpus(30, seed=5)
    whole, left, right = Seq2SeqMetrics(), Seq2SeqMetrics(), Seq2SeqMetrics()
    whole.update(hyps, refs)
    left.update(hyps[:11], refs[:11])
    right.update(hyps[11:], refs[11:])
    left.merge_state(right.state_dict())
    assert left.compute() == pytest.approx(whole.compute())
    restored = Seq2SeqMetrics()
    restored.load_state_dict(whole.state_dict())
    assert restored.compute() == pytest.approx(whole.compute())


def test_streaming_errors():
    metrics = Seq2SeqMetrics()
    with pytest.raises(ValueError, match="before any update"):
        metrics.compute()
    metrics.update([[1, 2]], [[1, 2]])
    with pytest.raises(TypeError, match="one kind per accumulator"):
        metrics.update(["a b"], ["a b"])
    with pytest.raises(ValueError, match="1 hypotheses but 2"):
        metrics.update([[1]], [[1], [2]])


# ---------------------------------------------------------------- forecasting


def test_forecasting_metrics_hand_case():
    pred, target = torch.tensor([8.0, 9.0]), torch.tensor([9.0, 11.0])
    assert mae(pred, target).item() == pytest.approx(1.5)
    assert mse(pred, target).item() == pytest.approx(2.5)
    history = torch.tensor([1.0, 2.0, 4.0, 7.0])  # naive errors 1, 2, 3
    assert naive_scale(history).item() == pytest.approx(2.0)
    assert naive_scale(history, season=2).item() == pytest.approx(4.0)  # |4-1|, |7-2|
    assert mase(pred, target, naive_scale(history)).item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="scale must be > 0"):
        mase(pred, target, 0.0)
    with pytest.raises(ValueError, match="shape"):
        mae(pred, target[:1])


def test_sequence_wer_counts_each_output_as_one_word():
    # G2P: one word per example, spelled as phonemes; a word is wrong if any phoneme is.
    hyps = [["K", "AE1", "T"], ["D", "AO1", "G"], ["F", "IH1", "SH"]]
    refs = [[["K", "AE1", "T"]], [["D", "AA1", "G"], ["D", "AO1", "G"]], [["F", "IY1", "SH"]]]
    by_word, by_sequence = Seq2SeqMetrics(), Seq2SeqMetrics(wer_unit="sequence")
    for metrics in (by_word, by_sequence):
        metrics.update([" ".join(h) for h in hyps], [[" ".join(r) for r in group] for group in refs])
    word, sequence = by_word.compute(), by_sequence.compute()
    assert sequence["exact_match"] == pytest.approx(2 / 3)
    assert sequence["wer"] == pytest.approx(1 / 3)  # one word of three has an error
    assert word["wer"] == pytest.approx(1 / 9)  # one phoneme of nine
    assert sequence["per"] == word["per"] == pytest.approx(1 / 9)


def test_an_unknown_wer_unit_is_refused_by_name():
    with pytest.raises(ValueError, match="Seq2SeqMetrics: wer_unit must be one of .*'phoneme'"):
        Seq2SeqMetrics(wer_unit="phoneme")  # type: ignore[arg-type]
    # The trainer refuses it when built, not at its first validation decode an epoch later.
    with pytest.raises(ValueError, match="Seq2SeqTrainer: wer_unit must be one of .*'phoneme'"):
        Seq2SeqTrainer(torch.nn.Linear(2, 2), wer_unit="phoneme")  # type: ignore[arg-type]
