"""`fewshot-rules`: infer a hidden string rule from K demonstrations, apply it to a query.

One example (space-separated symbols "s0".."s{A-1}")::

    src: x1 > y1 | x2 > y2 | x3 > y3 ? q        every yi = rule(xi), one rule per example
    tgt: rule(q)

Rule families: reverse, rotate (cyclic, left by k), substitute (a permutation of the alphabet),
sort, duplicate (each symbol twice), alternate (keep positions 0, 2, 4, ...), and compositions
of two of them (`depth` 2: the first applied, then the second; "sort+reverse").

Held-out rules, disjoint by construction: a substitution belongs to the test, valid or training
bucket by a hash of its permutation, and rotation amounts are split by option (`test_rotations`
for valid and test, the others for training). So no test example's substitution or rotation
amount occurs in training; valid measures the same generalisation with its own substitutions.
The demos' inputs together use every symbol of the query, so a substitution is always
determined by the demonstrations.

Each example carries fields `rule` (the family, or "first+second"), `n_demos` and `depth`, for
`data.sample_weights` and `evaluation.group_by`.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from typing import Any

from torch.utils.data import Dataset

from treadmill.data.datasets import Seq2SeqDataset
from treadmill.data.tasks.base import Task
from treadmill.data.tokenizers import WordTokenizer
from treadmill.data.vocab import Vocab

__all__ = ["FAMILIES", "DESCRIPTION", "apply_rule", "build_fewshot_rules", "fewshot_fields", "fewshot_sizes",
           "rule_name", "substitution_split", "Rule"]

DESCRIPTION = ("Few-shot string rules: K demo pairs of one hidden rule (reverse, rotate, substitute, sort, "
               "duplicate, alternate, compositions of two), then a query (test rules unseen in training).")

FAMILIES = ("reverse", "rotate", "substitute", "sort", "duplicate", "alternate")
PAIR_SEP, DEMO_SEP, QUERY_SEP = ">", "|", "?"
# A rule's parameter: rotate's k, substitute's permutation, None for the fixed families.
Rule = tuple[tuple[str, Any], ...]  # ((family, parameter), ...) applied left to right


def _apply_one(family: str, param: Any, seq: tuple[int, ...]) -> tuple[int, ...]:
    if family == "reverse":
        return seq[::-1]
    if family == "rotate":
        k = param % len(seq) if seq else 0
        return seq[k:] + seq[:k]
    if family == "substitute":
        return tuple(param[s] for s in seq)
    if family == "sort":
        return tuple(sorted(seq))
    if family == "duplicate":
        return tuple(s for s in seq for _ in range(2))
    if family == "alternate":
        return seq[::2]
    raise ValueError(f"unknown rule family {family!r}; families: {FAMILIES}.")


def apply_rule(rule: Rule, seq: Sequence[int]) -> tuple[int, ...]:
    """The rule's steps applied to `seq` in order (symbol indices in, symbol indices out)."""
    out = tuple(seq)
    for family, param in rule:
        out = _apply_one(family, param, out)
    return out


def rule_name(rule: Rule) -> str:
    """The `rule` field: family names joined by '+', parameters left out."""
    return "+".join(family for family, _ in rule)


def substitution_split(perm: Sequence[int]) -> str:
    """Which split a substitution belongs to: "test", "valid" or "train", by a hash of it."""
    bucket = int(hashlib.sha256(bytes(perm)).hexdigest(), 16) % 5
    return "test" if bucket == 0 else "valid" if bucket == 1 else "train"


def _draw_param(family: str, split: str, rng: random.Random, alphabet_size: int,
                rotations: Sequence[int], test_rotations: Sequence[int]) -> Any:
    if family == "rotate":
        return rng.choice(list(test_rotations) if split != "train" else
                          [k for k in rotations if k not in test_rotations])
    if family == "substitute":
        while True:  # about 1 in 5 (held out) or 3 in 5 (train) permutations fit: a few draws
            perm = list(range(alphabet_size))
            rng.shuffle(perm)
            if substitution_split(perm) == split:
                return tuple(perm)
    return None


def _draw_rule(split: str, rng: random.Random, families: Sequence[str], max_depth: int,
               **param_args: Any) -> Rule:
    depth = rng.randint(1, max_depth)
    chosen = rng.sample(list(families), depth)
    return tuple((family, _draw_param(family, split, rng, **param_args)) for family in chosen)


def _draw_example(split: str, rng: random.Random, *, n_demos: int, min_len: int, max_len: int,
                  alphabet_size: int) -> tuple[list[tuple[int, ...]], tuple[int, ...]]:
    """Demo inputs and a query whose symbols all occur in the demo inputs."""
    demos = [tuple(rng.randrange(alphabet_size) for _ in range(rng.randint(min_len, max_len)))
             for _ in range(n_demos)]
    seen = sorted({s for demo in demos for s in demo})
    query = tuple(rng.choice(seen) for _ in range(rng.randint(min_len, max_len)))
    return demos, query


