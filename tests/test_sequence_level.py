"""Sequence-level losses: analytic gradients, gradients only through log-probabilities, rewards."""

import pytest
import sacrebleu
import torch
from torch import nn

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID
from treadmill.seq2seq import (
    REWARDS,
    RewardBaseline,
    compute_rewards,
    exact_match_reward,
    get_reward,
    mrt_loss,
    negative_edit_distance_reward,
    pack_candidates,
    reinforce_loss,
    sentence_bleu_reward,
    sequence_logprobs,
)

VOCAB = 9


class TinySeq2Seq(nn.Module):
    """Stand-in encoder-decoder: causal (a cumulative sum over the prefix) and source-dependent."""

    def __init__(self) -> None:
        super().__init__()
        self.src_embed = nn.Embedding(VOCAB, 8, padding_idx=PAD_ID)
        self.tgt_embed = nn.Embedding(VOCAB, 8)
        self.out = nn.Linear(8, VOCAB)

    def forward(self, src, tgt_in, src_padding_mask=None, tgt_padding_mask=None):
        keep = (~src_padding_mask).float() if src_padding_mask is not None else torch.ones_like(src)
        memory = (self.src_embed(src) * keep.unsqueeze(-1)).sum(1) / keep.sum(1, keepdim=True)
        hidden = self.tgt_embed(tgt_in).cumsum(dim=1) + memory.unsqueeze(1)  # (batch, T, 8)
        return self.out(torch.tanh(hidden))  # (batch, T, vocab)


# ---------------------------------------------------------------- MRT


def test_mrt_loss_value_hand_case():
    logprobs = torch.tensor([[-1.0, -2.0]])
    rewards = torch.tensor([[1.0, 0.0]])
    q = torch.softmax(torch.tensor([-1.0, -2.0]), dim=0)
    assert mrt_loss(logprobs, rewards, alpha=1.0).item() == pytest.approx(-q[0].item())
    # alpha -> 0 flattens Q to uniform: the risk is minus the mean reward.
    assert mrt_loss(logprobs, rewards, alpha=1e-9).item() == pytest.approx(-0.5)


def test_mrt_gradient_is_analytic_and_skips_rewards():
    logprobs = torch.tensor([[-1.0, -3.0, -2.5], [-0.5, -0.7, -4.0]], requires_grad=True)
    rewards = torch.tensor([[1.0, 0.2, 0.0], [0.0, 0.5, 1.0]], requires_grad=True)
    alpha = 0.7
    loss = mrt_loss(logprobs, rewards, alpha=alpha)
    loss.backward()
    q = torch.softmax(alpha * logprobs.detach(), dim=1)
    cost = -rewards.detach()
    risk = (q * cost).sum(dim=1, keepdim=True)
    # d risk_b / d logprob_bk = alpha * Q_bk * (cost_bk - risk_b); the loss averages over B = 2.
    expected = alpha * q * (cost - risk) / 2
    torch.testing.assert_close(logprobs.grad, expected)
    assert rewards.grad is None


def test_mrt_candidate_padding_mask_drops_candidates():
    logprobs = torch.tensor([[-1.0, -2.0, -0.1]], requires_grad=True)
    rewards = torch.tensor([[1.0, 0.0, float("nan")]])  # the missing candidate's junk
    mask = torch.tensor([[False, False, True]])
    loss = mrt_loss(logprobs, rewards, alpha=1.0, candidate_padding_mask=mask)
    loss.backward()
    expected = mrt_loss(torch.tensor([[-1.0, -2.0]]), torch.tensor([[1.0, 0.0]]), alpha=1.0)
    torch.testing.assert_close(loss.detach(), expected)
    assert logprobs.grad[0, 2].item() == 0.0
    with pytest.raises(ValueError, match="every candidate"):
        mrt_loss(logprobs, rewards, candidate_padding_mask=torch.ones(1, 3, dtype=torch.bool))


