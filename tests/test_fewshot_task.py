"""fewshot-rules: each rule family by hand, the examples follow their rule, held-out rules are disjoint."""

import pytest

from treadmill.data.tasks import get_task, task_fields
from treadmill.data.tasks.fewshot import FAMILIES, apply_rule, rule_name, substitution_split


@pytest.mark.parametrize(
    ("rule", "seq", "expected"),
    [
        ((("reverse", None),), (1, 2, 3), (3, 2, 1)),
        ((("rotate", 1),), (0, 1, 2, 3), (1, 2, 3, 0)),
        ((("rotate", 5),), (0, 1, 2, 3), (1, 2, 3, 0)),  # k mod length
        ((("rotate", 2),), (4, 5, 6), (6, 4, 5)),
        ((("substitute", (2, 0, 1)),), (0, 1, 2, 0), (2, 0, 1, 2)),
        ((("sort", None),), (3, 1, 2, 1), (1, 1, 2, 3)),
        ((("duplicate", None),), (1, 2), (1, 1, 2, 2)),
        ((("alternate", None),), (0, 1, 2, 3, 4), (0, 2, 4)),
        ((("alternate", None),), (7,), (7,)),
        ((("sort", None), ("reverse", None)), (3, 1, 2), (3, 2, 1)),
        ((("duplicate", None), ("rotate", 1)), (1, 2), (1, 2, 2, 1)),
        ((("alternate", None), ("substitute", (1, 2, 0))), (0, 0, 1, 1, 2), (1, 2, 0)),
    ],
)
def test_each_rule_family_by_hand(rule, seq, expected):
    assert apply_rule(rule, seq) == expected


def _symbols(text):
    return tuple(int(tok[1:]) for tok in text.split())


@pytest.fixture(scope="module")
def task():
    return get_task("fewshot-rules", n_train=1500, n_valid=200, n_test=300, seed=3)


def test_every_demo_and_target_follows_the_examples_rule(task):
    for split, dataset in task.splits.items():
        rules = task.metadata["rules"][split]
        for (src, tgt), rule, n_demos, depth, name in zip(
            dataset.pairs, rules, *(task.fields[split][f] for f in ("n_demos", "depth", "rule")), strict=True
        ):
            shown, query = src.split(" ? ")
            demos = shown.split(" | ")
            assert len(demos) == n_demos and len(rule) == depth and rule_name(rule) == name
            for demo in demos:
                x, y = demo.split(" > ")
                assert apply_rule(rule, _symbols(x)) == _symbols(y)
            assert apply_rule(rule, _symbols(query)) == _symbols(tgt)
            # the demos show every symbol the query uses (a substitution is determined)
            assert set(_symbols(query)) <= {s for d in demos for s in _symbols(d.split(" > ")[0])}


def test_test_substitutions_and_rotations_never_occur_in_training(task):
    def params(split, family):
        return {p for rule in task.metadata["rules"][split] for f, p in rule if f == family}

    train_subs, test_subs, valid_subs = (params(s, "substitute") for s in ("train", "test", "valid"))
    assert len(test_subs) > 20 and len(train_subs) > 100
    assert not train_subs & test_subs and not train_subs & valid_subs and not valid_subs & test_subs
    assert all(substitution_split(p) == "test" for p in test_subs)
    assert params("test", "rotate") == {2} and params("train", "rotate") == {1, 3, 4}


def test_the_fields_and_their_values_are_known_without_building(task):
    fields = task_fields("fewshot-rules", max_demos=4, min_demos=2)
    assert fields["n_demos"] == [2, 3, 4] and fields["depth"] == [1, 2]
    assert len(fields["rule"]) == len(FAMILIES) + len(FAMILIES) * (len(FAMILIES) - 1)
    for split in task.splits:
        for name, values in task.fields[split].items():
            assert set(values) <= set(fields[name])
    assert set(task.fields["train"]["depth"]) == {1, 2} and set(task.fields["train"]["n_demos"]) == {2, 3, 4}
    assert task.model_sizes()["demo_sep_id"] == task.src_tokenizer.vocab.stoi["|"]


def test_same_seed_same_task_and_bad_options_are_named():
    a = get_task("fewshot-rules", n_train=50, n_valid=5, n_test=5, seed=1)
    b = get_task("fewshot-rules", n_train=50, n_valid=5, n_test=5, seed=1)
    assert a.splits["train"].pairs == b.splits["train"].pairs
    with pytest.raises(ValueError, match="min_demos"):
        get_task("fewshot-rules", min_demos=3, max_demos=2)
    with pytest.raises(ValueError, match="families"):
        get_task("fewshot-rules", families=["reverse", "shuffle"])
    with pytest.raises(ValueError, match="test_rotations"):
        get_task("fewshot-rules", rotations=[2], test_rotations=[2])
