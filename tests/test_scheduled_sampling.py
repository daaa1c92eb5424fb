"""Scheduled sampling: schedule values (Bengio et al. 2015) and the two-pass mixing."""

import math

import pytest
import torch
from torch import nn

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID
from treadmill.seq2seq import ScheduledSamplingSchedule, mix_two_pass

VOCAB = 10


def test_linear_schedule_values():
    schedule = ScheduledSamplingSchedule.linear(k=1.0, c=0.1, eps_min=0.2)
    assert [schedule(s) for s in (0, 3, 8, 100)] == pytest.approx([1.0, 0.7, 0.2, 0.2])
    # k > 1 holds eps at 1 until k - c * step drops below 1.
    delayed = ScheduledSamplingSchedule("linear", k=1.5, c=0.1)
    assert [delayed(s) for s in (0, 5, 10)] == pytest.approx([1.0, 1.0, 0.5])


def test_exponential_schedule_values():
    schedule = ScheduledSamplingSchedule.exponential(k=0.9)
    assert [schedule(s) for s in (0, 1, 2, 10)] == pytest.approx([1.0, 0.9, 0.81, 0.9**10])
    assert ScheduledSamplingSchedule.exponential(k=0.5, eps_min=0.3)(5) == pytest.approx(0.3)


def test_inverse_sigmoid_schedule_values():
    schedule = ScheduledSamplingSchedule.inverse_sigmoid(k=10.0)
    assert schedule(0) == pytest.approx(10 / 11)
    assert schedule(20) == pytest.approx(10 / (10 + math.exp(2.0)))
    # eps crosses 1/2 where exp(step / k) = k, i.e. step = k ln k.
    assert schedule(10 * math.log(10)) == pytest.approx(0.5)
    assert schedule(10**7) == 0.0  # no overflow far into training


def test_constant_schedule_and_constructor_equivalence():
    assert ScheduledSamplingSchedule.constant(0.75)(12345) == 0.75
    assert ScheduledSamplingSchedule.linear(1.0, 0.01, 0.1) == ScheduledSamplingSchedule(
        "linear", k=1.0, c=0.01, eps_min=0.1
    )


@pytest.mark.parametrize(
    "schedule",
    [
        ScheduledSamplingSchedule.linear(k=1.0, c=1e-3, eps_min=0.05),
        ScheduledSamplingSchedule.exponential(k=0.995),
        ScheduledSamplingSchedule.inverse_sigmoid(k=50.0),
    ],
)
def test_schedules_decay_monotonically_within_bounds(schedule):
    values = [schedule(step) for step in range(0, 5000, 7)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a >= b for a, b in zip(values, values[1:], strict=False))
    assert values[0] > 0.9 and values[-1] < 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "cosine", "k": 1.0}, "kind must be one of"),
        ({"kind": "exponential", "k": 1.0}, r"k must be in \(0, 1\)"),
        ({"kind": "inverse_sigmoid", "k": 0.5}, "k must be >= 1"),
        ({"kind": "linear", "k": 1.0, "c": 0.0}, "c .decay per step. must be > 0"),
        ({"kind": "linear", "k": 1.0, "c": 0.1, "eps_min": 1.5}, "eps_min must be in"),
        ({"kind": "constant", "k": 2.0}, r"in \[0, 1\]"),
    ],
)
def test_invalid_schedules_name_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ScheduledSamplingSchedule(**kwargs)


def test_negative_step_rejected():
    with pytest.raises(ValueError, match="step"):
        ScheduledSamplingSchedule.constant(1.0)(-1)


class NextTokenModel(nn.Module):
    """Stand-in Transformer: at every position it predicts next(input token), a non-special id.

    A "PAD bias" variant puts the largest logit on PAD and the second largest on the rule's token.
    Records how it was called.
    """

    def __init__(self, pad_bias: bool = False) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(20.0))
        self.pad_bias = pad_bias
        self.calls: list[dict] = []

    def forward(self, src, tgt_in, src_padding_mask=None, tgt_padding_mask=None):
        self.calls.append({"grad": torch.is_grad_enabled(), "src_padding_mask": src_padding_mask})
        nxt = _next_token(tgt_in)
        logits = nn.functional.one_hot(nxt, VOCAB).float() * self.scale  # (batch, tgt_len, vocab)
        if self.pad_bias:
            logits[..., PAD_ID] = 100.0
        return logits


