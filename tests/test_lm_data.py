"""lm-shakespeare and lm-files: cleaning, the 90/5/5 split, export, token files, windows."""

import json
import math

import numpy as np
import pytest
import torch

from treadmill.cli import main
from treadmill.data.tasks import get_task
from treadmill.data.tasks.export import export_task
from treadmill.data.tasks.shakespeare import (
    clean_play,
    play_files,
    shakespeare_corpus,
    split_by_chars,
)
from treadmill.lm import RandomWindows, TokenFileDataset, token_file_loader, write_token_files
from treadmill.lm.dataset import ContiguousWindows
from treadmill.validation import DataError

TEXT = "ROMEO:\nBut soft, what light through yonder window breaks?\n\nJULIET:\nAy me!\n" * 40


@pytest.fixture(scope="module")
def shakespeare(tmp_path_factory):
    return get_task("lm-shakespeare", cache_dir=str(tmp_path_factory.mktemp("tokens")))


def test_markdown_markup_is_removed_and_speakers_become_name_colon():
    play = "# Hamlet\n\n## ACT I\n\n### SCENE I.  \n\n_Enter GHOST_\n\n**HAMLET**  \nTo be, or not  \n__\\[Aside]_ \\--so\n*Exit.*\n"
    assert clean_play(play) == "Hamlet\n\nACT I\n\nSCENE I.\n\nEnter GHOST\n\nHAMLET:\nTo be, or not\n[Aside] --so\nExit."


def test_the_38_plays_are_read_from_the_installed_files_in_sorted_order():
    files = play_files()
    assert len(files) == 38
    assert [f.parent.name for f in files].count("tragedies") == 6
    assert [str(f) for f in files] == sorted(str(f) for f in files)
    corpus = shakespeare_corpus()
    assert corpus.startswith("A Midsummer Night's Dream\n\nACT I")
    assert "**" not in corpus and "_" not in corpus and "  \n" not in corpus and "\n#" not in corpus
    assert "ROMEO:\n" in corpus


def test_split_is_90_5_5_by_characters():
    splits = split_by_chars("x" * 1000)
    assert {k: len(v) for k, v in splits.items()} == {"train": 900, "valid": 50, "test": 50}


def test_export_round_trip_concatenates_to_the_cleaned_corpus(shakespeare, tmp_path, capsys):
    assert main(["tasks", "--export", "lm-shakespeare", str(tmp_path / "out"),
                 "--set", f"cache_dir={shakespeare.token_dir.parent}"]) == 0
    assert "train:" in capsys.readouterr().out
    parts = [(tmp_path / "out" / f"{s}.txt").read_bytes().decode("utf-8") for s in ("train", "valid", "test")]
    assert "".join(parts) == shakespeare_corpus()
    assert len(parts[0]) == int(0.9 * len(shakespeare_corpus()))


def test_every_builtin_sequence_task_exports_source_tab_target(tmp_path):
    task = get_task("reverse", n_train=20, n_valid=5, n_test=5, max_len=4)
    paths = export_task(task, tmp_path)
    lines = paths["test"].read_text().splitlines()
    assert lines == [f"{src}\t{tgt}" for src, tgt in task.splits["test"].pairs]


def test_token_files_equal_the_tokenizers_output(shakespeare):
    for split in ("train", "valid", "test"):
        stored = np.fromfile(shakespeare.token_dir / f"{split}.bin", dtype=np.uint16)
        assert stored.tolist() == shakespeare.tgt_tokenizer.encode(shakespeare.texts[split])
    meta = json.loads((shakespeare.token_dir / "meta.json").read_text())
    assert meta["dtype"] == "uint16" and meta["tokens"]["valid"] == meta["chars"]["valid"] == len(shakespeare.texts["valid"])
    assert meta["tokenizer"]["kind"] == "char" and len(meta["sha256"]["train"]) == 64


