"""Greedy, beam and sampling semantics on toy models: equivalences, exact search, scores, lengths."""

from __future__ import annotations

import math

import pytest
import torch
from decoding_toy_models import (
    ConfidentSeq2Seq,
    EosBiased,
    TableSeq2Seq,
    ToyLM,
    ToySeq2Seq,
    enumerate_outputs,
    gnmt_penalty,
)

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from treadmill.decoding import generate

VOCAB = 12


def _model(bias: float = -3.0, slope: float = 0.5, sharpness: float = 3.0) -> EosBiased:
    torch.manual_seed(0)
    return EosBiased(ToySeq2Seq(VOCAB, sharpness=sharpness), bias, slope)


def _src(batch: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 9, (batch,), generator=gen)
    src = torch.randint(4, VOCAB, (batch, int(lengths.max())), generator=gen)
    mask = torch.arange(src.size(1))[None, :] >= lengths[:, None]
    return src.masked_fill(mask, PAD_ID), mask


def _teacher_forced_log_prob(
    model, src_row: torch.Tensor, output: list[int], eos: bool = True
) -> float:
    """Sum of the model's log-probs of output (+ EOS), computed in one full decode call."""
    src_row = src_row[src_row != PAD_ID][None]
    tgt_in = torch.tensor([[BOS_ID, *output]])
    with torch.no_grad():
        logits = model.decode(tgt_in, model.encode(src_row, None), None)[0][0]
    log_probs = logits.float().log_softmax(-1)
    targets = [*output, EOS_ID] if eos else output
    return sum(float(log_probs[t, tok]) for t, tok in enumerate(targets))


def test_beam_of_one_and_top_k_one_sampling_equal_greedy() -> None:
    model = _model()
    src, mask = _src()
    greedy = generate(model, src, mask, max_len=15, return_scores=True)
    beam = generate(
        model,
        src,
        mask,
        strategy="beam",
        beam_size=1,
        length_penalty=0.0,
        max_len=15,
        return_scores=True,
    )
    sample = generate(model, src, mask, strategy="sample", top_k=1, seed=7, max_len=15)
    assert beam.sequences == greedy.sequences
    assert sample.sequences == greedy.sequences
    assert torch.allclose(beam.scores, greedy.scores, atol=1e-5)
    assert len({len(s) for s in greedy.sequences}) > 1  # the test covers varied EOS positions


def test_seeded_sampling_is_reproducible_and_seeds_differ_on_a_flat_model() -> None:
    flat = _model(bias=0.0, slope=0.0, sharpness=0.0)  # every token equally likely
    src, mask = _src()
    a = generate(flat, src, mask, strategy="sample", seed=11, max_len=10)
    b = generate(flat, src, mask, strategy="sample", seed=11, max_len=10)
    c = generate(flat, src, mask, strategy="sample", seed=12, max_len=10)
    assert a.sequences == b.sequences
    assert a.sequences != c.sequences
    # every allowed token (all but PAD/BOS; EOS ends) shows up: the distribution really is flat
    seen = {
        t
        for seq in generate(flat, src, mask, strategy="sample", seed=1, max_len=60).sequences
        for t in seq
    }
    assert seen == set(range(VOCAB)) - {PAD_ID, BOS_ID, EOS_ID}


def test_sampling_never_touches_the_global_rng() -> None:
    model = _model()
    src, mask = _src()
    state = torch.get_rng_state()
    generate(model, src, mask, strategy="sample", max_len=8)  # seed=None: a fresh private generator
    generate(model, src, mask, strategy="sample", seed=3, max_len=8)
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
@pytest.mark.parametrize("early_stopping", [True, False])
def test_wide_beam_finds_the_exhaustive_optimum(alpha: float, early_stopping: bool) -> None:
    table = TableSeq2Seq(vocab_size=5, scale=2.0)
    allowed = [UNK_ID, 4]  # PAD and BOS are never generated; EOS closes every output
    outputs = enumerate_outputs(allowed, max_len=4)  # 31 complete sequences
    sources = [[4], [4, 1], [1, 4, 4], [1, 1, 1, 4]]
    for src in sources:
        reference = sorted(
            (
                (table.sequence_log_prob(src, out, BOS_ID) / gnmt_penalty(len(out) + 1, alpha), out)
                for out in outputs
            ),
            key=lambda pair: -pair[0],
        )
        result = generate(
            table,
            torch.tensor([src]),
            strategy="beam",
            beam_size=len(outputs),
            num_return_sequences=5,
            length_penalty=alpha,
            early_stopping=early_stopping,
            max_len=4,
            return_scores=True,
        )
        assert result.sequences[0] == [out for _, out in reference[:5]]
        expected = torch.tensor([score for score, _ in reference[:5]])
        assert torch.allclose(result.scores[0], expected, atol=1e-5)