def _next_token(tokens: torch.Tensor) -> torch.Tensor:
    """The stand-in model's rule: a token in 4..VOCAB-1 (never PAD) for every input token."""
    return 4 + (tokens - 3) % (VOCAB - 4)


def _tgt_in(batch: int = 64, tgt_len: int = 12) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, VOCAB, (batch, tgt_len), generator=gen)
    tokens[:, 0] = BOS_ID
    lengths = torch.randint(2, tgt_len + 1, (batch,), generator=gen)
    positions = torch.arange(tgt_len).expand(batch, tgt_len)
    tokens[positions == (lengths - 1).unsqueeze(1)] = EOS_ID
    tokens[positions >= lengths.unsqueeze(1)] = PAD_ID
    return tokens


def _expected_predictions(tgt_in: torch.Tensor) -> torch.Tensor:
    """The stand-in model's prediction for each decoder input position 1.. (from position t-1)."""
    return _next_token(tgt_in[:, :-1])


def test_mix_full_teacher_forcing_is_identity_without_a_pass():
    model, tgt_in = NextTokenModel(), _tgt_in()
    mixed = mix_two_pass(model, torch.zeros(64, 3, dtype=torch.long), tgt_in, None, 1.0)
    assert torch.equal(mixed, tgt_in)
    assert model.calls == []


def test_mix_no_teacher_forcing_replaces_every_real_position():
    model, tgt_in = NextTokenModel(), _tgt_in()
    src = torch.randint(4, VOCAB, (64, 5))
    src_padding_mask = torch.zeros(64, 5, dtype=torch.bool)
    mixed = mix_two_pass(model, src, tgt_in, src_padding_mask, 0.0)
    real = tgt_in[:, 1:] != PAD_ID
    assert torch.equal(mixed[:, 0], tgt_in[:, 0])  # BOS stays
    assert torch.equal(mixed[:, 1:][real], _expected_predictions(tgt_in)[real])
    assert (mixed[:, 1:][~real] == PAD_ID).all()  # padding stays PAD
    # The first pass ran once, without gradient, and saw the source padding mask.
    assert len(model.calls) == 1 and model.calls[0]["grad"] is False
    assert model.calls[0]["src_padding_mask"] is src_padding_mask


def test_mix_rate_and_reproducibility():
    model, tgt_in = NextTokenModel(), _tgt_in(batch=512, tgt_len=16)
    src = torch.zeros(512, 3, dtype=torch.long)

    def run(seed: int) -> torch.Tensor:
        return mix_two_pass(model, src, tgt_in, None, 0.3, torch.Generator().manual_seed(seed))

    mixed = run(1)
    assert torch.equal(mixed, run(1))
    assert not torch.equal(mixed, run(2))
    real = tgt_in[:, 1:] != PAD_ID
    gold, predicted = tgt_in[:, 1:][real], _expected_predictions(tgt_in)[real]
    taken = mixed[:, 1:][real]
    # Every position holds either the gold token or the model's prediction ...
    assert ((taken == gold) | (taken == predicted)).all()
    # ... and the prediction is taken with probability 1 - eps = 0.7 (counted where it differs
    # from the gold token, so that the two are distinguishable).
    differs = predicted != gold
    assert differs.sum() > 3000
    rate = (taken[differs] == predicted[differs]).float().mean().item()
    assert abs(rate - 0.7) < 0.03, rate  # >3000 positions: 3 sigma is about 0.025


def test_mix_never_feeds_pad_and_sampling_is_reproducible():
    model, tgt_in = NextTokenModel(pad_bias=True), _tgt_in()
    src = torch.zeros(64, 3, dtype=torch.long)
    mixed = mix_two_pass(model, src, tgt_in, None, 0.0)
    real = tgt_in[:, 1:] != PAD_ID
    # PAD had the top logit, so the second best (the rule's token) is what gets fed.
    assert torch.equal(mixed[:, 1:][real], _expected_predictions(tgt_in)[real])
    sampled = [
        mix_two_pass(model, src, tgt_in, None, 0.0, torch.Generator().manual_seed(3), sample=True)
        for _ in range(2)
    ]
    assert torch.equal(sampled[0], sampled[1])
    assert (sampled[0][:, 1:][real] != PAD_ID).all()


def test_mix_rejects_bad_probability():
    with pytest.raises(ValueError, match="teacher_forcing_prob"):
        mix_two_pass(NextTokenModel(), torch.zeros(1, 1), _tgt_in(1), None, 1.2)