def test_bpe_token_files_equal_the_tokenizers_output_and_decode_back(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    task = get_task("lm-files", train=str(path), tokenizer="bpe", vocab_size=300, block_size=8, cache_dir=str(tmp_path / "c"))
    ids = np.fromfile(task.token_dir / "train.bin", dtype=np.uint16).tolist()
    assert ids == task.tgt_tokenizer.encode(task.texts["train"])
    assert task.tgt_tokenizer.decode(ids) == task.texts["train"]  # byte-level: newlines survive
    dataset = task.splits["train"]
    assert dataset.chars_per_token == pytest.approx(len(task.texts["train"]) / len(ids))


def test_a_window_is_the_tokens_and_their_next_tokens(tmp_path):
    write_token_files(tmp_path, {"train": TEXT}, _char_tokenizer(TEXT))
    data = TokenFileDataset(tmp_path / "train.bin", block_size=5)
    item = data[7]
    ids = np.fromfile(tmp_path / "train.bin", dtype=np.uint16).astype(np.int64)
    assert item["tokens"].tolist() == ids[7:12].tolist() and item["target"].tolist() == ids[8:13].tolist()
    assert item["n_chars"] == 5.0 and len(data) == len(ids) - 5


def test_random_windows_follow_the_seed_and_epoch_and_contiguous_ones_cover_the_file(tmp_path):
    write_token_files(tmp_path, {"train": TEXT}, _char_tokenizer(TEXT))
    data = TokenFileDataset(tmp_path / "train.bin", block_size=8)
    a, b, c = RandomWindows(data, 50, seed=1), RandomWindows(data, 50, seed=1), RandomWindows(data, 50, seed=2)
    assert list(a) == list(b) and list(a) != list(c)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first and max(first) < len(data)
    starts = list(ContiguousWindows(data))
    assert starts == list(range(0, (data.n_tokens - 1) // 8 * 8, 8))
    spread = list(ContiguousWindows(data, limit=4))
    assert len(spread) == 4 and spread[0] == 0 and spread[-1] == starts[-1]
    batch = next(iter(token_file_loader(data, 4, "random", num_samples=8, seed=1)))
    assert batch["tokens"].shape == (4, 8) and torch.equal(batch["tokens"][:, 1:], batch["target"][:, :-1])


def test_token_files_refuse_other_text_and_ids_that_do_not_fit(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text(TEXT)
    options = {"train": str(path), "block_size": 8, "cache_dir": str(tmp_path / "c")}
    get_task("lm-files", **options)
    path.write_text(TEXT.replace("ROMEO", "TYBALT"))
    with pytest.raises(DataError, match="were made from other text"):
        get_task("lm-files", **options)
    assert get_task("lm-files", **options, force=True).texts["train"].startswith("TYBALT")
    with pytest.raises(DataError, match="does not fit uint16"):
        write_token_files(tmp_path / "big", {"train": "ab"}, _FakeTokenizer(70_000), dtype="uint16")
    meta = write_token_files(tmp_path / "big", {"train": "ab"}, _FakeTokenizer(70_000))
    assert meta["dtype"] == "uint32" and np.fromfile(tmp_path / "big" / "train.bin", dtype=np.uint32).tolist() == [69_999] * 2


def _char_tokenizer(text):
    from treadmill.data.tokenizers import CharTokenizer

    return CharTokenizer().fit([text])


class _FakeTokenizer:
    def __init__(self, vocab_size):
        self.vocab_size = vocab_size

    def encode(self, text):
        return [self.vocab_size - 1] * len(text)

    def to_dict(self):
        return {"kind": "fake"}


def test_perplexity_and_bits_per_char_formulas():
    from treadmill.lm import bits_per_char, perplexity_from_loss

    assert perplexity_from_loss(math.log(7.0)) == pytest.approx(7.0)
    assert bits_per_char(math.log(2.0), 1.0) == pytest.approx(1.0)
    assert bits_per_char(2 * math.log(2.0), 4.0) == pytest.approx(0.5)  # 2 bits per token of 4 characters
