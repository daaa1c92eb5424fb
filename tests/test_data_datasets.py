"""Seq2SeqDataset (lists, TSV, JSONL, errors) and collation (padding, masks, dtypes)."""

import json

import pytest
import torch

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID
from treadmill.data import (
    CharTokenizer,
    Seq2SeqCollator,
    Seq2SeqDataset,
    WordTokenizer,
    collate_seq2seq,
)

PAIRS = [("abc", "x y"), ("a", "y y y z"), ("bcabca", "z")]


@pytest.fixture
def tokenizers():
    return CharTokenizer().fit(s for s, _ in PAIRS), WordTokenizer().fit(t for _, t in PAIRS)


def test_examples_have_documented_layout(tokenizers):
    src_tok, tgt_tok = tokenizers
    ds = Seq2SeqDataset(PAIRS, src_tok, tgt_tok)
    assert len(ds) == 3 and ds.pairs == PAIRS
    ex = ds[1]
    assert ex["index"] == 1
    assert ex["src"] == [*src_tok.encode("a"), EOS_ID]  # the source ends with EOS, no BOS
    assert ex["tgt"] == [BOS_ID, *tgt_tok.encode("y y y z"), EOS_ID]
    assert src_tok.decode(ex["src"]) == "a" and tgt_tok.decode(ex["tgt"]) == "y y y z"
    assert ds.lengths() == [max(3 + 1, 4), max(1 + 1, 6), max(6 + 1, 3)]  # sources count their EOS
    assert Seq2SeqDataset(PAIRS, src_tok, tgt_tok, src_eos=False)[1]["src"] == src_tok.encode("a")
    assert ds.sources == [s for s, _ in PAIRS] and ds.targets == [t for _, t in PAIRS]


def test_max_lengths_drop_long_pairs(tokenizers):
    with pytest.warns(UserWarning, match="dropped 2 of 3 pairs longer than max_src_len=3 / max_tgt_len=2"):
        ds = Seq2SeqDataset(PAIRS, *tokenizers, max_src_len=3, max_tgt_len=2)
    # "a"/"y y y z" has 4 target tokens, "bcabca" has 6 source characters.
    assert ds.pairs == [("abc", "x y")] and ds.n_dropped == 2


def test_empty_source_is_rejected(tokenizers):
    with pytest.raises(ValueError, match="pair 1 has an empty source"):
        Seq2SeqDataset([("ab", "x"), ("", "y")], *tokenizers)


def test_tsv_and_jsonl_match_the_list_constructor(tmp_path, tokenizers):
    tsv = tmp_path / "d.tsv"
    tsv.write_text("".join(f"{s}\t{t}\n" for s, t in PAIRS) + "\n")
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text("".join(json.dumps({"en": s, "fr": t}) + "\n" for s, t in PAIRS))
    ref = Seq2SeqDataset(PAIRS, *tokenizers)
    for ds in (
        Seq2SeqDataset.from_tsv(tsv, *tokenizers),
        Seq2SeqDataset.from_jsonl(jsonl, *tokenizers, src_key="en", tgt_key="fr"),
    ):
        assert ds.pairs == ref.pairs
        assert [ds[i] for i in range(len(ds))] == [ref[i] for i in range(len(ref))]


@pytest.mark.parametrize(
    "name, content, pattern",
    [
        ("bad.tsv", "a\tb\nonly-one-column\n", r"bad.tsv:2: expected 'source<TAB>target'"),
        ("bad.tsv", "a\tb\tc\n", r"bad.tsv:1: .*3 column"),
        ("bad.jsonl", '{"src": "a", "tgt": "b"}\n{"src": "a"\n', r"bad.jsonl:2: not valid JSON"),
        (
            "bad.jsonl",
            '{"src": "a", "tgt": "b"}\n\n{"source": "a", "tgt": "b"}\n',
            r"bad.jsonl:3: missing key",
        ),
        ("bad.jsonl", '{"src": "a", "tgt": "b"}\n{"src": " ", "tgt": "b"}\n', r"bad.jsonl:2: 'src' is empty"),
    ],
)
def test_bad_files_name_file_and_line(tmp_path, tokenizers, name, content, pattern):
    path = tmp_path / name
    path.write_text(content)
    reader = Seq2SeqDataset.from_tsv if name.endswith(".tsv") else Seq2SeqDataset.from_jsonl
    with pytest.raises(ValueError, match=pattern):
        reader(path, *tokenizers)


def test_missing_file_is_named(tmp_path, tokenizers):
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        Seq2SeqDataset.from_tsv(tmp_path / "nope.tsv", *tokenizers)


def test_collate_pads_to_batch_max_with_masks(tokenizers):
    ds = Seq2SeqDataset(PAIRS, *tokenizers, src_eos=False)
    examples = [ds[i] for i in range(3)]
    batch = collate_seq2seq(examples)
    assert set(batch) == {"src", "tgt", "src_padding_mask", "tgt_padding_mask", "index"}
    assert batch["src"].dtype == torch.long and batch["tgt"].dtype == torch.long
    assert batch["src_padding_mask"].dtype == torch.bool and batch["index"].dtype == torch.long
    assert batch["src"].shape == (3, 6) and batch["tgt"].shape == (3, 6)
    assert batch["index"].tolist() == [0, 1, 2]
    for row, ex in enumerate(examples):
        n_src, n_tgt = len(ex["src"]), len(ex["tgt"])
        assert batch["src"][row, :n_src].tolist() == ex["src"]
        assert (batch["src"][row, n_src:] == PAD_ID).all()
        assert batch["src_padding_mask"][row].tolist() == [k >= n_src for k in range(6)]
        assert batch["tgt"][row, :n_tgt].tolist() == ex["tgt"]
        assert batch["tgt"][row, 0] == BOS_ID and batch["tgt"][row, n_tgt - 1] == EOS_ID
        assert batch["tgt_padding_mask"][row].tolist() == [k >= n_tgt for k in range(6)]
    # Masks agree with the padding ids (no token id is PAD inside a sequence).
    assert torch.equal(batch["src_padding_mask"], batch["src"] == PAD_ID)


def test_collate_of_one_example_has_no_padding_and_custom_pad_id(tokenizers):
    ds = Seq2SeqDataset(PAIRS, *tokenizers, src_eos=False)
    one = collate_seq2seq([ds[2]])
    assert one["src"].shape == (1, 6) and not one["src_padding_mask"].any()
    batch = Seq2SeqCollator(pad_id=-1)([ds[0], ds[2]])
    assert batch["src"][0, 3:].tolist() == [-1, -1, -1]
    with pytest.raises(ValueError, match="empty list"):
        collate_seq2seq([])
