"""Vocab and tokenizers: special ids, round trips, save/load identity, EOS handling."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID
from treadmill.data import (
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    Vocab,
    WordTokenizer,
    load_tokenizer,
)
from treadmill.data.tokenizers import JOINER

TEXTS = [
    "the cat sat on the mat",
    "a quick brown fox jumps over the lazy dog",
    "hello world",
    "the dog and the cat",
] * 5

WORDS = st.text(alphabet="abcdefgh", min_size=1, max_size=6)
SENTENCES = st.lists(WORDS, min_size=1, max_size=8).map(" ".join)


def test_vocab_specials_and_encode_decode(tmp_path):
    vocab = Vocab.build([["b", "a", "b"], ["c", "b", "a"]])
    assert vocab.itos[:4] == list(SPECIAL_TOKENS)
    assert (vocab.stoi["<pad>"], vocab.stoi["<unk>"], vocab.stoi["<bos>"], vocab.stoi["<eos>"]) == (
        PAD_ID,
        UNK_ID,
        BOS_ID,
        EOS_ID,
    )
    # Most frequent first, ties by string: b (3), a (2), c (1).
    assert vocab.itos[4:] == ["b", "a", "c"]
    assert len(vocab) == 7
    assert vocab.encode(["a", "zzz", "c"]) == [5, UNK_ID, 6]
    assert vocab.decode([4, 5, 6]) == ["b", "a", "c"]
    vocab.save(tmp_path / "v.json")
    assert Vocab.load(tmp_path / "v.json") == vocab
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.decode([99])


def test_vocab_build_is_order_independent_and_respects_limits():
    lists = [["x", "y"], ["y", "z"], ["y"], ["x"]]
    assert Vocab.build(lists) == Vocab.build(lists[::-1])
    assert Vocab.build(lists, min_freq=2).itos[4:] == ["y", "x"]
    assert len(Vocab.build(lists, max_size=5)) == 5


@settings(max_examples=50, deadline=None)
@given(SENTENCES)
def test_char_round_trip(text):
    tok = CharTokenizer().fit([text])
    ids = tok.encode(text)
    assert len(ids) == len(text)
    assert all(i >= 4 for i in ids)  # no BOS/EOS added, nothing unknown
    assert tok.decode(ids) == text


@settings(max_examples=50, deadline=None)
@given(SENTENCES)
def test_word_round_trip(text):
    tok = WordTokenizer().fit([text])
    assert len(tok.encode(text)) == len(text.split())
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize(
    "text, tokens",
    [
        ("vingt-deux", ["vingt", f"{JOINER}-{JOINER}", "deux"]),
        ("one thousand, two", ["one", "thousand", f"{JOINER},", "two"]),
        ("quatre-vingt-dix-neuf", ["quatre", "￭-￭", "vingt", "￭-￭", "dix", "￭-￭", "neuf"]),
        ("- a ,b", ["-", "a", f",{JOINER}", "b"]),
    ],
)
def test_word_punctuation_split_round_trips(text, tokens):
    tok = WordTokenizer(punctuation="-,")
    assert tok.tokenize(text) == tokens
    tok.fit([text])
    assert tok.decode(tok.encode(text)) == text


def test_decode_skips_pad_bos_and_stops_at_eos():
    tok = WordTokenizer().fit(["a b c"])
    a, b, c = tok.encode("a b c")
    assert tok.decode([BOS_ID, a, b, EOS_ID, c, PAD_ID]) == "a b"
    assert tok.decode([BOS_ID, a, UNK_ID, PAD_ID]) == "a <unk>"
    assert tok.encode("a zzz") == [a, UNK_ID]


def test_bpe_specials_round_trip_and_reload(tmp_path):
    tok = BPETokenizer.train(TEXTS, vocab_size=60, min_frequency=1)
    assert [tok._tok.id_to_token(i) for i in range(4)] == list(SPECIAL_TOKENS)
    for text in set(TEXTS):
        ids = tok.encode(text)
        assert BOS_ID not in ids and EOS_ID not in ids
        assert tok.decode(ids) == text
        assert tok.decode([BOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID]) == text
    # Merges were learned: frequent words are fewer pieces than characters.
    assert len(tok.encode("the cat")) < len("the cat")
    assert tok.vocab_size <= 60
    tok.save(tmp_path / "bpe.json")
    again = load_tokenizer(tmp_path / "bpe.json")
    assert isinstance(again, BPETokenizer)
    for text in set(TEXTS) | {"the fox sat"}:
        assert again.encode(text) == tok.encode(text)
    assert again.vocab_size == tok.vocab_size


@pytest.mark.parametrize(
    "make",
    [
        lambda: CharTokenizer().fit(TEXTS),
        lambda: WordTokenizer().fit(TEXTS),
        lambda: WordTokenizer(punctuation="-,").fit(TEXTS + ["x-y, z"]),
        lambda: BPETokenizer(vocab_size=80, min_frequency=1).fit(TEXTS),
    ],
)
def test_save_load_identity_for_every_kind(tmp_path, make):
    tok = make()
    assert isinstance(tok, Tokenizer)
    tok.save(tmp_path / "tok.json")
    kind = json.loads((tmp_path / "tok.json").read_text())["kind"]
    assert kind == tok.kind
    again = load_tokenizer(tmp_path / "tok.json")
    assert type(again) is type(tok) and again.vocab_size == tok.vocab_size
    for text in ["the lazy cat", "unseen words qq", "x-y, z"]:
        assert again.encode(text) == tok.encode(text)
        assert again.decode(again.encode(text)) == tok.decode(tok.encode(text))


def test_load_tokenizer_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"tokens": []}))
    with pytest.raises(ValueError, match="bad.json.*'kind'"):
        load_tokenizer(bad)
    bad.write_text(json.dumps({"kind": "sentencepiece"}))
    with pytest.raises(ValueError, match="bad.json: tokenizer kind 'sentencepiece' is unknown"):
        load_tokenizer(bad)
    with pytest.raises(ValueError, match="missing.json"):
        load_tokenizer(tmp_path / "missing.json")


def test_bpe_rejects_tiny_vocab_and_untrained_use():
    with pytest.raises(ValueError, match="vocab_size=4"):
        BPETokenizer(vocab_size=4)
    with pytest.raises(RuntimeError, match="not trained"):
        BPETokenizer().encode("x")