def _check(min_demos: int, max_demos: int, min_len: int, max_len: int, alphabet_size: int,
           max_depth: int, families: Sequence[str], rotations: Sequence[int], test_rotations: Sequence[int]) -> None:
    name = "fewshot-rules"
    if not 1 <= min_demos <= max_demos:
        raise ValueError(f"task {name!r}: need 1 <= min_demos <= max_demos, got {min_demos}, {max_demos}.")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"task {name!r}: need 1 <= min_len <= max_len, got {min_len}, {max_len}.")
    if not 2 <= alphabet_size <= 200:
        raise ValueError(f"task {name!r}: alphabet_size must be in [2, 200], got {alphabet_size}.")
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"task {name!r}: families {list(families)} must be a non-empty subset of {list(FAMILIES)}.")
    if not 1 <= max_depth <= min(2, len(families)):
        raise ValueError(f"task {name!r}: max_depth must be 1 or 2 (and <= the number of families), got {max_depth}.")
    if "rotate" in families and (not test_rotations or not [k for k in rotations if k not in test_rotations]):
        raise ValueError(f"task {name!r}: rotations {list(rotations)} must keep amounts for training besides "
                         f"test_rotations {list(test_rotations)}, and test_rotations must not be empty.")


def fewshot_fields(*, min_demos: int = 2, max_demos: int = 4, max_depth: int = 2,
                   families: Sequence[str] = FAMILIES, **_: object) -> dict[str, list[Any]]:
    """Every value each example field can take with these options (checked at config load)."""
    singles = list(families)
    pairs = [f"{a}+{b}" for a in families for b in families if a != b] if max_depth >= 2 else []
    return {"rule": singles + pairs, "n_demos": list(range(min_demos, max_demos + 1)),
            "depth": list(range(1, max_depth + 1))}


def fewshot_sizes(*, n_train: int = 20_000, n_valid: int = 500, n_test: int = 1000, **_: object) -> dict[str, int]:
    """Split sizes, known without generating."""
    return {"train": n_train, "valid": n_valid, "test": n_test}


def build_fewshot_rules(
    *,
    alphabet_size: int = 6,
    min_len: int = 3,
    max_len: int = 5,
    min_demos: int = 2,
    max_demos: int = 4,
    max_depth: int = 2,
    families: Sequence[str] = FAMILIES,
    rotations: Sequence[int] = (1, 2, 3, 4),
    test_rotations: Sequence[int] = (2,),
    n_train: int = 20_000,
    n_valid: int = 500,
    n_test: int = 1000,
    seed: int = 0,
) -> Task:
    """The few-shot rule task (see the module docstring)."""
    families, rotations, test_rotations = tuple(families), tuple(rotations), tuple(test_rotations)
    _check(min_demos, max_demos, min_len, max_len, alphabet_size, max_depth, families, rotations, test_rotations)
    symbols = [f"s{i}" for i in range(alphabet_size)]
    tokenizer = WordTokenizer(Vocab([PAIR_SEP, DEMO_SEP, QUERY_SEP, *symbols]))

    def text(seq: Sequence[int]) -> str:
        return " ".join(symbols[i] for i in seq)

    splits: dict[str, Dataset] = {}
    fields: dict[str, dict[str, list[Any]]] = {}
    drawn_rules: dict[str, list[Rule]] = {}
    for offset, (split, count) in enumerate((("train", n_train), ("valid", n_valid), ("test", n_test))):
        rng = random.Random(f"{seed}-{offset}")
        pairs, rules, n_demos_field, depths = [], [], [], []
        for _ in range(count):
            rule = _draw_rule(split, rng, families, max_depth, alphabet_size=alphabet_size,
                              rotations=rotations, test_rotations=test_rotations)
            n_demos = rng.randint(min_demos, max_demos)
            demos, query = _draw_example(split, rng, n_demos=n_demos, min_len=min_len, max_len=max_len,
                                         alphabet_size=alphabet_size)
            shown = f" {DEMO_SEP} ".join(f"{text(x)} {PAIR_SEP} {text(apply_rule(rule, x))}" for x in demos)
            pairs.append((f"{shown} {QUERY_SEP} {text(query)}", text(apply_rule(rule, query))))
            rules.append(rule)
            n_demos_field.append(n_demos)
            depths.append(len(rule))
        splits[split] = Seq2SeqDataset(pairs, tokenizer, tokenizer)
        fields[split] = {"rule": [rule_name(r) for r in rules], "n_demos": n_demos_field, "depth": depths}
        drawn_rules[split] = rules
    vocab = tokenizer.vocab
    return Task(
        name="fewshot-rules",
        description=DESCRIPTION,
        splits=splits,
        src_tokenizer=tokenizer,
        tgt_tokenizer=tokenizer,
        # rules[split][i]: example i's rule with its parameters (which substitution, which k)
        metadata={"alphabet_size": alphabet_size, "seed": seed, "rules": drawn_rules,
                  "model_sizes": {"demo_sep_id": vocab.stoi[DEMO_SEP], "query_sep_id": vocab.stoi[QUERY_SEP]}},
        fields=fields,
        headline=("exact_match",),
    )

