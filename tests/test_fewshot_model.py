"""setencoder-seq2seq: the source is cut into demos and query right; the memory does not depend
on the order of the demos or on how the set is padded; cached decoding equals teacher forcing."""

import pytest
import torch

from treadmill.constants import EOS_ID, PAD_ID
from treadmill.decoding import generate
from treadmill.models.registry import build_model
from treadmill.models.set_encoder_seq2seq import split_demos

SEP, QUERY, ARROW = 5, 6, 4  # the ids fewshot-rules gives "|", "?" and ">"


def _model(**fields):
    torch.manual_seed(0)
    config = {"src_vocab_size": 13, "tgt_vocab_size": 13, "demo_sep_id": SEP, "query_sep_id": QUERY,
              "d_model": 32, "n_heads": 4, "d_ff": 64, **fields}
    return build_model("setencoder-seq2seq", config).eval()


def _src(demos, query):
    row = []
    for i, (x, y) in enumerate(demos):
        row += ([SEP] if i else []) + list(x) + [ARROW] + list(y)
    return row + [QUERY] + list(query) + [EOS_ID]


def _batch(rows):
    width = max(len(r) for r in rows)
    return torch.tensor([r + [PAD_ID] * (width - len(r)) for r in rows])


DEMOS = [((7, 8, 9), (9, 8, 7)), ((10, 11), (11, 10)), ((12, 7, 8, 9), (9, 8, 7, 12))]
QUERY_IDS = (8, 10, 12)


def test_split_demos_cuts_pairs_and_query():
    src = _batch([_src(DEMOS, QUERY_IDS), _src(DEMOS[:1], (7,))])
    demos, present, query = split_demos(src, src.eq(PAD_ID), SEP, QUERY)
    assert demos.shape == (2, 3, 9) and present.tolist() == [[True, True, True], [True, False, False]]
    assert demos[0, 1].tolist() == [10, 11, ARROW, 11, 10] + [PAD_ID] * 4
    assert demos[0, 2].tolist() == [12, 7, 8, 9, ARROW, 9, 8, 7, 12]
    assert query.tolist() == [[8, 10, 12, EOS_ID], [7, EOS_ID, PAD_ID, PAD_ID]]


@pytest.mark.parametrize("pooling", ["mean", "attention", "cls", "tokens"])
@pytest.mark.parametrize("positional", ["rope", "learned"])
def test_memory_is_invariant_to_demo_order(pooling, positional):
    model = _model(pooling=pooling, positional=positional, set_layers=2)
    orders = [DEMOS, DEMOS[::-1], [DEMOS[1], DEMOS[2], DEMOS[0]]]
    src = _batch([_src(d, QUERY_IDS) for d in orders])
    tgt = torch.tensor([[2, 12, 10, 8]] * 3)
    with torch.no_grad():
        memory = model.encode(src)["outputs"]
        logits = model(src, tgt)
    torch.testing.assert_close(memory[1], memory[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(memory[2], memory[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logits[1], logits[0], atol=1e-5, rtol=1e-5)
    # and it does depend on the demos: another set gives another memory
    other = _batch([_src(DEMOS[:2], QUERY_IDS)])
    with torch.no_grad():
        assert not torch.allclose(model.encode(other)["outputs"][0, :8], memory[0, :8], atol=1e-4)


@pytest.mark.parametrize("pooling", ["mean", "attention", "cls", "tokens"])
def test_an_example_decodes_the_same_alone_and_in_a_padded_batch(pooling):
    model = _model(pooling=pooling, norm_first=True, norm="rmsnorm", embedding_norm=True, layer_scale_init=1e-4)
    short = _src(DEMOS[:1], (7, 8))
    longer = _src(DEMOS + [((7, 7, 7, 7, 7), (7, 7, 7, 7, 7))], QUERY_IDS + (9, 9))  # more, longer demos
    alone, batched = _batch([short]), _batch([short, longer])
    tgt = torch.tensor([[2, 8, 7, 9]])
    with torch.no_grad():
        torch.testing.assert_close(model(batched, tgt.repeat(2, 1))[0], model(alone, tgt)[0], atol=1e-5, rtol=1e-5)
        a = generate(model, alone, alone.eq(PAD_ID), max_len=6, strategy="greedy")
        b = generate(model, batched, batched.eq(PAD_ID), max_len=6, strategy="greedy")
    assert a.sequences[0] == b.sequences[0]


def test_cached_decoding_equals_teacher_forcing():
    model = _model(n_decoder_layers=2, init="truncated_normal")
    src = _batch([_src(DEMOS, QUERY_IDS), _src(DEMOS[1:], (11,))])
    tgt = torch.tensor([[2, 9, 8, 7, 12], [2, 11, 11, 10, 3]])
    with torch.no_grad():
        full = model(src, tgt)
        memory = model.encode(src)
        cache, steps = None, []
        for t in range(1, tgt.shape[1] + 1):
            logits, cache = model.decode(tgt[:, :t], memory, cache=cache)
            steps.append(logits[:, -1])
    torch.testing.assert_close(torch.stack(steps, 1), full, atol=1e-5, rtol=1e-5)


def test_init_and_norm_choices_change_the_model_and_bad_values_are_named():
    from treadmill.validation import ConfigError

    stds = [_model(init=init).decoder.blocks[0].self_attn.in_proj.weight.std().item()
            for init in ("xavier", "normal", "truncated_normal")]
    assert stds[0] > 2 * stds[1] and stds[2] < stds[1] < 0.021  # xavier ~0.125 at d_model 32
    assert isinstance(_model(norm="rmsnorm", norm_first=True).decoder.final_norm, torch.nn.RMSNorm)
    with pytest.raises(ConfigError, match="pooling"):
        _model(pooling="max")
    with pytest.raises(ConfigError, match="init"):
        _model(init="kaiming")
