"""Attention maps: recorded per head without changing outputs, equal to what decoding saw, for every
model family; pictures name every token (G2P letters and phonemes, special tokens included)."""

import types

import pytest
import torch

from treadmill.cli.attention import AttentionPicture
from treadmill.cli.config import RunConfigError
from treadmill.constants import BOS_ID, EOS_ID
from treadmill.data.tokenizers import CharTokenizer, token_names
from treadmill.decoding import generate
from treadmill.models import GPT, GPTConfig
from treadmill.models.builders import rnn_seq2seq, transformer_seq2seq
from treadmill.nn import MultiHeadAttention
from treadmill.nn.attention_record import record_attention
from treadmill.seq2seq.attention_maps import attention_maps


def test_recording_keeps_every_heads_weights_and_changes_no_output():
    torch.manual_seed(0)
    attention = MultiHeadAttention(16, 4).eval()
    x = torch.randn(2, 5, 16)
    plain = attention(x, is_causal=True, need_weights=True)
    with record_attention(attention) as recorded:
        again = attention(x, is_causal=True)
    heads = recorded[""][0]  # the module itself is named ""
    assert heads.shape == (2, 4, 5, 5)
    torch.testing.assert_close(again.output, plain.output)
    torch.testing.assert_close(heads.mean(dim=1), plain.weights)  # the head average need_weights gives
    assert torch.all(heads.triu(diagonal=1) == 0)  # causal: nothing from the future
    assert attention.recorded is None  # outside the block nothing is kept


def test_encoder_decoder_maps_are_the_cross_attention_greedy_decoding_used():
    torch.manual_seed(0)
    model = transformer_seq2seq(12, 12, d_model=16, n_heads=2, n_encoder_layers=2, n_decoder_layers=3, d_ff=32).eval()
    src = torch.tensor([[5, 6, 7, 8, EOS_ID]])
    out = generate(model, src, strategy="greedy", min_len=4, max_len=6, return_attention=True)
    hypothesis = out.sequences[0]
    assert len(hypothesis) >= 4
    maps = attention_maps(model, src[0].tolist(), hypothesis)
    assert maps.kind == "cross" and (maps.n_layers, maps.n_heads) == (3, 2)
    assert maps.weights.shape == (3, 2, len(hypothesis) + 1, 5)
    assert maps.row_ids == [*hypothesis, EOS_ID] and maps.col_ids == [5, 6, 7, 8, EOS_ID]
    assert set(maps.row_sides) == {"tgt"} and set(maps.col_sides) == {"src"}
    # decoding returns the last layer's head average at each output token: the teacher-forced
    # maps give the same numbers (and one row more, the step that produced EOS)
    torch.testing.assert_close(maps.weights[-1].mean(0)[:-1], out.attention[0].float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(maps.weights.sum(-1), torch.ones(3, 2, len(hypothesis) + 1))


def test_decoder_only_maps_are_self_attention_over_the_whole_sequence():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=12, d_model=16, n_heads=2, n_layers=2, d_ff=32, max_len=32)).eval()
    maps = attention_maps(model, [5, 6, EOS_ID], [7, 8])
    sequence = [5, 6, EOS_ID, BOS_ID, 7, 8]
    assert maps.kind == "self" and maps.weights.shape == (2, 2, 6, 6)
    assert maps.row_ids == maps.col_ids == sequence
    assert maps.row_sides == ["src", "src", "src", "tgt", "tgt", "tgt"]
    assert torch.all(maps.weights.triu(diagonal=1) == 0)  # causal
    torch.testing.assert_close(maps.weights.sum(-1), torch.ones(2, 2, 6))


def test_rnn_attention_is_one_layer_and_one_head():
    torch.manual_seed(0)
    model = rnn_seq2seq(12, 12, embed_dim=8, hidden_dim=8, attention="bahdanau", dropout=0.0).eval()
    maps = attention_maps(model, [5, 6, 7, EOS_ID], [9, 10])
    assert (maps.n_layers, maps.n_heads) == (1, 1) and maps.weights.shape == (1, 1, 3, 4)
    torch.testing.assert_close(maps.weights.sum(-1), torch.ones(1, 1, 3))
    plain = rnn_seq2seq(12, 12, embed_dim=8, hidden_dim=8, attention=None, dropout=0.0).eval()
    with pytest.raises(ValueError, match="returns no attention weights"):
        attention_maps(plain, [5, 6], [7])


def test_token_names_name_special_tokens():
    tokenizer = CharTokenizer().fit(["ab c"])
    ids = [BOS_ID, *tokenizer.encode("ab c"), EOS_ID, 0, 1]
    assert token_names(tokenizer, ids) == ["<bos>", "a", "b", "␣", "c", "<eos>", "<pad>", "<unk>"]


@pytest.fixture(scope="module")
def g2p_run():
    """A (tiny, untrained) model on the G2P task's own tokenizers: what `load_run` gives generate."""
    from treadmill.data.tasks import get_task

    task = get_task("g2p-cmudict", max_words=500)
    torch.manual_seed(0)
    model = transformer_seq2seq(task.src_tokenizer.vocab_size, task.tgt_tokenizer.vocab_size, d_model=16,
                                n_heads=2, n_encoder_layers=1, n_decoder_layers=2, d_ff=32).eval()
    layout = task.source_layout()
    return types.SimpleNamespace(model=model, src_tokenizer=task.src_tokenizer, tgt_tokenizer=task.tgt_tokenizer,
                                 eos=layout["eos"])


def test_g2p_picture_names_every_letter_and_phoneme_special_tokens_included(g2p_run, tmp_path):
    source = [*g2p_run.src_tokenizer.encode("treadmill"), *([EOS_ID] if g2p_run.eos else [])]
    output = g2p_run.tgt_tokenizer.encode("T R EH1 D M IH2 L")  # any phonemes: the picture names what it is given
    fig = AttentionPicture(tmp_path / "a.png", layer=2, head="1").figure(g2p_run, source, output, "treadmill")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == [*"treadmill", "<eos>"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["T", "R", "EH1", "D", "M", "IH2", "L", "<eos>"]
    assert ax.get_title().endswith("cross-attention, layer 2/2, head 1/2")
    grid = AttentionPicture(tmp_path / "a.png").figure(g2p_run, source, output, "treadmill")
    assert [ax.get_title() for ax in grid.axes if ax.get_images()] == ["head 1", "head 2"]
    assert "layer 2/2, all 2 heads" in grid.get_suptitle()
    mean = AttentionPicture(tmp_path / "a.png", layer=1, head="mean").figure(g2p_run, source, output, "treadmill")
    assert mean.axes[0].get_title().endswith("layer 1/2, mean of 2 heads")
    with pytest.raises(RunConfigError, match="--layer 3: the model's decoder has 2 attention layer"):
        AttentionPicture(tmp_path / "a.png", layer=3).figure(g2p_run, source, output, "treadmill")
    with pytest.raises(RunConfigError, match="--head 0: choose a head from 1 to 2"):
        AttentionPicture(tmp_path / "a.png", head="0").figure(g2p_run, source, output, "treadmill")
