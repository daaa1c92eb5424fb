"""Sequence rewards: the built-in ones by hand, the addition checker's edge cases, user functions, bad rewards."""

import sys
import textwrap

import pytest
import sacrebleu
import torch

from treadmill.cli.config import RunConfigError, run_config_from_dict
from treadmill.data.tasks import get_task
from treadmill.data.tasks.checkers import MALFORMED, check_addition
from treadmill.seq2seq.rewards import (
    RewardBatch,
    RewardError,
    checked_rewards,
    resolve_reward,
    reward_names,
)
from treadmill.validation import ConfigError


def batch(hyps, refs, sources=None):
    """A RewardBatch of space-separated token strings, ids = the tokens as ints."""
    ids = lambda texts: [[int(t) for t in text.split()] for text in texts]  # noqa: E731
    return RewardBatch(sources or [""] * len(hyps), hyps, refs, ids(hyps), ids(refs))


# ---------------------------------------------------------------- the addition checker


@pytest.mark.parametrize(
    ("source", "output", "expected"),
    [
        ("1 2 3 + 4 5", "1 6 8", 1.0),  # seq2seq addition's layout
        ("123+45=", "168", 1.0),  # addition-lm's prompt
        ("9 9 9 + 1", "1 0 0 0", 1.0),  # carries into a new digit
        ("999999+999999=", "1999998", 1.0),  # carries through every digit
        ("9 9 9 + 1", "1 0 0", 0.0),  # the carry lost: a wrong number, not malformed
        ("9 9 9 + 1", "9 9 9", 0.0),
        ("0+0=", "0", 1.0),  # a lone zero is a number
        ("1 2 + 3", "0 1 5", MALFORMED),  # leading zero, even though 015 == 15
        ("0+0=", "00", MALFORMED),
        ("1 2 + 3", "", MALFORMED),  # nothing
        ("1 2 + 3", "1 5 +", MALFORMED),
        ("1 2 + 3", "-15", MALFORMED),
        ("1 2 + 3", "<unk>", MALFORMED),
        ("1 2 + 3", "1 5 =", MALFORMED),
    ],
)
def test_checker_edge_cases(source, output, expected):
    assert check_addition(source, output) == expected


def test_malformed_is_the_minimum_and_a_bad_source_is_refused():
    rewards = [check_addition("5+5=", out) for out in ("10", "11", "010", "x")]
    assert min(rewards) == MALFORMED == rewards[2] == rewards[3] < rewards[1] < rewards[0]
    with pytest.raises(ValueError, match="not an addition"):
        check_addition("a1 a2", "3")


def test_addition_tasks_carry_the_checker_and_it_accepts_every_reference():
    for name in ("addition", "addition-lm"):
        task = get_task(name, min_len=1, max_len=3, n_train=50, n_valid=5, n_test=5)
        assert task.checker is check_addition
        pairs = task.splits["train"].pairs
        assert all(task.checker(src, tgt) == 1.0 for src, tgt in pairs)
    assert get_task("reverse", n_train=20, n_valid=5, n_test=5).checker is None


def test_checker_reward_needs_a_task_checker():
    reward = resolve_reward("checker", checker=check_addition)
    assert reward(batch(["", ""], ["", ""], sources=["1+2=", "1+2="])) == [MALFORMED, MALFORMED]
    with pytest.raises(RewardError, match="checker"):
        resolve_reward("checker", checker=None)


# ---------------------------------------------------------------- reference rewards


def test_reference_rewards_by_hand():
    b = batch(["5 6 7 8", "5 7", "4 5 6 7 8 9"], ["5 6 7 8", "5 6 7 8", "4 5 6 7 9 8"])
    assert resolve_reward("exact_match")(b) == [1.0, 0.0, 0.0]
    assert resolve_reward("per")(b) == pytest.approx([0.0, -2 / 4, -2 / 6])
    assert resolve_reward("wer")(b) == pytest.approx([0.0, -2 / 4, -2 / 6])
    bleu = [sacrebleu.sentence_bleu(h, [r], tokenize="none").score / 100 for h, r in (("5 7", "5 6 7 8"),
                                                                                      ("4 5 6 7 8 9", "4 5 6 7 9 8"))]
    assert resolve_reward("bleu")(b) == pytest.approx([1.0, *bleu])
    assert 0 < bleu[0] < bleu[1] < 1
    chrf = sacrebleu.sentence_chrf("5 7", ["5 6 7 8"]).score / 100
    assert resolve_reward("chrf")(b)[:2] == pytest.approx([1.0, chrf])
    # The first release's names still work.
    assert resolve_reward("negative_edit_distance")(b) == resolve_reward("per")(b)


