"""Seq2SeqTrainer: token-weighted loss, teacher-forced and free-running metrics, decoder-only models,
scheduled sampling, and sequence-level fine-tuning."""

import math

import pytest
import torch
from copy_task import copy_batches

from treadmill import OptimizerConfig, TrainingConfig
from treadmill.constants import BOS_ID, EOS_ID, PAD_ID
from treadmill.decoding import GenerationOutput
from treadmill.models import GPT, GPTConfig, transformer_seq2seq
from treadmill.seq2seq import Seq2SeqConfig, Seq2SeqTrainer, evaluation, strip_target
from treadmill.seq2seq.sequence_trainer import SequenceLevelConfig, SequenceLevelTrainer
from treadmill.training.history import last_metrics

VOCAB = 12  # copy_task's default


def transformer():
    torch.manual_seed(0)
    return transformer_seq2seq(
        VOCAB,
        VOCAB,
        d_model=32,
        n_heads=2,
        n_encoder_layers=1,
        n_decoder_layers=1,
        d_ff=64,
        dropout=0.0,
    )


def config(**kwargs):
    kwargs.setdefault("optimizer", OptimizerConfig("AdamW", lr=3e-3))
    return TrainingConfig(progress_bar=False, **kwargs)


def test_strip_target_cuts_bos_eos_and_padding():
    assert strip_target([BOS_ID, 5, 6, EOS_ID, 7, PAD_ID]) == [5, 6]
    assert strip_target([BOS_ID, 5, PAD_ID, PAD_ID]) == [5]


def test_loss_is_token_weighted_and_ignores_padding():
    batches = copy_batches(1)
    trainer = Seq2SeqTrainer(
        transformer(), config(), batches, seq2seq=Seq2SeqConfig(label_smoothing=0.0)
    )
    batch = batches[0]
    logits = trainer._forward_pass(batch)
    out = trainer._compute_loss(batch, logits)
    target = batch["tgt"][:, 1:]
    expected = torch.nn.functional.cross_entropy(
        logits.reshape(-1, VOCAB), target.reshape(-1), ignore_index=PAD_ID
    )
    torch.testing.assert_close(out.loss, expected)
    assert int(out.n_tokens) == int((target != PAD_ID).sum())


def test_validation_reports_teacher_forced_free_running_and_gap():
    batches = copy_batches(8)
    trainer = Seq2SeqTrainer(
        transformer(),
        config(epochs=25),
        batches,
        batches[:2],
        seq2seq=Seq2SeqConfig(label_smoothing=0.0, generation={"max_len": 8}),
    )
    history = trainer.fit()
    last = last_metrics(history, "val")
    for key in (
        "val_loss",
        "val_perplexity",
        "val_token_accuracy",
        "val_sequence_accuracy",
        "val_exact_match",
        "val_gen_token_accuracy",
        "val_bleu",
        "val_chrf",
        "val_wer",
        "val_per",
        "val_exposure_gap",
    ):
        assert key in last, key
    assert last["val_perplexity"] == pytest.approx(math.exp(last["val_loss"]), rel=1e-4)
    assert last["val_exposure_gap"] == pytest.approx(
        last["val_token_accuracy"] - last["val_gen_token_accuracy"]
    )
    # a correct model and decoder learn to copy: free-running matches teacher-forced
    assert last["val_exact_match"] > 0.9 and abs(last["val_exposure_gap"]) < 0.05


def test_decode_metrics_against_hand_computed_outputs(monkeypatch):
    batch = copy_batches(1, batch=2)[0]
    trainer = Seq2SeqTrainer(transformer(), config(), [batch])
    refs = [strip_target(r.tolist()) for r in batch["tgt"]]
    fake = [refs[0], refs[1][:-1]]  # first right, second misses its last token
    monkeypatch.setattr(evaluation, "generate_for_batch", lambda model, b, **kw: GenerationOutput(fake, torch.empty(0)))
    metrics = trainer.decode_metrics([batch])
    assert metrics["exact_match"] == 0.5
    assert metrics["per"] == pytest.approx(1 / (len(refs[0]) + len(refs[1])))


def test_val_decode_batches_caps_decoding(monkeypatch):
    batches = copy_batches(4)
    calls = []
    trainer = Seq2SeqTrainer(
        transformer(), config(), batches, batches, seq2seq=Seq2SeqConfig(val_decode_batches=2)
    )
    monkeypatch.setattr(
        evaluation, "generate_for_batch",
        lambda model, b, **kw: calls.append(1) or GenerationOutput([[4]] * b["src"].size(0), torch.empty(0)),
    )
    trainer.evaluate(batches)
    assert len(calls) == 2
    trainer.seq2seq.val_decode_batches = 0
    assert "exact_match" not in trainer.evaluate(batches)


