"""Built-in seq2seq tasks: registry errors, toy tasks, g2p-cmudict, num2words-en-fr."""

import pytest
import torch

from treadmill.constants import UNK_ID
from treadmill.data import get_task, list_tasks, task_options, task_sizes
from treadmill.data.tasks.g2p import _split_words

SMALL = {"n_train": 300, "n_valid": 50, "n_test": 50}


def _check_seq2seq_batch(task, split="valid", n=4):
    batch = task.collate_fn([task.splits[split][i] for i in range(n)])
    assert batch["src"].dtype == torch.long and batch["tgt"].dtype == torch.long
    assert batch["src_padding_mask"].dtype == torch.bool
    assert batch["src"].shape[0] == n and batch["src"].shape == batch["src_padding_mask"].shape
    assert batch["tgt"].shape == batch["tgt_padding_mask"].shape
    assert batch["index"].tolist() == list(range(n))
    # Decoding the collated rows gives back the raw targets.
    for row in range(n):
        assert (
            task.tgt_tokenizer.decode(batch["tgt"][row].tolist())
            == task.splits[split].pairs[row][1]
        )


def test_unknown_task_and_option_errors_suggest_names():
    with pytest.raises(ValueError, match=r"unknown task 'revers'.*'reverse'"):
        get_task("revers")
    with pytest.raises(ValueError, match=r"no option 'alphabet'.*Did you mean 'alphabet_size'"):
        get_task("reverse", alphabet=5)
    with pytest.raises(ValueError, match="no option 'alphabet_size'"):
        get_task("addition", alphabet_size=10)
    assert task_options("reverse")["alphabet_size"] == 20


def test_list_tasks_names_descriptions_and_sizes():
    infos = {info.name: info for info in list_tasks()}
    assert set(infos) == {
        "reverse", "copy", "sort", "addition", "addition-lm", "g2p-cmudict", "num2words-en-fr", "num2words-en-es",
        "forecast-sunspots", "forecast-co2", "files", "lm-shakespeare", "lm-files", "fewshot-rules", "shakespeare-genre",
    }  # fmt: skip
    assert infos["files"].sizes == {}  # nothing to count until task.options.train names a file
    assert infos["lm-files"].sizes == {}
    assert sum(infos["lm-shakespeare"].sizes.values()) == 4_987_692  # characters of the cleaned plays
    assert infos["reverse"].sizes == {"train": 50_000, "valid": 1000, "test": 1000}
    g2p = infos["g2p-cmudict"].sizes
    assert g2p["train"] > 120_000 and 5000 < g2p["valid"] < 7500 and 5000 < g2p["test"] < 7500
    assert all(info.description for info in infos.values())
    assert infos["copy"]["sizes"] == infos["copy"].sizes  # record-style access (CLI listing)
    with pytest.raises(KeyError, match="no field 'size'"):
        infos["copy"]["size"]


@pytest.mark.parametrize(
    "name, transform",
    [
        ("reverse", lambda s: s[::-1]),
        ("copy", lambda s: s),
        ("sort", lambda s: sorted(s, key=lambda t: int(t[1:]))),
    ],
)
def test_symbol_tasks(name, transform):
    task = get_task(name, alphabet_size=7, min_len=3, max_len=6, seed=1, **SMALL)
    assert task.split_sizes() == {"train": 300, "valid": 50, "test": 50}
    assert task.src_tokenizer.vocab_size == 4 + 7  # every symbol is its own token
    sources = {s: {src for src, _ in task.splits[s].pairs} for s in task.splits}
    assert not sources["test"] & sources["train"] and not sources["valid"] & sources["train"]
    assert not sources["test"] & sources["valid"]
    for split in task.splits.values():
        for src, tgt in split.pairs:
            tokens = src.split()
            assert 3 <= len(tokens) <= 6 and set(tokens) <= {f"a{i}" for i in range(7)}
            assert tgt.split() == transform(tokens)
            assert UNK_ID not in split.src_tokenizer.encode(src)
    again = get_task(name, alphabet_size=7, min_len=3, max_len=6, seed=1, **SMALL)
    assert again.splits["test"].pairs == task.splits["test"].pairs
    other = get_task(name, alphabet_size=7, min_len=3, max_len=6, seed=2, **SMALL)
    assert other.splits["test"].pairs != task.splits["test"].pairs
    _check_seq2seq_batch(task)


def test_addition_is_correct_and_disjoint():
    task = get_task("addition", min_len=1, max_len=3, **SMALL)
    seen = {s: {src for src, _ in task.splits[s].pairs} for s in task.splits}
    assert not seen["test"] & seen["train"] and not seen["valid"] & seen["train"]
    for src, tgt in task.splits["train"].pairs:
        a, b = (int(x.replace(" ", "")) for x in src.split(" + "))
        assert int(tgt.replace(" ", "")) == a + b
        assert all(1 <= len(str(x)) <= 3 for x in (a, b))
        assert all(len(t) == 1 for t in tgt.split())  # digits are tokens
    _check_seq2seq_batch(task)