def test_wer_counts_words_where_per_counts_tokens():
    b = RewardBatch([""], ["the cat"], ["the black cat"], [[4, 5, 6]], [[4, 7, 5, 6]])
    assert resolve_reward("wer")(b) == pytest.approx([-1 / 3])
    assert resolve_reward("per")(b) == pytest.approx([-1 / 4])


# ---------------------------------------------------------------- user rewards and bad rewards


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(textwrap.dedent("""
        import torch

        def length(sources, hypotheses, references):
            return torch.tensor([float(len(h)) for h in hypotheses])

        def wrong_shape(sources, hypotheses, references):
            return torch.zeros(len(hypotheses), 2)

        def with_nan(sources, hypotheses, references):
            return [float("nan")] + [0.0] * (len(hypotheses) - 1)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_rewards"
    sys.modules.pop("my_rewards", None)


def test_user_reward_gets_text_and_is_checked(user_module):
    b = batch(["5 6", "7"], ["5", "5"], sources=["x", "y"])
    values = checked_rewards(resolve_reward(f"{user_module}:length"), b, "length", "step 0")
    assert values.dtype == torch.float32 and values.tolist() == [3.0, 1.0]


def test_bad_reward_values_name_the_reward_and_the_batch(user_module):
    b = batch(["5 6", "7"], ["5", "5"], sources=["x", "y"])
    with pytest.raises(RewardError, match=r"wrong_shape.*step 7 \(epoch 1, batch 3\).*shape \(2, 2\).*\(2,\)"):
        checked_rewards(resolve_reward(f"{user_module}:wrong_shape"), b, "wrong_shape", "step 7 (epoch 1, batch 3)")
    with pytest.raises(RewardError, match=r"with_nan.*step 2.*nan for hypothesis 0.*'5 6'.*source 'x'"):
        checked_rewards(resolve_reward(f"{user_module}:with_nan"), b, "with_nan", "step 2")


def test_unknown_reward_names_are_config_errors_listing_the_known_ones(user_module):
    with pytest.raises(ConfigError) as err:
        resolve_reward("exact")
    assert all(name in str(err.value) for name in ("exact_match", "per", "wer", "bleu", "chrf", "checker"))
    with pytest.raises(RewardError, match="cannot import module 'no_such_module'"):
        resolve_reward("no_such_module:f")
    with pytest.raises(RewardError, match="no function 'missing'"):
        resolve_reward(f"{user_module}:missing")
    assert set(reward_names()) >= {"exact_match", "per", "wer", "bleu", "chrf", "checker"}


def _config(**phase):
    return {"task": {"name": "addition", "options": {"min_len": 1, "max_len": 2, "n_train": 64, "n_valid": 8, "n_test": 8}},
            "model": {"name": "transformer", "d_model": 16, "n_heads": 2, "n_encoder_layers": 1, "n_decoder_layers": 1,
                      "d_ff": 32},
            "sequence_level": {"enabled": True, **phase}}


def test_run_config_refuses_bad_rewards_and_group_sizes_at_load():
    with pytest.raises(RunConfigError, match=r"sequence_level.*'bleuu' is not a reward.*exact_match.*chrf.*checker"):
        run_config_from_dict(_config(method="grpo", reward="bleuu"))
    with pytest.raises(RunConfigError, match=r"sequence_level.*group_size=1.*>= 2"):
        run_config_from_dict(_config(method="grpo", group_size=1))
    config = run_config_from_dict(_config(method="grpo", group_size=2, reward="checker"))
    assert config.sequence_level.objective().group_size == 2


def test_checker_on_a_task_without_one_is_refused_before_training():
    from treadmill.cli.build import build_task

    raw = _config(method="grpo", reward="checker")
    raw["task"] = {"name": "reverse", "options": {"n_train": 20, "n_valid": 5, "n_test": 5}}
    with pytest.raises(RunConfigError, match=r"reward=checker: task 'reverse' cannot check its answers"):
        build_task(run_config_from_dict(raw))