def test_mrt_argument_errors():
    with pytest.raises(ValueError, match="must match"):
        mrt_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="alpha"):
        mrt_loss(torch.zeros(2, 3), torch.zeros(2, 3), alpha=0.0)


# ---------------------------------------------------------------- REINFORCE


def test_reinforce_gradient_with_batch_mean_baseline():
    logprobs = torch.tensor([-1.0, -2.0, -0.5, -3.0], requires_grad=True)
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5], requires_grad=True)
    reinforce_loss(logprobs, rewards).backward()
    advantage = rewards.detach() - rewards.detach().mean()
    torch.testing.assert_close(logprobs.grad, -advantage / 4)
    assert rewards.grad is None


def test_reinforce_per_source_baseline_and_given_baselines():
    logprobs = torch.tensor([[-1.0, -2.0], [-0.5, -0.1]], requires_grad=True)
    rewards = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    reinforce_loss(logprobs, rewards).backward()
    # Per-source mean baseline: the second source's equal rewards give no gradient at all.
    torch.testing.assert_close(logprobs.grad, torch.tensor([[-0.5, 0.5], [0.0, 0.0]]) / 4)
    # A float baseline, and a tensor baseline that requires grad but receives none.
    logprobs.grad = None
    baseline = torch.tensor([[0.25], [0.75]], requires_grad=True)
    reinforce_loss(logprobs, rewards, baseline=baseline).backward()
    torch.testing.assert_close(logprobs.grad, -(rewards - baseline.detach()) / 4)
    assert baseline.grad is None
    loss = reinforce_loss(logprobs.detach(), rewards, baseline=0.5)
    assert loss.item() == pytest.approx(-((rewards - 0.5) * logprobs.detach()).mean().item())


def test_reward_baseline_moving_average_and_state():
    baseline = RewardBaseline(momentum=0.5)
    assert baseline(torch.tensor([1.0, 0.0])) == pytest.approx(0.5)  # first call: own mean
    assert baseline(torch.tensor([1.0, 1.0])) == pytest.approx(0.5)  # the average before it
    assert baseline.value == pytest.approx(0.75)
    restored = RewardBaseline()
    restored.load_state_dict(baseline.state_dict())
    assert (restored.momentum, restored.value) == (0.5, pytest.approx(0.75))
    assert restored(torch.tensor([0.0])) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="momentum"):
        RewardBaseline(momentum=1.0)


# ---------------------------------------------------------------- rewards


def test_rewards_hand_cases():
    assert exact_match_reward([5, 6], [5, 6]) == 1.0
    assert exact_match_reward([5, 6], [5, 6, 7]) == 0.0
    assert negative_edit_distance_reward([5, 6, 7, 8], [5, 6, 7, 8]) == 0.0
    assert negative_edit_distance_reward([5, 7], [5, 6, 7, 8]) == pytest.approx(-2 / 4)
    hyp, ref = [4, 5, 6, 7, 8, 9], [4, 5, 6, 7, 9, 8]
    expected = sacrebleu.sentence_bleu("4 5 6 7 8 9", ["4 5 6 7 9 8"], tokenize="none").score
    assert sentence_bleu_reward(hyp, ref) == pytest.approx(expected / 100)
    assert 0.0 < sentence_bleu_reward(hyp, ref) < 1.0
    assert sentence_bleu_reward(ref, ref) == pytest.approx(1.0)
    assert sentence_bleu_reward([], []) == 1.0


def test_reward_registry_and_batch():
    assert set(REWARDS) == {"exact_match", "sentence_bleu", "negative_edit_distance"}
    assert get_reward("exact_match") is exact_match_reward
    with pytest.raises(ValueError, match="negative_edit_distance"):
        get_reward("bleu")
    rewards = compute_rewards("exact_match", [[5], [6, 7]], [[5], [6]])
    assert rewards.dtype == torch.float32 and rewards.tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="repeat each reference K times"):
        compute_rewards(exact_match_reward, [[5], [6]], [[5]])