def test_scores_are_the_models_summed_log_probs() -> None:
    model = _model()
    src, mask = _src()
    for kwargs in (
        {},
        {"strategy": "sample", "seed": 0},
        {"strategy": "beam", "length_penalty": 0.0},
    ):
        out = generate(model, src, mask, max_len=15, return_scores=True, **kwargs)
        for b, seq in enumerate(out.sequences):
            assert math.isclose(
                float(out.scores[b]), _teacher_forced_log_prob(model, src[b], seq), abs_tol=1e-4
            )
    alpha = 0.8
    out = generate(
        model, src, mask, strategy="beam", length_penalty=alpha, max_len=15, return_scores=True
    )
    for b, seq in enumerate(out.sequences):
        expected = _teacher_forced_log_prob(model, src[b], seq) / gnmt_penalty(len(seq) + 1, alpha)
        assert math.isclose(float(out.scores[b]), expected, abs_tol=1e-4)


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_min_len_and_max_len_are_respected(strategy: str) -> None:
    src, mask = _src()
    extra = {"sample": {"seed": 0}, "beam": {"length_penalty": 0.0}}.get(strategy, {})
    eager = _model(bias=20.0, slope=0.0)  # always wants EOS
    assert generate(eager, src, mask, strategy=strategy, **extra).sequences == [
        [] for _ in range(len(src))
    ]
    out = generate(eager, src, mask, strategy=strategy, min_len=3, max_len=9, **extra)
    assert [len(s) for s in out.sequences] == [3] * len(src)
    never = _model(bias=-30.0, slope=0.0)  # never wants EOS
    out = generate(never, src, mask, strategy=strategy, max_len=7, return_scores=True, **extra)
    assert [len(s) for s in out.sequences] == [7] * len(src)
    # the cap closes the sequence with EOS and counts EOS's log-prob (about -30 here)
    assert bool((out.scores < -20).all())
    # relative limit: int(0.5 * src_len + 1) tokens per example, from its own (unpadded) length
    out = generate(never, src, mask, strategy=strategy, max_len_a=0.5, max_len_b=1, **extra)
    src_lengths = (~mask).sum(1)
    assert [len(s) for s in out.sequences] == [int(0.5 * n + 1) for n in src_lengths.tolist()]


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_outputs_are_cut_before_eos_and_padded_after(strategy: str) -> None:
    model = _model()
    src, mask = _src(batch=8)
    extra = {"sample": {"seed": 0}}.get(strategy, {})
    out = generate(model, src, mask, strategy=strategy, max_len=15, **extra)
    lengths = [len(s) for s in out.sequences]
    assert len(set(lengths)) > 1
    assert out.tokens.shape == (len(src), max(lengths))
    for b, seq in enumerate(out.sequences):
        assert not {EOS_ID, BOS_ID, PAD_ID} & set(seq)
        assert out.tokens[b, : len(seq)].tolist() == seq
        assert bool((out.tokens[b, len(seq) :] == PAD_ID).all())
    if strategy != "sample":  # the sequence stops where the model's own choice was EOS
        for b, seq in enumerate(out.sequences[:3]):
            if len(seq) < 15 and strategy == "greedy":
                src_row = src[b][~mask[b]][None]
                logits = model.decode(torch.tensor([[BOS_ID, *seq]]), model.encode(src_row), None)[
                    0
                ]
                assert int(logits[0, -1].argmax()) == EOS_ID


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
def test_forced_prefix_per_example(strategy: str) -> None:
    model = _model()
    src, mask = _src(batch=3)
    prefix = [[5, 6, 7], [], [9]]
    extra = {"sample": {"seed": 0}}.get(strategy, {})
    out = generate(
        model, src, mask, strategy=strategy, prefix=prefix, max_len=12, return_scores=True, **extra
    )
    for b, seq in enumerate(out.sequences):
        assert seq[: len(prefix[b])] == prefix[b]
        if strategy != "beam":  # forced tokens are scored by the model like any other
            assert math.isclose(
                float(out.scores[b]), _teacher_forced_log_prob(model, src[b], seq), abs_tol=1e-4
            )
    # forcing the greedy output's own start changes nothing
    free = generate(model, src, mask, max_len=12).sequences
    forced = generate(model, src, mask, max_len=12, prefix=[s[:2] for s in free]).sequences
    assert forced == free


def test_prefix_errors_name_the_problem() -> None:
    model = _model()
    src, mask = _src(batch=2)
    with pytest.raises(ValueError, match="prefix\\[1\\] has 4 tokens"):
        generate(model, src, mask, max_len=3, prefix=[[5], [5, 5, 5, 5]])
    with pytest.raises(ValueError, match="PAD/BOS/EOS"):
        generate(model, src, mask, prefix=[[5, EOS_ID], [5]])
    with pytest.raises(ValueError, match="2 entries for a batch of 3"):
        generate(model, *_src(batch=3), prefix=[[5], [6]])