def test_decoder_only_model_trains_on_target_tokens_only():
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(
            vocab_size=VOCAB, d_model=32, n_heads=2, n_layers=2, d_ff=64, max_len=32, dropout=0.0
        )
    )
    batches = copy_batches(8)
    trainer = Seq2SeqTrainer(
        model,
        config(epochs=25, optimizer=OptimizerConfig("AdamW", lr=5e-3)),
        batches,
        batches[:2],
        seq2seq=Seq2SeqConfig(label_smoothing=0.0, generation={"max_len": 8}),
    )
    tokens, labels = trainer._decoder_only_tokens(batches[0])
    n_src = int((batches[0]["src"][0] != PAD_ID).sum())
    assert torch.all(labels[0, :n_src] == PAD_ID)  # no loss on the prompt
    last = last_metrics(trainer.fit(), "val")
    # it learns to copy, and feeding itself loses little against teacher forcing
    assert last["val_exact_match"] > 0.5
    assert abs(last["val_exact_match"] - last["val_sequence_accuracy"]) < 0.15


def test_decoder_only_generation_prompt_is_the_training_prefix(monkeypatch):
    model = GPT(GPTConfig(vocab_size=VOCAB, d_model=16, n_heads=2, n_layers=1, d_ff=32, max_len=32))
    # The dataset layout: sources end in EOS and are right-padded; targets are BOS ... EOS.
    src = torch.tensor([[7, 8, 9, EOS_ID], [5, EOS_ID, PAD_ID, PAD_ID]])
    tgt = torch.tensor([[BOS_ID, 10, 11, EOS_ID], [BOS_ID, 6, EOS_ID, PAD_ID]])
    batch = {"src": src, "tgt": tgt}
    trainer = Seq2SeqTrainer(model, config(epochs=1), [batch])
    seen = {}
    real_generate = evaluation.generate
    monkeypatch.setattr(evaluation, "generate", lambda m, **kw: seen.update(kw) or real_generate(m, **kw))
    trainer.generate_batch(batch, max_len=3)
    tokens, _ = trainer._decoder_only_tokens(batch)
    for row, prompt in zip(tokens.tolist(), seen["prompt"], strict=True):
        assert prompt == row[: row.index(BOS_ID) + 1]  # everything up to and including BOS
    assert seen["prompt"][0] == [7, 8, 9, EOS_ID, BOS_ID]


def test_scheduled_sampling_changes_decoder_inputs_while_training(monkeypatch):
    seen = []
    batches = copy_batches(1)
    trainer = Seq2SeqTrainer(
        transformer(),
        config(epochs=1),
        batches,
        seq2seq=Seq2SeqConfig(scheduled_sampling={"kind": "constant", "k": 0.0}),
    )
    real_model = trainer.model
    monkeypatch.setattr(
        trainer,
        "model",
        lambda src, tgt_in, **kw: seen.append(tgt_in.clone()) or real_model(src, tgt_in, **kw),
    )
    trainer.model.training = True
    trainer._forward_pass(batches[0])
    first_pass, second_pass = seen  # the no-grad pass sees gold inputs, the trained pass the mix
    assert torch.equal(first_pass, batches[0]["tgt"][:, :-1])
    assert not torch.equal(second_pass, first_pass)
    assert torch.equal(second_pass[:, 0], first_pass[:, 0])  # BOS kept
    assert torch.equal(second_pass == PAD_ID, first_pass == PAD_ID)  # padding kept


@pytest.mark.parametrize("method", ["mrt", "reinforce"])
def test_sequence_level_finetuning_raises_exact_match(method):
    batches = copy_batches(6)
    base = Seq2SeqTrainer(
        transformer(), config(epochs=6), batches, seq2seq=Seq2SeqConfig(label_smoothing=0.0)
    )
    base.fit()
    start = base.decode_metrics(batches)["exact_match"]
    tuned = SequenceLevelTrainer(
        base.model,
        config(epochs=8, optimizer=OptimizerConfig("AdamW", lr=1e-3)),
        batches,
        seq2seq=Seq2SeqConfig(generation={"max_len": 8}),
        sequence_level=SequenceLevelConfig(method=method, n_candidates=4, reward="exact_match"),
    )
    history = tuned.fit()
    assert "reward" in history
    assert tuned.decode_metrics(batches)["exact_match"] > start
