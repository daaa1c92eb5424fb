"""Addition as a language-model task (`addition-lm`).

`addition-lm` is the decoder-only form of `addition`: the prompt "123+45=" and the completion
"168", one character a token, with one vocabulary for both (digits, "+" and "="). A decoder-only
model reads the prompt, then BOS, and writes the completion; the loss is on the completion only
(Seq2SeqTrainer's decoder-only layout).
Its checker (`treadmill.data.tasks.checkers.check_addition`) computes the sum from the prompt.
"""

from __future__ import annotations

import random

from treadmill.data.datasets import Seq2SeqDataset
from treadmill.data.tasks.base import Task
from treadmill.data.tasks.checkers import check_addition
from treadmill.data.tasks.toy import _check_options, _count_numbers, _draw_unique, _split
from treadmill.data.tokenizers import CharTokenizer
from treadmill.data.vocab import Vocab

__all__ = ["build_addition_lm", "ADDITION_LM_DESCRIPTION"]

ADDITION_LM_DESCRIPTION = "Add two integers, decoder-only: prompt '123+45=' -> completion '168' (generated)."


def build_addition_lm(
    *,
    min_len: int = 1,
    max_len: int = 6,
    n_train: int = 50_000,
    n_valid: int = 1000,
    n_test: int = 1000,
    seed: int = 0,
) -> Task:
    """a + b as prompt and completion, each operand's digit count uniform in [min_len, max_len]."""
    name = "addition-lm"
    _check_options(name, min_len, max_len, {"n_train": n_train, "n_valid": n_valid, "n_test": n_test})

    def draw(rng: random.Random) -> tuple[int, ...]:
        operands = []
        for _ in range(2):
            n_digits = rng.randint(min_len, max_len)
            low = 0 if n_digits == 1 else 10 ** (n_digits - 1)
            operands.append(rng.randrange(low, 10**n_digits))
        return tuple(operands)

    per_operand = sum(_count_numbers(d) for d in range(min_len, max_len + 1))
    items = _draw_unique(name, draw, n_train + n_valid + n_test, per_operand**2, random.Random(seed))
    tokenizer = CharTokenizer(Vocab([*"0123456789", "+", "="]))
    # No EOS after the prompt: "=" already ends it, and the model then sees "123+45=" BOS "168" EOS.
    splits = {
        split: Seq2SeqDataset([(f"{a}+{b}=", str(a + b)) for a, b in pairs], tokenizer, tokenizer, src_eos=False)
        for split, pairs in _split(items, n_train, n_valid, n_test).items()
    }
    return Task(
        name=name,
        description=ADDITION_LM_DESCRIPTION,
        splits={k: splits[k] for k in ("train", "valid", "test")},
        src_tokenizer=tokenizer,
        tgt_tokenizer=tokenizer,
        metadata={"min_len": min_len, "max_len": max_len, "seed": seed},
        wer_unit="sequence",
        checker=check_addition,
    )
