"""GRPO and the consistency loss: advantages, the clipped objective by hand, the k3 KL, learning a known
optimum, the trainer on both model kinds, exact resume, and the bad-input errors."""

import math
import warnings

import pytest
import torch

from treadmill.cli.build import (
    build_loaders,
    build_model,
    build_task,
    make_trainer,
    resolve_model_sizes,
)
from treadmill.cli.config import run_config_from_dict
from treadmill.config import ConfigError
from treadmill.seq2seq.consistency import consistency_kl, free_running_inputs
from treadmill.seq2seq.grpo import group_advantages, grpo_loss, k3_kl, masked_mean
from treadmill.seq2seq.rewards import RewardError
from treadmill.seq2seq.sequence_trainer import SequenceLevelConfig

# ---------------------------------------------------------------- the loss functions


def test_equal_rewards_give_zero_advantage_and_no_gradient():
    rewards = torch.tensor([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    advantages = group_advantages(rewards)
    assert advantages[0].tolist() == [0.0, 0.0, 0.0]
    # The other group: centred, and scaled to unit (population) variance.
    assert advantages[1].mean().item() == pytest.approx(0.0, abs=1e-6)
    assert advantages[1].std(correction=0).item() == pytest.approx(1.0, abs=1e-3)
    assert group_advantages(rewards, scale=False)[1].tolist() == pytest.approx([-1 / 3, 2 / 3, -1 / 3])
    logp = torch.randn(6, 4, requires_grad=True)
    mask = torch.ones(6, 4, dtype=torch.bool)
    loss, _ = grpo_loss(logp, logp.detach(), None, advantages.view(-1), mask, beta=0.0)
    loss.backward()
    assert logp.grad[:3].abs().max().item() == 0.0  # the equal-reward group
    assert logp.grad[3:].abs().max().item() > 0.0


def test_clipped_objective_equals_a_hand_computation():
    # Two outputs, two tokens each (the second output's last token masked out).
    logp = torch.tensor([[-0.5, -1.0], [-2.0, -0.1]], requires_grad=True)
    old = torch.tensor([[-1.0, -1.0], [-1.0, -0.1]])
    ref = torch.tensor([[-0.7, -1.2], [-1.5, -3.0]])
    adv = torch.tensor([1.0, -2.0])
    mask = torch.tensor([[True, True], [True, False]])
    eps, beta = 0.2, 0.1
    r = [[math.exp(0.5), 1.0], [math.exp(-1.0)]]
    # token (0,0): ratio 1.65 > 1.2, A = 1: min(1.65, 1.2) = 1.2 (clipped); (0,1): ratio 1: 1.0
    # token (1,0): ratio 0.37 < 0.8, A = -2: min(-0.74, -1.6) = -1.6 (clipped)
    surrogate = [min(r[0][0] * 1, 1.2 * 1), min(r[0][1] * 1, 1.0), min(r[1][0] * -2, 0.8 * -2)]
    deltas = [-0.7 + 0.5, -1.2 + 1.0, -1.5 + 2.0]
    kl = [math.exp(d) - d - 1 for d in deltas]
    per_token = [-(s - beta * k) for s, k in zip(surrogate, kl, strict=True)]
    loss, stats = grpo_loss(logp, old, ref, adv, mask, epsilon=eps, beta=beta, averaging="token")
    assert loss.item() == pytest.approx(sum(per_token) / 3, rel=1e-6)
    assert stats["clip_fraction"].item() == pytest.approx(2 / 3)
    assert stats["kl"].item() == pytest.approx(sum(kl) / 3, rel=1e-6)
    seq, _ = grpo_loss(logp, old, ref, adv, mask, epsilon=eps, beta=beta, averaging="sequence")
    assert seq.item() == pytest.approx(((per_token[0] + per_token[1]) / 2 + per_token[2]) / 2, rel=1e-6)
    # Clipped tokens give no policy gradient; (0,1) does (ratio 1, A = 1, 3 tokens averaged).
    loss_no_kl, _ = grpo_loss(logp, old, None, adv, mask, epsilon=eps)
    loss_no_kl.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, -1 / 3], [0.0, 0.0]]))


