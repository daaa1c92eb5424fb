"""decode_loader, the one evaluation path: its metrics, n-best lists, variants and unscored inputs."""

import pytest
import torch
from copy_task import copy_batches

from treadmill.decoding import generate
from treadmill.metrics import Seq2SeqMetrics
from treadmill.models import build_model
from treadmill.seq2seq.evaluation import decode_loader, strip_target

VOCAB = 10


def batches(n_batches=3):
    return copy_batches(n_batches, batch=5, vocab=VOCAB, max_len=5)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("transformer", {"src_vocab_size": VOCAB, "tgt_vocab_size": VOCAB, "d_model": 16,
                                       "n_heads": 2, "n_encoder_layers": 1, "n_decoder_layers": 1, "d_ff": 32,
                                       "dropout": 0.0}).eval()


def test_metrics_are_those_of_generate_on_each_batch(model):
    loader = batches()
    expected = Seq2SeqMetrics()
    for batch in loader:
        hyps = generate(model, batch["src"], batch["src_padding_mask"], max_len=8).sequences
        expected.update(hyps, [[strip_target(row.tolist())] for row in batch["tgt"]])
    result = decode_loader(model, loader, {"max_len": 8}, keep_hypotheses=True)
    want = expected.compute()
    assert result.metrics["exact_match"] == want["exact_match"] and result.metrics["per"] == want["per"]
    assert result.metrics["gen_token_accuracy"] == want["token_accuracy"]
    assert result.rows == list(range(15)) and len(result.hypotheses) == 15


def test_n_best_lists_are_scored_best_first_and_the_first_is_the_one_best(model):
    loader = batches(1)
    beam = {"strategy": "beam", "beam_size": 4, "max_len": 8}
    one = decode_loader(model, loader, beam, keep_hypotheses=True)
    three = decode_loader(model, loader, {**beam, "num_return_sequences": 3}, keep_hypotheses=True)
    assert all(len(h) == 3 for h in three.hypotheses)
    assert [h[0] for h in three.hypotheses] == [h[0] for h in one.hypotheses]
    assert all(s == sorted(s, reverse=True) and all(v < 0 for v in s) for s in three.scores)
    assert three.metrics == one.metrics  # metrics score the best hypothesis


def test_variants_score_mapped_text_and_batches_without_targets_are_only_decoded(model):
    loader = batches(2)
    def detokenize(ids):
        return " ".join(str(i) for i in ids)

    # a map that merges every token into one: every non-empty hypothesis matches every non-empty reference
    result = decode_loader(model, loader, {"max_len": 8}, detokenize=detokenize,
                           variants={"merged": lambda text: "x" if text else ""})
    assert result.metrics["exact_match_merged"] >= result.metrics["exact_match"]
    assert set(result.metrics) == {k for base in result.metrics if not base.endswith("_merged")
                                   for k in (base, f"{base}_merged")}
    unscored = [{k: v for k, v in b.items() if k != "tgt"} for b in loader]
    seen = []
    plain = decode_loader(model, unscored, {"max_len": 8}, on_batch=seen.append)
    assert plain.metrics == {} and [b.references for b in seen] == [None, None]
    assert [len(b.hypotheses) for b in seen] == [5, 5]
