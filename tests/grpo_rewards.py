"""User rewards for tests/test_grpo.py, loaded by name as `grpo_rewards:function`."""

import torch


def prefer_empty(sources, hypotheses, references):
    """1 for an empty output, else 0: the optimum is to stop at once."""
    return torch.tensor([1.0 if not h.strip() else 0.0 for h in hypotheses])


def wrong_shape(sources, hypotheses, references):
    """A bug: one column too many."""
    return torch.zeros(len(hypotheses), 1)