def test_kl_to_an_identical_reference_is_zero():
    logp = torch.log_softmax(torch.randn(3, 5, 7), -1).amax(-1)
    assert k3_kl(logp, logp.clone()).abs().max().item() == 0.0
    assert (k3_kl(logp, logp + 0.3) > 0).all()  # and positive elsewhere
    _, stats = grpo_loss(logp, logp, logp.clone(), torch.ones(3), torch.ones(3, 5, dtype=torch.bool))
    assert stats["kl"].item() == 0.0


def test_masked_mean_and_argument_errors():
    values, mask = torch.tensor([[1.0, 3.0], [5.0, 0.0]]), torch.tensor([[True, True], [True, False]])
    assert masked_mean(values, mask).item() == pytest.approx(3.0)
    assert masked_mean(values, mask, "sequence").item() == pytest.approx(3.5)
    with pytest.raises(ValueError, match="averaging"):
        masked_mean(values, mask, "word")
    with pytest.raises(ValueError, match="group_size"):
        group_advantages(torch.zeros(4))


def test_grpo_moves_a_policy_to_the_known_optimum():
    # A one-token policy over 4 outputs; output 2 is the best. GRPO must concentrate on it.
    torch.manual_seed(0)
    logits = torch.zeros(1, 4, requires_grad=True)
    optimizer = torch.optim.SGD([logits], lr=0.5)
    reward_of = torch.tensor([0.1, 0.3, 1.0, 0.0])
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        with torch.no_grad():
            sampled = torch.multinomial(logits.softmax(-1).expand(8, 4), 1, generator=generator)  # (8, 1)
        logp_all = logits.log_softmax(-1).expand(8, 4)
        logp = logp_all.gather(1, sampled)  # (8, 1)
        advantages = group_advantages(reward_of[sampled.view(1, 8)]).view(-1)
        loss, _ = grpo_loss(logp, logp.detach(), None, advantages, torch.ones(8, 1, dtype=torch.bool))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert logits.softmax(-1)[0, 2].item() > 0.9


def test_consistency_kl_is_zero_for_equal_distributions_and_pulls_free_onto_teacher():
    teacher = torch.randn(2, 3, 5, requires_grad=True)
    free = teacher.detach().clone().requires_grad_()
    mask = torch.tensor([[True, True, False], [True, False, False]])
    assert consistency_kl(teacher, free, mask).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(2, 3, 5, requires_grad=True)
    kl = consistency_kl(teacher, other, mask)
    kl.backward()
    assert kl.item() > 0 and teacher.grad is None  # the teacher side is the target
    assert other.grad[0, 2].abs().max().item() == 0.0  # masked positions get nothing
    assert free_running_inputs([[5, 6], [7, 8, 9, 4]], width=4).tolist() == [[2, 5, 6, 3], [2, 7, 8, 9]]


# ---------------------------------------------------------------- the trainer

TRANSFORMER = {"name": "transformer", "d_model": 32, "n_heads": 2, "n_encoder_layers": 1, "n_decoder_layers": 1,
               "d_ff": 64, "dropout": 0.0}
GPT = {"name": "gpt", "d_model": 32, "n_heads": 2, "n_layers": 1, "d_ff": 64, "max_len": 32, "dropout": 0.0}


def _trainer(task_name="addition", model=None, steps=4, checkpoint_dir=None, seed=0, epochs=1, **phase):
    raw = {"task": {"name": task_name, "options": {"min_len": 1, "max_len": 2, "n_train": 48, "n_valid": 8, "n_test": 8}},
           "model": model or TRANSFORMER, "data": {"batch_size": 8},
           "training": {"epochs": epochs, "max_steps": steps, "log_frequency": 1, "optimizer": {"lr": 1e-3}},
           "seq2seq": {"generation": {"strategy": "greedy", "max_len": 6}, "val_decode_batches": 0},
           "diagnostics": {"enabled": False},
           "sequence_level": {"enabled": True, "method": "grpo", "reward": "checker", "group_size": 4, **phase}}
    config = run_config_from_dict(raw)
    task = build_task(config)
    resolve_model_sizes(config, task)
    torch.manual_seed(seed)
    model_ = build_model(config)
    trainer = make_trainer(config, task, model_, build_loaders(config, task, ("train",)), checkpoint_dir=checkpoint_dir,
                           objective=config.sequence_level.method)
    trainer.progress.enabled = False
    return trainer


