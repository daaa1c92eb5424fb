"""Seq2SeqEnsemble: mean probabilities, cached == full, beam search through it, clear errors."""

import math

import pytest
import torch
from test_models_transformer import SRC_V, TGT_V, _batch  # the same small source/target batch

from treadmill.constants import BOS_ID, EOS_ID
from treadmill.decoding import generate
from treadmill.models import (
    GPT,
    GPTConfig,
    RNNSeq2Seq,
    Seq2SeqEnsemble,
    Seq2SeqModel,
    TransformerSeq2Seq,
    rnn_seq2seq,
    transformer_seq2seq,
)


def _transformer(seed: int) -> TransformerSeq2Seq:
    torch.manual_seed(seed)
    return transformer_seq2seq(
        SRC_V,
        TGT_V,
        d_model=16,
        n_heads=4,
        n_encoder_layers=2,
        n_decoder_layers=2,
        d_ff=32,
        max_len=32,
    ).eval()


def _rnn(seed: int) -> RNNSeq2Seq:
    torch.manual_seed(seed)
    return rnn_seq2seq(SRC_V, TGT_V, embed_dim=8, hidden_dim=16, attention="luong-general", dropout=0.0).eval()


@torch.no_grad()
def test_forward_is_the_log_of_the_members_mean_probabilities() -> None:
    members = [_transformer(0), _transformer(1), _rnn(2)]
    ensemble = Seq2SeqEnsemble(members)
    src, tgt, src_mask = _batch()
    expected = sum(m(src, tgt, src_mask).softmax(-1) for m in members) / 3
    log_probs = ensemble(src, tgt, src_mask)
    torch.testing.assert_close(log_probs.exp(), expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(3, 6))
    assert isinstance(ensemble, Seq2SeqModel) and ensemble.is_encoder_decoder
    assert not ensemble.training  # built to decode: generate() must not restore a training mode


@torch.no_grad()
def test_cached_decoding_equals_the_full_forward_pass() -> None:
    ensemble = Seq2SeqEnsemble([_transformer(0), _rnn(1)])
    src, tgt, src_mask = _batch()
    full = ensemble(src, tgt, src_mask)
    memory = ensemble.encode(src, src_mask)
    cache, steps = None, []
    for t in range(1, tgt.shape[1] + 1):
        log_probs, cache = ensemble.decode(tgt[:, :t], memory, src_mask, cache)
        steps.append(log_probs)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_an_ensemble_of_one_decodes_like_the_model_itself() -> None:
    model = _transformer(0)
    src, _, src_mask = _batch()
    for options in ({"strategy": "greedy"}, {"strategy": "beam", "beam_size": 4}):
        alone = generate(model, src, src_mask, max_len=10, min_len=3, return_scores=True, **options)
        inside = generate(
            Seq2SeqEnsemble([model]),
            src,
            src_mask,
            max_len=10,
            min_len=3,
            return_scores=True,
            **options,
        )
        assert inside.sequences == alone.sequences
        torch.testing.assert_close(inside.scores, alone.scores, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_beam_search_scores_are_the_ensembles_sequence_log_probabilities() -> None:
    ensemble = Seq2SeqEnsemble([_transformer(0), _transformer(1)])
    src, _, src_mask = _batch()
    out = generate(
        ensemble,
        src,
        src_mask,
        strategy="beam",
        beam_size=3,
        max_len=6,
        min_len=2,
        length_penalty=0.0,
        return_scores=True,
    )
    for row, sequence in enumerate(out.sequences):
        tokens = torch.tensor([[BOS_ID, *sequence]])
        log_probs = ensemble(src[row : row + 1], tokens, src_mask[row : row + 1])[0]
        score = sum(
            log_probs[i, token].item() for i, token in enumerate([*sequence, EOS_ID])
        )  # EOS scored too
        assert math.isclose(out.scores[row].item(), score, abs_tol=1e-4)


def test_members_must_be_encoder_decoders_with_one_target_vocabulary() -> None:
    with pytest.raises(ValueError, match="needs at least one model"):
        Seq2SeqEnsemble([])
    gpt = GPT(GPTConfig(vocab_size=TGT_V, d_model=16, n_heads=2, n_layers=1, d_ff=32, max_len=16))
    with pytest.raises(ValueError, match=r"member 1 \(GPT\) is not an encoder-decoder"):
        Seq2SeqEnsemble([_transformer(0), gpt])
    other_vocab = transformer_seq2seq(
        SRC_V, TGT_V + 2, d_model=16, n_heads=4, n_encoder_layers=1, n_decoder_layers=1, d_ff=32
    )
    src, tgt, src_mask = _batch()
    with pytest.raises(
        ValueError, match="member 1 returned logits of shape .* must share their target vocabulary"
    ):
        Seq2SeqEnsemble([_transformer(0), other_vocab])(src, tgt, src_mask)
