"""Seq2seq training: Seq2SeqTrainer, label-smoothed loss, scheduled sampling, sequence-level losses (MRT,
REINFORCE, GRPO, the consistency loss) and their rewards."""

from treadmill.seq2seq.consistency import consistency_kl
from treadmill.seq2seq.grpo import group_advantages, grpo_loss, k3_kl
from treadmill.seq2seq.losses import LabelSmoothedCrossEntropy, LossOutput
from treadmill.seq2seq.rewards import RewardBatch, RewardError, resolve_reward
from treadmill.seq2seq.scheduled_sampling import ScheduledSamplingSchedule, mix_two_pass
from treadmill.seq2seq.sequence_level import (
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
from treadmill.seq2seq.trainer import Seq2SeqConfig, Seq2SeqTrainer, TokenLoss, strip_target

__all__ = [
    "Seq2SeqConfig",
    "Seq2SeqTrainer",
    "TokenLoss",
    "strip_target",
    "LabelSmoothedCrossEntropy",
    "LossOutput",
    "ScheduledSamplingSchedule",
    "mix_two_pass",
    "sequence_logprobs",
    "mrt_loss",
    "reinforce_loss",
    "RewardBaseline",
    "exact_match_reward",
    "sentence_bleu_reward",
    "negative_edit_distance_reward",
    "REWARDS",
    "get_reward",
    "compute_rewards",
    "pack_candidates",
    "group_advantages",
    "grpo_loss",
    "k3_kl",
    "consistency_kl",
    "RewardBatch",
    "RewardError",
    "resolve_reward",
]