class _Steps:
    """Collects each log step's scalars."""

    def __init__(self, trainer):
        self.rows = []
        original = trainer.log_scalars
        trainer.log_scalars = lambda scalars: (self.rows.append(dict(scalars)), original(scalars))


@pytest.mark.parametrize("model", [TRANSFORMER, GPT], ids=["encoder-decoder", "decoder-only"])
def test_grpo_trainer_logs_its_statistics_and_starts_at_zero_kl(model):
    task = "addition" if model is TRANSFORMER else "addition-lm"
    trainer = _trainer(task, model, steps=2, mle_weight=0.0)
    steps = _Steps(trainer)
    history = trainer.fit()
    first = steps.rows[0]
    assert set(first) == {"reward_mean", "reward_std", "kl", "clip_fraction", "output_length", "zero_variance_groups"}
    assert first["kl"] == 0.0 and first["clip_fraction"] == 0.0  # reference == policy == sampler at step 0
    assert -1.0 <= first["reward_mean"] <= 1.0 and 0.0 <= first["zero_variance_groups"] <= 1.0
    assert steps.rows[1]["kl"] > 0.0  # one update later the policy has left the reference
    assert "reward_mean" in history["train_metrics"]


def test_grpo_inner_steps_clip_against_the_sampling_policy():
    trainer = _trainer(steps=4, inner_steps=2, mle_weight=0.0, epsilon=0.01, beta=0.0)
    assert trainer.reference_model is None  # beta 0: no reference is kept
    steps = _Steps(trainer)
    trainer.fit()
    assert trainer.global_step == 4  # two sampled batches, two updates each
    assert max(row["clip_fraction"] for row in steps.rows) > 0.0


def test_grpo_trainer_moves_towards_a_known_optimum():
    # Reward: 1 for an empty output (EOS at once), else 0: the optimum is to stop immediately.
    trainer = _trainer(steps=24, epochs=4, reward="grpo_rewards:prefer_empty", mle_weight=0.0, beta=0.0)
    for group in trainer.optimizer.param_groups:
        group["lr"] = 3e-3
    steps = _Steps(trainer)
    trainer.fit()
    assert len(steps.rows) == 24
    early = sum(row["reward_mean"] for row in steps.rows[:3]) / 3
    late = sum(row["reward_mean"] for row in steps.rows[-3:]) / 3
    assert late > early + 0.3
    assert steps.rows[-1]["output_length"] < steps.rows[0]["output_length"]


def test_consistency_trainer_runs_on_both_model_kinds():
    for task, model in (("addition", TRANSFORMER), ("addition-lm", GPT)):
        trainer = _trainer(task, model, steps=2, method="consistency", consistency_lambda=2.0)
        steps = _Steps(trainer)
        trainer.fit()
        assert set(steps.rows[0]) == {"consistency_kl", "output_length"} and steps.rows[0]["consistency_kl"] >= 0


def _weights(trainer):
    return {k: v.clone() for k, v in trainer.model.state_dict().items()}


