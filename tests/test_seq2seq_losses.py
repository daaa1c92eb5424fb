"""LabelSmoothedCrossEntropy: reference formula, padding ignored, exact accumulation by count."""

import pytest
import torch
import torch.nn.functional as F

from treadmill.constants import PAD_ID
from treadmill.seq2seq import LabelSmoothedCrossEntropy, LossOutput

VOCAB = 9


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.tensor([[4, 5, 6, 7, 3], [8, 3, 0, 0, 0], [5, 5, 4, 3, 0]])
    logits = torch.randn(3, 5, VOCAB, requires_grad=True)
    return logits, target


def _reference_token_losses(logits: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """Label smoothing written out: (1 - eps) * NLL + eps * mean over the vocabulary of -log p."""
    log_probs = logits.log_softmax(dim=-1)
    nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    uniform = -log_probs.mean(dim=-1)
    return ((1 - eps) * nll + eps * uniform) * (target != PAD_ID)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_token_reduction_matches_reference_formula(eps):
    logits, target = _batch()
    loss = LabelSmoothedCrossEntropy(label_smoothing=eps)(logits, target)
    expected = _reference_token_losses(logits, target, eps).sum() / (target != PAD_ID).sum()
    torch.testing.assert_close(loss, expected)


def test_unsmoothed_equals_cross_entropy_ignore_index():
    logits, target = _batch()
    expected = F.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1), ignore_index=PAD_ID)
    torch.testing.assert_close(LabelSmoothedCrossEntropy()(logits, target), expected)


def test_sentence_reduction_is_mean_of_sentence_sums():
    logits, target = _batch()
    loss = LabelSmoothedCrossEntropy(0.1, reduction="sentence")(logits, target)
    per_token = _reference_token_losses(logits, target, 0.1)
    torch.testing.assert_close(loss, per_token.sum(dim=1).mean())


@pytest.mark.parametrize("reduction", ["token", "sentence"])
def test_padding_is_ignored(reduction):
    logits, target = _batch()
    criterion = LabelSmoothedCrossEntropy(0.1, reduction=reduction)
    loss = criterion(logits, target)
    loss.backward()
    pad = target == PAD_ID
    # No gradient reaches a padded position, with smoothing on.
    assert logits.grad[pad].abs().max().item() == 0.0
    assert logits.grad[~pad].abs().max().item() > 0.0
    # Whatever the logits say at padded positions, the loss is the same.
    changed = logits.detach().clone()
    changed[pad] = torch.randn_like(changed[pad]) * 100
    torch.testing.assert_close(criterion(changed, target), loss.detach())
    # Extra all-pad columns and an all-pad row change nothing either.
    wider_target = F.pad(target, (0, 3), value=PAD_ID)
    wider_target = torch.cat([wider_target, torch.zeros_like(wider_target[:1])])
    wider_logits = torch.randn(4, 8, VOCAB)
    wider_logits[:3, :5] = logits.detach()
    torch.testing.assert_close(criterion(wider_logits, wider_target), loss.detach())


def test_loss_and_count_fields():
    logits, target = _batch()
    out = LabelSmoothedCrossEntropy(0.2).loss_and_count(logits, target)
    assert isinstance(out, LossOutput)
    assert out.n_tokens.item() == 11 and out.n_sentences.item() == 3
    torch.testing.assert_close(out.loss_sum, _reference_token_losses(logits, target, 0.2).sum())
    # nll_sum is the plain likelihood (what perplexity needs), detached from the graph.
    expected_nll = F.cross_entropy(
        logits.reshape(-1, VOCAB), target.reshape(-1), ignore_index=PAD_ID, reduction="sum"
    )
    torch.testing.assert_close(out.nll_sum, expected_nll.detach())
    assert not out.nll_sum.requires_grad and out.loss_sum.requires_grad
    assert out.nll_sum.item() < out.loss_sum.item()  # smoothing adds mass away from the gold


def test_accumulation_by_token_count_is_exact():
    logits, target = _batch()
    criterion = LabelSmoothedCrossEntropy(0.1)
    full = criterion(logits, target)
    (full_grad,) = torch.autograd.grad(full, logits)
    # Micro-batches with different token counts (5, 2 and 4 tokens): summing loss_sum
    # and n_tokens then dividing once gives the full-batch loss; a mean of means would not.
    parts = [criterion.loss_and_count(logits[i : i + 1], target[i : i + 1]) for i in range(3)]
    n_tokens = sum(p.n_tokens for p in parts)
    accumulated = sum(p.loss_sum for p in parts) / n_tokens
    (acc_grad,) = torch.autograd.grad(accumulated, logits)
    torch.testing.assert_close(accumulated, full)
    torch.testing.assert_close(acc_grad, full_grad)
    mean_of_means = sum(p.loss_sum / p.n_tokens for p in parts) / 3
    assert not torch.allclose(mean_of_means, full)


def test_normalizer_follows_reduction():
    logits, target = _batch()
    for reduction, expected in (("token", 11), ("sentence", 3)):
        criterion = LabelSmoothedCrossEntropy(reduction=reduction)
        assert criterion.normalizer(criterion.loss_and_count(logits, target)).item() == expected


def test_all_padding_batch_gives_zero_loss_not_nan():
    logits = torch.randn(2, 3, VOCAB, requires_grad=True)
    loss = LabelSmoothedCrossEntropy(0.1)(logits, torch.zeros(2, 3, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_invalid_arguments_name_the_field():
    with pytest.raises(ValueError, match="label_smoothing"):
        LabelSmoothedCrossEntropy(label_smoothing=1.0)
    with pytest.raises(ValueError, match="reduction"):
        LabelSmoothedCrossEntropy(reduction="mean")  # type: ignore[arg-type]
    criterion = LabelSmoothedCrossEntropy()
    with pytest.raises(ValueError, match=r"target = tgt\[:, 1:\]"):
        criterion(torch.randn(2, 5, VOCAB), torch.zeros(2, 6, dtype=torch.long))
    with pytest.raises(TypeError, match="long"):
        criterion(torch.randn(2, 5, VOCAB), torch.zeros(2, 5))


def test_label_smoothing_leaves_out_ids_the_model_marks_impossible():
    """Columns at the dtype's minimum (a Hugging Face model's aliased special ids) get no smoothing
    mass: the loss equals F.cross_entropy over the possible columns only, and without such
    columns the loss is F.cross_entropy's own."""
    import torch.nn.functional as F

    from treadmill.seq2seq.losses import LabelSmoothedCrossEntropy

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 10, generator=g)
    target = torch.randint(4, 10, (2, 5), generator=g)
    target[0, 3:] = 0  # PAD
    loss = LabelSmoothedCrossEntropy(0.1)
    torch.testing.assert_close(loss._smoothed_over_possible(logits, target), loss.token_losses(logits, target))
    dead = logits.clone()
    dead[..., 2] = torch.finfo(torch.float32).min
    keep = [i for i in range(10) if i != 2]
    remapped = torch.tensor([[keep.index(int(t)) if int(t) != 0 else -1 for t in row] for row in target])
    expected = F.cross_entropy(logits[..., keep].reshape(-1, 9), remapped.reshape(-1), ignore_index=-1,
                               label_smoothing=0.1, reduction="none").view(2, 5)
    torch.testing.assert_close(loss.token_losses(dead, target), expected)
    assert float(loss(dead, target)) < 10  # not the 1e37 a smoothing over the dead column gives