def test_beam_returns_distinct_hypotheses_best_first() -> None:
    model = _model()
    src, mask = _src(batch=4)
    out = generate(
        model,
        src,
        mask,
        strategy="beam",
        beam_size=4,
        num_return_sequences=3,
        max_len=12,
        return_scores=True,
    )
    assert out.scores.shape == (4, 3) and out.tokens.shape[:2] == (4, 3)
    for b, hyps in enumerate(out.sequences):
        assert len(hyps) == 3 and len({tuple(h) for h in hyps}) == 3
        assert out.scores[b].tolist() == sorted(out.scores[b].tolist(), reverse=True)
    best = generate(model, src, mask, strategy="beam", beam_size=4, max_len=12).sequences
    assert best == [hyps[0] for hyps in out.sequences]
    samples = generate(
        model, src, mask, strategy="sample", seed=0, num_return_sequences=5, max_len=12
    )
    assert [len(h) for h in samples.sequences] == [5] * 4 and samples.tokens.shape[:2] == (4, 5)


@pytest.mark.parametrize("strategy", ["greedy", "beam"])
def test_no_repeat_ngram(strategy: str) -> None:
    model = _model(bias=-30.0, slope=0.0)  # long outputs of a model that loves repeating
    src, mask = _src()
    plain = generate(model, src, mask, strategy=strategy, max_len=20).sequences
    assert any(len(set(zip(s, s[1:], strict=False))) < len(s) - 1 for s in plain)
    for n in (2, 3):
        out = generate(model, src, mask, strategy=strategy, max_len=20, no_repeat_ngram_size=n)
        for seq in out.sequences:
            grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
            assert len(grams) == len(set(grams))


def test_attention_rows_match_the_models_weights() -> None:
    model = _model()
    src, mask = _src(batch=4)
    for strategy in ("greedy", "beam"):
        out = generate(model, src, mask, strategy=strategy, max_len=12, return_attention=True)
        for b, seq in enumerate(out.sequences):
            src_row = src[b][~mask[b]][None]
            tgt_in = torch.tensor([[BOS_ID, *seq]])
            _, _, weights = model.decode(tgt_in, model.encode(src_row), None, return_attention=True)
            assert out.attention[b].shape == (len(seq), src_row.size(1))
            assert torch.allclose(out.attention[b], weights[0, : len(seq)], atol=1e-5)


def test_model_mode_restored_encoder_runs_once_and_no_autograd() -> None:
    model = _model()
    src, mask = _src()
    model.train()
    out = generate(model, src, mask, strategy="beam", beam_size=3, return_scores=True, max_len=10)
    assert model.training and model.model.training
    assert model.model.encode_calls == 1  # once per batch, expanded to beams afterwards
    assert not out.scores.requires_grad and out.scores.is_inference()
    model.eval()
    generate(model, src, mask, max_len=5)
    assert not model.training


def test_input_errors_name_the_fix() -> None:
    lm = ToyLM(VOCAB)
    seq2seq = _model()
    with pytest.raises(ValueError, match="decoder-only model: pass `prompt=`"):
        generate(lm, torch.tensor([[4, 5]]))
    with pytest.raises(ValueError, match="pass `src`, not `prompt`"):
        generate(seq2seq, prompt=[[4, 5]])
    with pytest.raises(ValueError, match="LEFT-padded"):
        generate(lm, prompt=torch.tensor([[4, 5, PAD_ID]]))
    with pytest.raises(ValueError, match="return_attention=True needs an encoder-decoder"):
        generate(lm, prompt=[[4]], return_attention=True)
    with pytest.raises(ValueError, match="no `is_encoder_decoder`"):
        generate(torch.nn.Linear(2, 2), torch.tensor([[4]]))
    with pytest.raises(ValueError, match="Did you mean 'max_len'"):
        generate(seq2seq, torch.tensor([[4]]), max_length=3)


def test_decoder_only_outputs_exclude_the_prompt_and_lists_are_padded_for_you() -> None:
    torch.manual_seed(0)
    lm = EosBiased(ToyLM(VOCAB), -3.0, 0.5)
    prompts = [[4, 5, 6], [7], [8, 9]]
    out = generate(lm, prompt=prompts, max_len=10, return_scores=True)
    for prompt, seq, score in zip(prompts, out.sequences, out.scores, strict=True):
        alone = generate(lm, prompt=[prompt], max_len=10, return_scores=True)
        assert alone.sequences[0] == seq
        assert torch.allclose(alone.scores[0], score, atol=1e-5)
        with torch.no_grad():
            logits = lm.decode(torch.tensor([prompt + seq]))[0][0].log_softmax(-1)
        targets = [*seq, EOS_ID]
        expected = sum(float(logits[len(prompt) - 1 + t, tok]) for t, tok in enumerate(targets))
        assert math.isclose(float(score), expected, abs_tol=1e-4)


def test_default_beam_stop_keeps_the_answer_that_junk_beams_outrun() -> None:
    model = ConfidentSeq2Seq(length=4)
    src = torch.tensor([[5, 6]])
    exact = generate(model, src, strategy="beam", beam_size=3, max_len=8)
    assert exact.sequences[0] == [model.token_a] * 4
    assert generate(model, src, strategy="greedy", max_len=8).sequences[0] == [model.token_a] * 4
    # fairseq's rule stops at beam_size finished: three junk hypotheses end before the answer.
    fairseq_rule = generate(model, src, strategy="beam", beam_size=3, max_len=8, early_stopping=True)
    assert fairseq_rule.sequences[0] != [model.token_a] * 4
