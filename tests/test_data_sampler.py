"""TokenBudgetBatchSampler invariants (hypothesis): coverage, budget, determinism, shuffling."""

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treadmill.data import TokenBudgetBatchSampler

LENGTHS = st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=300)


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


@settings(max_examples=60, deadline=None)
@given(
    lengths=LENGTHS,
    max_tokens=st.integers(min_value=1, max_value=200),
    seed=st.integers(0, 2**16),
    multiplier=st.integers(1, 5),
    max_batch_size=st.one_of(st.none(), st.integers(1, 8)),
)
def test_every_index_once_and_batches_within_budget(
    lengths, max_tokens, seed, multiplier, max_batch_size
):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sampler = TokenBudgetBatchSampler(
            lengths,
            max_tokens,
            seed=seed,
            bucket_size_multiplier=multiplier,
            max_batch_size=max_batch_size,
        )
    counts = sampler.epoch_lengths(2)  # what a trainer plans its schedule with
    for epoch in (0, 1):
        batches = _epoch(sampler, epoch)
        assert len(batches) == len(sampler) == counts[epoch]
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for batch in batches:
            assert batch
            padded = len(batch) * max(lengths[i] for i in batch)
            oversize_singleton = len(batch) == 1 and lengths[batch[0]] > max_tokens
            assert padded <= max_tokens or oversize_singleton
            if max_batch_size is not None:
                assert len(batch) <= max_batch_size


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(1, 30), min_size=50, max_size=300), seed=st.integers(0, 1000))
def test_same_seed_and_epoch_give_same_order_and_epochs_differ(lengths, seed):
    a = TokenBudgetBatchSampler(lengths, 60, seed=seed)
    b = TokenBudgetBatchSampler(lengths, 60, seed=seed)
    # b visits other epochs first: resuming at epoch 3 reproduces epoch 3 regardless of history.
    _epoch(b, 5)
    assert _epoch(a, 3) == _epoch(b, 3)
    assert _epoch(a, 0) != _epoch(a, 1)
    assert _epoch(a, 0) != _epoch(TokenBudgetBatchSampler(lengths, 60, seed=seed + 1), 0)


def test_batches_group_similar_lengths():
    # Two clusters of lengths: bucketing should never mix them in one batch when it would waste
    # most of the padding, so padded tokens stay close to real tokens.
    lengths = [2] * 500 + [20] * 500
    sampler = TokenBudgetBatchSampler(lengths, 200, seed=0)
    batches = list(sampler)
    mixed = [b for b in batches if len({lengths[i] for i in b}) > 1]
    assert len(mixed) <= 1  # at most the batch that straddles the two groups in a chunk
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    assert padded <= 1.05 * sum(lengths)


def test_oversize_samples_warn_and_get_their_own_batch():
    lengths = [3, 50, 3, 3, 70]
    with pytest.warns(UserWarning, match=r"2 sample\(s\) are longer than max_tokens=10"):
        sampler = TokenBudgetBatchSampler(lengths, 10, seed=0)
    batches = list(sampler)
    assert [1] in batches and [4] in batches
    assert sorted(i for b in batches for i in b) == list(range(5))


def test_no_shuffle_is_sorted_and_fixed():
    lengths = [5, 1, 4, 2, 3]
    sampler = TokenBudgetBatchSampler(lengths, 6, shuffle=False)
    assert list(sampler) == [[1, 3], [4], [2], [0]]
    sampler.set_epoch(7)
    assert list(sampler) == [[1, 3], [4], [2], [0]]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"max_tokens": 0}, "max_tokens must be >= 1"),
        ({"max_tokens": 10, "bucket_size_multiplier": 0}, "bucket_size_multiplier"),
        ({"max_tokens": 10, "max_batch_size": 0}, "max_batch_size"),
    ],
)
def test_bad_arguments_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TokenBudgetBatchSampler([1, 2, 3], **kwargs)


@settings(max_examples=40, deadline=None)
@given(lengths=LENGTHS, seed=st.integers(0, 1000), world=st.integers(1, 4), epoch=st.integers(0, 3))
def test_shards_cover_the_epoch_in_equal_step_counts(lengths, seed, world, epoch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = TokenBudgetBatchSampler(lengths, 60, seed=seed)
        shards = [whole.shard(world, rank) for rank in range(world)]
    full = _epoch(whole, epoch)
    per_rank = [_epoch(shard, epoch) for shard in shards]
    # DDP needs every rank to take the same number of steps; the plan must agree with iteration.
    assert len({len(batches) for batches in per_rank}) == 1
    assert all(shard.epoch_lengths(epoch + 1)[epoch] == len(per_rank[0]) for shard in shards)
    # Rank r takes batches r, r + world, ... of the one epoch all ranks build alike; the padding
    # repeats batches from the start, so nothing is lost and fewer than `world` batches repeat.
    dealt = [batch for step in zip(*per_rank, strict=True) for batch in step]
    assert dealt[: len(full)] == full and len(dealt) - len(full) < world
    assert dealt[len(full) :] == [full[i % len(full)] for i in range(len(dealt) - len(full))]


def test_a_one_process_shard_is_the_whole_sampler_and_bad_ranks_are_refused():
    sampler = TokenBudgetBatchSampler(list(range(1, 30)), 40, seed=3)
    assert _epoch(sampler.shard(1, 0), 2) == _epoch(sampler, 2)
    for world, rank in ((2, 2), (0, 0), (2, -1)):
        with pytest.raises(ValueError, match=f"num_replicas={world}, rank={rank}"):
            sampler.shard(world, rank)