# ---------------------------------------------------------------- candidates and log-probs


def test_pack_candidates_layout():
    packed = pack_candidates([[5, 6], [], [7]])
    expected = [
        [BOS_ID, 5, 6, EOS_ID],
        [BOS_ID, EOS_ID, PAD_ID, PAD_ID],
        [BOS_ID, 7, EOS_ID, PAD_ID],
    ]
    assert packed.tolist() == expected


def _manual_logprob(model, src_row, candidate) -> torch.Tensor:
    """One candidate alone, scored token by token up to and including its EOS."""
    tokens = candidate[: candidate.tolist().index(EOS_ID) + 1].unsqueeze(0)
    logits = model(src_row.unsqueeze(0), tokens[:, :-1])
    log_probs = logits.log_softmax(-1)[0]
    return sum(log_probs[t, tokens[0, t + 1]] for t in range(tokens.size(1) - 1))


def test_sequence_logprobs_equals_one_by_one_scoring():
    model = TinySeq2Seq()
    src = torch.tensor([[4, 5, 6, 0], [7, 8, 0, 0]])
    src_padding_mask = src == PAD_ID
    hyps = [[5, 6], [7], [8, 8, 8], []]  # K = 2 candidates per source, grouped by source
    candidates = pack_candidates(hyps)
    scores = sequence_logprobs(model, src, src_padding_mask, candidates)
    assert scores.shape == (4,)
    # Source rows are repeated per candidate: compare with scoring each pair on its own
    # (the unpadded source, so the source padding mask is exercised too).
    sources = [src[0, :3], src[0, :3], src[1, :2], src[1, :2]]
    for i, source in enumerate(sources):
        torch.testing.assert_close(scores[i], _manual_logprob(model, source, candidates[i]))
    # Tokens after the first EOS are not scored.
    junk = candidates.clone()
    junk[1, 3:] = 6
    torch.testing.assert_close(sequence_logprobs(model, src, src_padding_mask, junk), scores)
    normalized = sequence_logprobs(
        model, src, src_padding_mask, candidates, normalize_by_length=True
    )
    torch.testing.assert_close(normalized, scores / torch.tensor([3.0, 2.0, 4.0, 1.0]))


def test_sequence_logprobs_errors():
    model = TinySeq2Seq()
    with pytest.raises(ValueError, match="multiple"):
        sequence_logprobs(
            model, torch.ones(2, 3, dtype=torch.long), None, pack_candidates([[5]] * 3)
        )
    with pytest.raises(ValueError, match="pack_candidates"):
        sequence_logprobs(model, torch.ones(1, 3, dtype=torch.long), None, torch.ones(1, 1).long())


@pytest.mark.parametrize("objective", ["mrt", "reinforce"])
def test_sequence_level_gradient_reaches_only_the_model(objective):
    model = TinySeq2Seq()
    src = torch.tensor([[4, 5, 6], [7, 8, 4]])
    hyps, refs = [[5, 6], [6, 5], [8], [8, 4]], [[5, 6], [5, 6], [8, 4], [8, 4]]
    rewards = compute_rewards("negative_edit_distance", hyps, refs).requires_grad_()
    logprobs = sequence_logprobs(model, src, src == PAD_ID, pack_candidates(hyps)).view(2, 2)
    if objective == "mrt":
        loss = mrt_loss(logprobs, rewards.view(2, 2), alpha=1.0)
    else:
        loss = reinforce_loss(logprobs, rewards.view(2, 2))
    loss.backward()
    assert rewards.grad is None
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    # One gradient step lowers the loss: the higher-reward candidates gain probability.
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.5 * p.grad
        new_logprobs = sequence_logprobs(model, src, src == PAD_ID, pack_candidates(hyps)).view(
            2, 2
        )
    if objective == "mrt":
        assert mrt_loss(new_logprobs, rewards.view(2, 2), alpha=1.0) < loss
    else:
        assert reinforce_loss(new_logprobs, rewards.view(2, 2)) < loss