def test_resume_mid_grpo_is_bit_identical(tmp_path):
    whole = _trainer(steps=6, checkpoint_dir=tmp_path / "whole", beta=0.1, mle_weight=0.1)
    whole.fit()
    cut = _trainer(steps=3, checkpoint_dir=tmp_path / "cut", beta=0.1, mle_weight=0.1)
    cut.fit()  # stops mid-epoch at step 3 and writes last.pt there
    # A fresh process would build a fresh model: different weights, so the reference must come from the file.
    resumed = _trainer(steps=6, checkpoint_dir=tmp_path / "cut", beta=0.1, mle_weight=0.1, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # max_steps differs from the saved config
        resumed.fit(resume_from="last")
    assert resumed.global_step == whole.global_step == 6
    a, b = _weights(whole), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ref_a, ref_b = whole.reference_model.state_dict(), resumed.reference_model.state_dict()
    assert all(torch.equal(ref_a[k], ref_b[k]) for k in ref_a)


def test_bad_grpo_inputs_are_named_errors(tmp_path):
    with pytest.raises(ConfigError, match="group_size"):
        SequenceLevelConfig(method="grpo", group_size=1)
    with pytest.raises(ConfigError, match="loss_averaging"):
        SequenceLevelConfig(method="grpo", loss_averaging="tokens")
    with pytest.raises(ConfigError, match="inner_steps"):
        SequenceLevelConfig(method="grpo", inner_steps=0)
    with pytest.raises(ConfigError, match="checker"):
        _trainer("reverse", reward="checker")  # reversal has no checker: refused when the task is built
    trainer = _trainer(steps=1, reward="grpo_rewards:wrong_shape")
    with pytest.raises(RewardError, match=r"wrong_shape.*step 0 \(epoch 1, batch 0\).*shape \(32, 1\)"):
        trainer.fit()


@pytest.mark.slow
@pytest.mark.parametrize("decoder_only", [False, True], ids=["encoder-decoder", "decoder-only"])
def test_grpo_lowers_per_on_the_copy_task(decoder_only):
    from copy_task import copy_batches

    from treadmill import OptimizerConfig, TrainingConfig
    from treadmill.models import GPT, GPTConfig, transformer_seq2seq
    from treadmill.seq2seq import Seq2SeqConfig, Seq2SeqTrainer
    from treadmill.seq2seq.sequence_trainer import SequenceLevelTrainer

    torch.manual_seed(0)
    model = GPT(GPTConfig(12, d_model=32, n_heads=2, n_layers=2, d_ff=64, dropout=0.0, max_len=32)) if decoder_only \
        else transformer_seq2seq(12, 12, d_model=32, n_heads=2, n_encoder_layers=1, n_decoder_layers=1, d_ff=64, dropout=0.0)
    batches = copy_batches(6)
    base = Seq2SeqTrainer(model, TrainingConfig(progress_bar=False, epochs=30 if decoder_only else 6, optimizer=OptimizerConfig("AdamW", lr=3e-3)),
                          batches, seq2seq=Seq2SeqConfig(label_smoothing=0.0))
    base.fit()
    start = base.decode_metrics(batches)["per"]
    tuned = SequenceLevelTrainer(
        base.model, TrainingConfig(progress_bar=False, epochs=8, optimizer=OptimizerConfig("AdamW", lr=3e-4)), batches,
        seq2seq=Seq2SeqConfig(generation={"max_len": 8}),
        sequence_level=SequenceLevelConfig(method="grpo", group_size=4, reward="per", mle_weight=0.0, beta=0.04),
    )
    tuned.fit()
    assert tuned.decode_metrics(batches)["per"] < start - 0.02


@pytest.mark.parametrize("model", [TRANSFORMER, GPT], ids=["encoder-decoder", "decoder-only"])
def test_consistency_kl_is_zero_when_the_model_samples_the_reference(model):
    from treadmill.seq2seq.trainer import strip_target

    trainer = _trainer("addition" if model is TRANSFORMER else "addition-lm", model, steps=1, method="consistency")
    batch = next(iter(trainer.train_dataloader))
    trainer._sample = lambda b, k: [strip_target(row.tolist()) for row in b["tgt"]]  # the free-running prefix is the reference
    trainer.model.train()
    out = trainer._forward_pass(batch)
    loss = trainer._compute_loss(batch, out)
    assert trainer._step_stats["consistency_kl"] == pytest.approx(0.0, abs=1e-6)
    assert out.mask.any() and loss.loss.item() > 0  # the cross-entropy remains
