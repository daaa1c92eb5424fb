"""The `files` task: your own TSV/JSONL pairs, held-out splits by source hash, tokenizer choice."""

import json

import pytest

from treadmill.data import get_task, task_sizes

PAIRS = [(f"w{i} x{i % 7}", f"y{i % 5} z{i}") for i in range(400)]


def _tsv(path, pairs):
    path.write_text("".join(f"{src}\t{tgt}\n" for src, tgt in pairs))
    return str(path)


def test_three_files_become_the_three_splits(tmp_path):
    train, valid, test = _tsv(tmp_path / "a.tsv", PAIRS[:300]), _tsv(tmp_path / "b.tsv", PAIRS[300:350]), \
        _tsv(tmp_path / "c.tsv", PAIRS[350:])
    task = get_task("files", train=train, valid=valid, test=test)
    assert task.split_sizes() == {"train": 300, "valid": 50, "test": 50}
    assert task.splits["test"].pairs == PAIRS[350:]
    # Word tokenizers fitted on the training split: a training pair round-trips, an unseen word is UNK.
    row = task.splits["train"][0]
    assert task.tgt_tokenizer.decode(row["tgt"]) == PAIRS[0][1]
    assert task.src_tokenizer.decode(task.splits["test"][0]["src"]) == "<unk> x0"  # w350 never trained on
    assert task_sizes("files", train=train, valid=valid, test=test) == task.split_sizes()


def test_missing_splits_are_held_out_of_the_training_file_by_source(tmp_path):
    # each source three times, with different targets: all three must land in one split
    pairs = [(f"s{i}", f"t{i} v{k}") for i in range(300) for k in range(3)]
    train = _tsv(tmp_path / "train.tsv", pairs)
    task = get_task("files", train=train, held_out_fraction=0.1)
    sources = {split: {src for src, _ in ds.pairs} for split, ds in task.splits.items()}
    assert not (sources["train"] & sources["valid"] or sources["train"] & sources["test"] or sources["valid"] & sources["test"])
    assert sum(task.split_sizes().values()) == len(pairs)
    assert 0.05 < len(sources["valid"]) / 300 < 0.15 and 0.05 < len(sources["test"]) / 300 < 0.15
    # the same file gives the same split on every build
    assert get_task("files", train=train, held_out_fraction=0.1).splits["test"].pairs == task.splits["test"].pairs
    # a given test file is used as it is; only valid is held out
    test = _tsv(tmp_path / "test.tsv", [("q", "r")])
    partly = get_task("files", train=train, test=test, held_out_fraction=0.1)
    assert partly.splits["test"].pairs == [("q", "r")]
    assert len(partly.splits["train"]) + len(partly.splits["valid"]) == len(pairs)


def test_jsonl_with_named_fields_and_char_or_bpe_tokenizers(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps({"en": src, "de": tgt}) + "\n" for src, tgt in PAIRS))
    chars = get_task("files", train=str(path), src_key="en", tgt_key="de", tokenizer="char")
    assert chars.src_tokenizer.kind == "char" and chars.src_tokenizer.vocab_size < 30
    bpe = get_task("files", train=str(path), src_key="en", tgt_key="de", tokenizer="bpe", bpe_vocab_size=300)
    assert bpe.src_tokenizer.kind == "bpe"
    src, tgt = bpe.splits["train"].pairs[0]
    assert bpe.tgt_tokenizer.decode(bpe.splits["train"][0]["tgt"]) == tgt


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, r"needs task\.options\.train=PATH"),
        ({"train": "data.csv"}, r"data file data\.csv: unknown format '\.csv'"),
        ({"train": "missing.tsv"}, r"data file '.*missing\.tsv' does not exist"),
        ({"tokenizer": "sentencepiece"}, r"task\.options\.tokenizer='sentencepiece' is not a tokenizer"),
        ({"held_out_fraction": 0.7}, r"task\.options\.held_out_fraction must be in \(0, 0\.5\)"),
    ],
)
def test_bad_options_name_the_option_or_file(tmp_path, monkeypatch, options, message):
    monkeypatch.chdir(tmp_path)
    _tsv(tmp_path / "ok.tsv", PAIRS)
    if options:  # every case but the first starts from a good training file
        options = {"train": "ok.tsv", **options}
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        get_task("files", **options)