def test_toy_task_refuses_more_examples_than_exist():
    with pytest.raises(ValueError, match="distinct examples requested"):
        get_task("reverse", alphabet_size=2, min_len=2, max_len=3, n_train=100)


def test_g2p_split_by_word_with_all_pronunciations():
    task = get_task("g2p-cmudict", max_words=3000)
    words = {s: {w for w, _ in task.splits[s].pairs} for s in task.splits}
    assert not words["train"] & words["valid"] and not words["train"] & words["test"]
    assert not words["valid"] & words["test"]
    assert sum(len(w) for w in words.values()) == 3000
    assert 0.86 < len(words["train"]) / 3000 < 0.94
    # valid/test: one example per word, first pronunciation as target, all as references.
    for split in ("valid", "test"):
        pairs = task.splits[split].pairs
        assert len(pairs) == len(words[split]) == len(task.references[split])
        for (_, tgt), refs in zip(pairs, task.references[split], strict=True):
            assert tgt == refs[0]
    # training: one pair per pronunciation.
    train = task.splits["train"].pairs
    assert len(train) > len(words["train"])
    for (word, tgt), refs in zip(train, task.references["train"], strict=True):
        assert tgt in refs and all(c.isalpha() or c == "'" for c in word)
    assert any(ph[-1] in "012" for _, tgt in train for ph in tgt.split())
    _check_seq2seq_batch(task)
    assert task.src_tokenizer.decode(task.src_tokenizer.encode("hello")) == "hello"


def test_g2p_subsample_keeps_each_words_split_and_strip_stress():
    full = {w: s for s, entries in _split_words(None).items() for w, _ in entries}
    small = _split_words(500)
    assert all(full[w] == s for s, entries in small.items() for w, _ in entries)
    task = get_task("g2p-cmudict", max_words=500, strip_stress=True)
    for split in task.splits.values():
        assert not any(ch.isdigit() for _, tgt in split.pairs for ch in tgt)
    for refs in task.references["test"]:
        assert len(refs) == len(set(refs))  # merged after stripping
    assert task_sizes("g2p-cmudict", max_words=500, strip_stress=True) == task.split_sizes()


def test_num2words_round_trips_and_numbers_are_disjoint():
    from num2words import num2words

    task = get_task("num2words-en-fr", n_train=400, n_valid=100, n_test=100, seed=3)
    numbers = task.metadata["numbers"]
    assert not set(numbers["test"]) & set(numbers["train"])
    assert not set(numbers["valid"]) & set(numbers["train"])
    assert all(1 <= n < 10**9 for ns in numbers.values() for n in ns)
    for split in ("train", "test"):
        for n, (src, tgt) in zip(numbers[split], task.splits[split].pairs, strict=True):
            assert src == num2words(n, lang="en") and tgt == num2words(n, lang="fr")
            src_ids, tgt_ids = task.src_tokenizer.encode(src), task.tgt_tokenizer.encode(tgt)
            assert UNK_ID not in src_ids and UNK_ID not in tgt_ids
            assert task.tgt_tokenizer.decode(tgt_ids) == tgt
            assert task.src_tokenizer.decode(src_ids) == src
    # Log-uniform: as many numbers in [10^3, 10^6) as in [10^6, 10^9) (below 10^3, the
    # uniqueness rule thins out repeats, so those decades are not compared).
    everything = [n for ns in numbers.values() for n in ns]
    thousands = sum(10**3 <= n < 10**6 for n in everything)
    millions = sum(10**6 <= n for n in everything)
    assert 0.75 < thousands / millions < 1.33
    _check_seq2seq_batch(task)


def test_loader_with_token_budget_covers_the_split():
    task = get_task("reverse", **SMALL)
    loader = task.loader("train", batch_size=4, max_tokens=200, seed=1)  # budget wins
    loader.batch_sampler.set_epoch(2)
    seen = []
    assert max(len(b) for b in loader.batch_sampler) > 4
    for batch in loader:
        assert batch["src"].numel() <= 200 and batch["tgt"].numel() <= 200
        seen.extend(batch["index"].tolist())
    assert sorted(seen) == list(range(300))
    capped = task.loader("train", max_tokens=10_000, max_batch_size=8)
    assert max(len(b["index"]) for b in capped) == 8
    fixed = list(task.loader("test", batch_size=16))
    assert torch.cat([b["index"] for b in fixed]).tolist() == list(range(50))  # no shuffle on test
