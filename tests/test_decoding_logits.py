"""Logits processors against naive per-row reference implementations."""

from __future__ import annotations

import math

import torch

from treadmill.decoding.logits import (
    RowLimits,
    apply_constraints,
    block_eos_before_min_len,
    force_prefix,
    no_repeat_ngram,
    sample_tokens,
    top_k_filter,
    top_p_filter,
)

INF = float("inf")


def test_top_k_keeps_exactly_the_k_largest() -> None:
    logits = torch.randn(6, 20)
    out = top_k_filter(logits, 4)
    for row, filtered in zip(logits, out, strict=True):
        kept = set(torch.isfinite(filtered).nonzero().squeeze(1).tolist())
        assert kept == set(row.topk(4).indices.tolist())
        assert torch.equal(filtered[list(kept)], row[list(kept)])
    assert torch.equal(top_k_filter(logits, 0), logits)


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    logits = torch.randn(8, 15) * 2
    for p in (0.1, 0.5, 0.9, 0.999):
        out = top_p_filter(logits, p)
        for row, filtered in zip(logits, out, strict=True):
            probs = row.softmax(-1)
            order = probs.argsort(descending=True).tolist()
            expected, mass = set(), 0.0
            for i in order:  # reference: add tokens best first until the mass reaches p
                expected.add(i)
                mass += float(probs[i])
                if mass >= p:
                    break
            assert set(torch.isfinite(filtered).nonzero().squeeze(1).tolist()) == expected
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_no_repeat_ngram_matches_brute_force() -> None:
    gen = torch.Generator().manual_seed(3)
    generated = torch.randint(4, 8, (10, 12), generator=gen)  # few symbols: many repeats
    scores = torch.zeros(10, 8)
    for n in (1, 2, 3):
        out = no_repeat_ngram(scores, generated, n)
        for r, seq in enumerate(generated.tolist()):
            banned = set()
            for i in range(len(seq) - n + 1):
                if seq[i : i + n - 1] == seq[len(seq) - n + 1 :]:
                    banned.add(seq[i + n - 1])
            assert set((out[r] == -INF).nonzero().squeeze(1).tolist()) == banned


def test_min_len_blocks_eos_only_in_short_rows_and_prefix_forces_tokens() -> None:
    scores = torch.randn(3, 6).log_softmax(-1)
    out = block_eos_before_min_len(scores, 2, torch.tensor([0, 2, 3]), eos_id=3)
    assert out[0, 3] == scores[0, 3] and out[1, 3] == scores[1, 3] and out[2, 3] == -INF
    prefix = torch.tensor([[4, 5], [5, 0], [0, 0]])
    forced = force_prefix(scores, 1, prefix, torch.tensor([2, 1, 0]))
    assert torch.isfinite(forced[0]).nonzero().squeeze(1).tolist() == [5]
    assert forced[0, 5] == scores[0, 5]
    assert torch.equal(forced[1:], scores[1:])  # rows whose prefix is used up are free


def test_constraints_keep_model_scores_and_forced_tokens_override_softer_bans() -> None:
    log_probs = torch.randn(4, 7).log_softmax(-1)
    limits = RowLimits(
        max_lengths=torch.tensor([5, 2, 5, 5]),
        min_lengths=torch.tensor([3, 3, 0, 0]),  # row 1: cap 2 < min 3, the cap wins
        prefix=torch.tensor([[6, 6, 6], [0, 0, 0], [0, 0, 0], [0, 0, 0]]),
        prefix_lengths=torch.tensor([3, 0, 0, 0]),
    )
    generated = torch.tensor([[6, 6], [5, 4], [4, 5], [4, 4]])
    out = apply_constraints(
        log_probs, 2, generated, limits, eos_id=3, never_generate=[0, 2], no_repeat_ngram_size=2
    )
    # row 0: prefix forces 6 at step 2 even though the bigram (6, 6) is a repeat
    assert torch.isfinite(out[0]).nonzero().squeeze(1).tolist() == [6]
    assert out[0, 6] == log_probs[0, 6]
    # row 1: at its cap only EOS, scored by the model although min_len had blocked it
    assert torch.isfinite(out[1]).nonzero().squeeze(1).tolist() == [3]
    assert out[1, 3] == log_probs[1, 3]
    # rows 2 and 3 at step 2: PAD/BOS banned; row 3 also bans 4 (bigram (4, 4) seen)
    assert set(torch.isfinite(out[2]).nonzero().squeeze(1).tolist()) == {1, 3, 4, 5, 6}
    assert set(torch.isfinite(out[3]).nonzero().squeeze(1).tolist()) == {1, 3, 5, 6}
    finite = torch.isfinite(out)
    assert torch.equal(out[finite], log_probs[finite])  # never renormalised


def test_sampling_frequencies_follow_the_filtered_distribution() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.5, 0.0, -1.0]]).repeat(20000, 1)
    gen = torch.Generator().manual_seed(0)
    draws = sample_tokens(logits, temperature=0.5, top_k=3, top_p=1.0, generator=gen)
    expected = (logits[0, :3] / 0.5).softmax(-1)
    counts = torch.bincount(draws, minlength=5).float() / draws.numel()
    assert counts[3:].sum() == 0
    # 20000 draws: standard error < 0.004, so 0.02 is > 5 sigma
    assert torch.allclose(counts[:3], expected, atol=0.02)
    assert math.isclose(float(counts.sum()), 1.0)
