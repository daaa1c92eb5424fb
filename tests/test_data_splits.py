"""stable_split: stable, order-independent, proportional, and validated."""

import hashlib
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treadmill.data import stable_split, stable_unit


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=50, unique=True), st.randoms()
)
def test_assignment_is_independent_of_order_and_of_other_keys(keys, rnd):
    reference = dict(zip(keys, stable_split(keys), strict=True))
    shuffled = list(keys)
    rnd.shuffle(shuffled)
    assert dict(zip(shuffled, stable_split(shuffled), strict=True)) == reference
    # A key alone gets the split it had among the others.
    assert stable_split([keys[0]]) == [reference[keys[0]]]


def test_pinned_values_do_not_depend_on_the_process():
    # sha256-based: these values are fixed forever; a change here would silently reshuffle
    # every split users have trained on.
    digest = hashlib.sha256(b"treadmill\x00hello").digest()
    assert stable_unit("hello") == int.from_bytes(digest[:8], "big") / 2**64
    assert stable_unit("hello") == pytest.approx(0.3494006228365322, abs=1e-15)
    keys = ["hello", "world", "cat", "dog", "treadmill", "g2p", "x", "y"]
    expected = ["train", "valid", "test", "valid", "test", "train", "train", "train"]
    assert stable_split(keys, (0.5, 0.25, 0.25)) == expected
    assert stable_unit("hello", salt="a") != stable_unit("hello", salt="b")


def test_fractions_are_respected_on_many_keys():
    keys = [f"key{i}" for i in range(20_000)]
    out = stable_split(keys, (0.8, 0.15, 0.05))
    share = {name: out.count(name) / len(keys) for name in ("train", "valid", "test")}
    assert abs(share["train"] - 0.8) < 0.015
    assert abs(share["valid"] - 0.15) < 0.015
    assert abs(share["test"] - 0.05) < 0.01
    assert set(stable_split(keys[:500], (1.0, 0.0, 0.0))) == {"train"}


def test_duplicate_keys_share_a_split():
    keys = [f"w{random.randrange(50)}" for _ in range(500)]
    seen = {}
    for key, split in zip(keys, stable_split(keys), strict=True):
        assert seen.setdefault(key, split) == split


@pytest.mark.parametrize("fractions", [(0.9, 0.1), (0.5, 0.5, 0.5), (1.1, -0.05, -0.05)])
def test_bad_fractions_raise(fractions):
    with pytest.raises(ValueError, match="fractions"):
        stable_split(["a"], fractions)
