"""ids -> text helpers with tokenizers, id->token maps, token lists and token->id dicts."""

from __future__ import annotations

import pytest
import torch

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from treadmill.decoding import GenerationOutput, decode_to_text, ids_to_tokens

TOKENS = ["<pad>", "<unk>", "<bos>", "<eos>", "bonjour", "monde", "le"]


class CharTokenizer:
    """Minimal tokenizer with decode(ids), like treadmill.data's and HF's."""

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(ord("a") + i - 4) for i in ids)


def test_all_vocabulary_kinds_give_the_same_text() -> None:
    ids = [BOS_ID, 4, 5, EOS_ID, PAD_ID]
    id_to_token = dict(enumerate(TOKENS))
    token_to_id = {tok: i for i, tok in enumerate(TOKENS)}  # seed 001's vocab dicts
    for vocab in (TOKENS, id_to_token, token_to_id):
        assert decode_to_text(ids, vocab) == "bonjour monde"
    assert decode_to_text(ids, TOKENS, skip_special=False) == "<bos> bonjour monde <eos> <pad>"
    assert decode_to_text([4, UNK_ID], TOKENS, sep="_") == "bonjour_<unk>"  # UNK stays visible
    assert ids_to_tokens(torch.tensor([6, 4]).tolist(), TOKENS) == ["le", "bonjour"]


def test_batches_tensors_outputs_and_tokenizers() -> None:
    assert decode_to_text([[4], [5, 6], []], TOKENS) == ["bonjour", "monde le", ""]
    assert decode_to_text(torch.tensor([[4, 5], [6, PAD_ID]]), TOKENS) == ["bonjour monde", "le"]
    out = GenerationOutput(sequences=[[[4], [5]], [[6]]], tokens=torch.zeros(2, 2, 1))
    assert decode_to_text(out, TOKENS) == [["bonjour", "monde"], ["le"]]
    # a tokenizer gets the ids with PAD/BOS/EOS removed and does its own joining
    assert decode_to_text([BOS_ID, 4, 5, 6, EOS_ID], CharTokenizer()) == "abc"


def test_treadmill_data_vocab_and_word_tokenizer() -> None:
    from treadmill.data.tokenizers import WordTokenizer
    from treadmill.data.vocab import Vocab

    vocab = Vocab(["bonjour", "monde"])
    ids = [BOS_ID, *vocab.encode(["bonjour", "monde"]), EOS_ID]
    assert decode_to_text(ids, vocab) == "bonjour monde"  # Vocab.decode returns tokens: joined
    tokenizer = WordTokenizer().fit(["bonjour le monde"])
    ids = [BOS_ID, *tokenizer.encode("le monde"), EOS_ID, PAD_ID]
    assert decode_to_text([ids, ids[:2]], tokenizer) == ["le monde", "le"]


def test_unknown_ids_and_bad_vocab_raise() -> None:
    with pytest.raises(ValueError, match="token id 9 is not in the vocabulary"):
        decode_to_text([4, 9], TOKENS)
    with pytest.raises(ValueError, match="vocab must be"):
        decode_to_text([4], 42)
