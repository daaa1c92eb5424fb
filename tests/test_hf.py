"""Hugging Face models behind our protocol: same tokens as transformers' generate(), same logits,
same training steps, exact resume, save/load round trips and the named errors of bad checkpoints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

import hf_models as H  # noqa: E402
from copy_task import copy_batches  # noqa: E402

from treadmill import OptimizerConfig, TrainingConfig  # noqa: E402
from treadmill.constants import EOS_ID, PAD_ID  # noqa: E402
from treadmill.decoding import generate  # noqa: E402
from treadmill.hf import (  # noqa: E402
    PretrainedError,
    SpecialTokenError,
    UnsupportedArchitectureError,
    load_pretrained,
    save_pretrained,
)
from treadmill.seq2seq.trainer import Seq2SeqConfig, Seq2SeqTrainer  # noqa: E402

transformers.utils.logging.disable_progress_bar()
transformers.utils.logging.set_verbosity_error()

BUILDERS = {
    "bart": (H.tiny_bart, "seq2seq"),
    "t5": (H.tiny_t5, "seq2seq"),
    "marian": (H.tiny_marian, "seq2seq"),
    "gpt2": (H.tiny_gpt2, "causal-lm"),
    "llama": (H.tiny_llama, "causal-lm"),
}
TEXTS = ["w1 w2 w3 w4", "w6 w7", "w9"]
MAX_NEW = 12


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    return {name: build(root / name) for name, (build, _) in BUILDERS.items()}


def _content(ids, stop):
    out = []
    for i in ids:
        if i in stop:
            break
        out.append(int(i))
    return out


def _hf_generate(model, tok, enc, task, **options):
    """transformers' own generate() on the same inputs, as HF ids up to EOS, one list per input."""
    hf, special = model.hf_model, model.id_map.special
    rows = enc if task == "seq2seq" else [[2, *e] for e in enc]  # decoder-only prompts start with BOS
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), special.pad)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        span = slice(0, len(row)) if task == "seq2seq" else slice(width - len(row), width)  # decoder-only: left pad
        ids[i, span], mask[i, span] = torch.tensor(tok.hf_ids(row)), 1
    # Our decoder never emits PAD or BOS (unless they are EOS); the HF search is told the same.
    suppress = sorted({special.pad, special.bos} - {special.eos})
    out = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=MAX_NEW, do_sample=False,
                      suppress_tokens=suppress, min_new_tokens=2, **options)
    out = out[:, 1:] if task == "seq2seq" else out[:, width:]  # drop the decoder start / the prompt
    return [_content(r.tolist(), {special.eos}) for r in out]


def _ours(model, tok, enc, task, **options):
    if task == "seq2seq":
        out = generate(model, src=enc, max_len=MAX_NEW, min_len=2, **options)
    else:
        out = generate(model, prompt=[[2, *e] for e in enc], max_len=MAX_NEW, min_len=2, **options)
    return [tok.hf_ids(_content(r.tolist(), {EOS_ID, PAD_ID})) for r in out.tokens]


BEAM = {"strategy": "beam", "beam_size": 4, "length_penalty": 1.0, "length_normalization": "length",
        "early_stopping": True}
HF_BEAM = {"num_beams": 4, "length_penalty": 1.0, "early_stopping": True}


SEARCHES = {
    "greedy": ({}, {"num_beams": 1}),
    "beam": (BEAM, HF_BEAM),
    "beam-long": ({**BEAM, "length_penalty": 2.0}, {**HF_BEAM, "length_penalty": 2.0}),  # favours long outputs
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("search", sorted(SEARCHES))
def test_generate_returns_transformers_tokens(saved, name, search):
    task = BUILDERS[name][1]
    model, tok = load_pretrained(saved[name], task=task)
    enc = [tok.encode(t, add_special_tokens=True) for t in TEXTS]
    ours_options, hf_options = SEARCHES[search]
    expected = _hf_generate(model, tok, enc, task, **hf_options)
    assert _ours(model, tok, enc, task, **ours_options) == expected  # a padded batch
    for row, want in zip(enc, expected, strict=True):  # batch 1
        assert _ours(model, tok, [row], task, **ours_options) == [want]
    assert any(len(hyp) >= 2 for hyp in expected)  # the searches produced real outputs


def test_beam_differs_from_greedy_somewhere(saved):
    """The beam comparisons are not greedy ones in disguise: on some model, beam 4 picks another output."""
    differ = 0
    for name in ("bart", "t5", "marian"):
        model, tok = load_pretrained(saved[name], task="seq2seq")
        enc = [tok.encode(t, add_special_tokens=True) for t in TEXTS]
        differ += _ours(model, tok, enc, "seq2seq") != _ours(model, tok, enc, "seq2seq", **BEAM)
    assert differ >= 1


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_teacher_forced_logits_equal_transformers(saved, name):
    task = BUILDERS[name][1]
    model, tok = load_pretrained(saved[name], task=task)
    live = ~model._dead
    src = torch.tensor([tok.encode("w1 w2 w3", True), tok.encode("w4", True) + [PAD_ID] * 2])
    tgt = torch.tensor([[2, 5, 6, 7], [2, 8, 9, 10]])
    hf = model.hf_model
    with torch.no_grad():
        if task == "seq2seq":
            ours = model(src, tgt)
            ref = hf(input_ids=model._to_hf[src], attention_mask=(src != PAD_ID).long(),
                     decoder_input_ids=model._to_hf[tgt]).logits
        else:
            ours = model(tgt)
            ref = hf(input_ids=model._to_hf[tgt]).logits
    assert ours.shape[-1] == model.vocab_size
    torch.testing.assert_close(ours[..., live], ref[..., model._to_hf[live]], rtol=1e-5, atol=1e-5)
    # The softmax over our columns is the model's softmax over its vocabulary (aliases are dead).
    torch.testing.assert_close(ours.log_softmax(-1)[..., live], ref.log_softmax(-1)[..., model._to_hf[live]],
                               rtol=1e-5, atol=1e-5)


NO_DROPOUT = {
    "bart": {"dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0},
    "gpt2": {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0},
}


@pytest.mark.parametrize(("name", "prompted"), [("bart", True), ("gpt2", False), ("gpt2", True)])
def test_trainer_steps_equal_a_plain_loop_over_the_hf_model(saved, name, prompted):
    """Three optimizer steps (one batch per epoch, so the history holds each step's loss).

    GPT-2 with a source: rows are source then BOS then target, and the BOS after the source is a
    target, scored in the column of GPT-2's 50256 (its BOS is its EOS), as HF's loss scores it."""
    task = BUILDERS[name][1]
    batch = copy_batches(n_batches=1, batch=4, vocab=20, max_len=5)[0]
    if task == "causal-lm" and not prompted:
        batch = {"tgt": batch["tgt"], "index": batch["index"]}
    ours, _ = load_pretrained(saved[name], task=task, **NO_DROPOUT[name])
    config = TrainingConfig(epochs=3, seed=0, progress_bar=False,
                            optimizer=OptimizerConfig("AdamW", lr=1e-2, weight_decay=0.0))
    trainer = Seq2SeqTrainer(ours, config, [batch], seq2seq=Seq2SeqConfig(label_smoothing=0.0))
    trainer.print_report = False
    history = trainer.fit()

    plain, _ = load_pretrained(saved[name], task=task, **NO_DROPOUT[name])
    hf, to_hf = plain.hf_model, plain._to_hf
    hf.train()
    optimizer = torch.optim.AdamW(hf.parameters(), lr=1e-2, weight_decay=0.0)
    tgt = batch["tgt"]
    labels = torch.where(tgt == PAD_ID, -100, to_hf[tgt])
    if task == "causal-lm" and prompted:  # source (PAD removed) then target, loss on the target only
        rows = [torch.cat([s[s != PAD_ID], t[t != PAD_ID]]) for s, t in zip(batch["src"], tgt, strict=True)]
        n_src = [int((s != PAD_ID).sum()) for s in batch["src"]]
        tgt = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=PAD_ID)
        labels = torch.where(tgt == PAD_ID, -100, to_hf[tgt])
        for i, n in enumerate(n_src):
            labels[i, :n] = -100
    losses = []
    for _ in range(3):
        if task == "seq2seq":
            src = batch["src"]
            out = hf(input_ids=to_hf[src], attention_mask=(src != PAD_ID).long(),
                     decoder_input_ids=to_hf[tgt[:, :-1]], labels=labels[:, 1:].contiguous())
        else:
            out = hf(input_ids=to_hf[tgt], attention_mask=(tgt != PAD_ID).long(), labels=labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(out.loss.item())
    assert history["train_metrics"]["loss"] == pytest.approx(losses, rel=1e-5)
    assert losses[2] < losses[0]  # the steps trained the model


WORKER = Path(__file__).parent / "scripts" / "hf_resume_worker.py"


def _worker(*args):
    return subprocess.run([sys.executable, str(WORKER), *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.slow  # three fresh interpreters importing transformers: ~30 s on a loaded core
@pytest.mark.parametrize(("name", "lora"), [("bart", None), ("gpt2", None), ("bart", "q_proj,v_proj")])
def test_sigkill_then_resume_is_bit_identical(saved, name, lora, tmp_path):
    task = BUILDERS[name][1]
    extra = ["--lora", lora] if lora else []
    plain = _worker(saved[name], task, tmp_path / "plain", *extra)
    assert plain.returncode == 0, plain.stderr
    killed = _worker(saved[name], task, tmp_path / "killed", "--kill-at-step", 5, *extra)
    assert killed.returncode == -9, killed.stderr
    resumed = _worker(saved[name], task, tmp_path / "killed", "--resume", *extra)
    assert resumed.returncode == 0, resumed.stderr
    a = torch.load(tmp_path / "plain" / "final.pt")
    b = torch.load(tmp_path / "killed" / "final.pt")
    assert a.keys() == b.keys()
    assert all("lora_" in k for k in a) if lora else len(a) > 10  # LoRA runs: the adapters only
    for key in a:
        assert torch.equal(a[key], b[key]), key
    start, _ = load_pretrained(saved[name], task=task)
    if not lora:
        assert any(not torch.equal(v, a[k]) for k, v in start.state_dict().items())  # training moved weights
    else:
        assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in a.items() if "lora_B" in k)


@pytest.mark.parametrize("name", ["bart", "llama"])
def test_save_pretrained_writes_what_transformers_loads(saved, name, tmp_path):
    task = BUILDERS[name][1]
    model, tok = load_pretrained(saved[name], task=task)
    with torch.no_grad():
        next(model.parameters()).add_(0.5)  # a fine-tuned model, not the file it came from
    out = save_pretrained(model, tmp_path / "out", tokenizer=tok)
    auto = transformers.AutoModelForSeq2SeqLM if task == "seq2seq" else transformers.AutoModelForCausalLM
    reloaded = auto.from_pretrained(str(out))
    for (key, a), b in zip(model.hf_model.state_dict().items(), reloaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), key
    again, tok2 = load_pretrained(out, task=task)
    assert tok2.encode("w1 w2 w3") == tok.encode("w1 w2 w3")


def test_tokenizer_maps_special_ids_and_round_trips(saved):
    model, tok = load_pretrained(saved["bart"], task="seq2seq")
    ids = tok.encode("w1 w2 w3", add_special_tokens=True)
    assert ids[-1] == EOS_ID  # BART's </s> is our EOS
    assert tok.hf_ids(ids)[0] == 0 and tok.hf_ids(ids)[-1] == 2  # <s> ... </s> in BART's ids
    assert tok.decode([2, *tok.encode("w1 w2 w3"), EOS_ID, 7]) == "w1 w2 w3"
    assert tok.vocab_size == model.vocab_size
    gpt_model, gpt_tok = load_pretrained(saved["gpt2"], task="causal-lm")
    assert gpt_model.id_map.special.as_dict() == {"pad": 23, "unk": 23, "bos": 23, "eos": 23}
    assert gpt_model._dead.tolist()[:4] == [True, True, True, False]  # EOS keeps 50256's column


def test_classification_model_logits_equal_transformers(tmp_path):
    path = H.tiny_gpt2(tmp_path / "cls", num_labels=3)
    model, tok = load_pretrained(path, task="classification")
    tokens = torch.tensor([tok.encode("w1 w2 w3"), tok.encode("w4") + [PAD_ID] * 2])
    with torch.no_grad():
        ours = model(tokens)
        ref = model.hf_model(input_ids=model._to_hf[tokens], attention_mask=(tokens != PAD_ID).long()).logits
    assert ours.shape == (2, 3) and model.num_labels == 3
    torch.testing.assert_close(ours, ref)


# ---------------------------------------------------------------- bad input


def test_directory_without_config_json_is_a_named_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PretrainedError, match="has no config.json"):
        load_pretrained(tmp_path / "empty")


def test_unsupported_architecture_lists_the_supported_ones(saved, tmp_path):
    broken = tmp_path / "weird"
    shutil.copytree(saved["bart"], broken)
    config = json.loads((broken / "config.json").read_text())
    config["model_type"] = "reformer"
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitectureError, match="'reformer' is not supported.*bart, marian, t5"):
        load_pretrained(broken, task="seq2seq")
    with pytest.raises(UnsupportedArchitectureError, match="supported: gpt2, llama"):
        load_pretrained(saved["bart"], task="causal-lm")


def test_tokenizer_whose_special_tokens_cannot_be_mapped(saved, tmp_path):
    broken = tmp_path / "tok"
    shutil.copytree(saved["bart"], broken)
    H.write_json(broken / "tokenizer_config.json", {"eos_token": "<end>"})
    with pytest.raises(SpecialTokenError, match="eos_token '<end>' is not in"):
        load_pretrained(broken)
    H.write_json(broken / "tokenizer_config.json", {"eos_token": "<s>"})
    with pytest.raises(SpecialTokenError, match="eos_token '<s>' is id 0 but the model's eos_token_id is 2"):
        load_pretrained(broken)


def test_config_without_eos_is_a_named_error(saved, tmp_path):
    broken = tmp_path / "noeos"
    shutil.copytree(saved["llama"], broken)
    for name in ("config.json", "generation_config.json"):
        data = json.loads((broken / name).read_text())
        data["eos_token_id"] = None
        (broken / name).write_text(json.dumps(data))
    with pytest.raises(SpecialTokenError, match="no eos_token_id"):
        load_pretrained(broken, task="causal-lm")


def test_import_treadmill_does_not_import_transformers():
    code = "import sys, treadmill, treadmill.hf; assert 'transformers' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_stream_sampling_and_attention_work_on_a_loaded_model(saved):
    from treadmill.decoding.stream import stream

    model, tok = load_pretrained(saved["bart"], task="seq2seq", attn_implementation="eager")
    src = [tok.encode("w1 w2 w3", True)]
    greedy = generate(model, src=src, max_len=8, min_len=2, return_attention=True)
    assert list(stream(model, src=src, max_len=8, min_len=2)) == greedy.sequences[0]
    attention = greedy.attention[0]  # (out_len, src_len): each row a distribution over the source
    torch.testing.assert_close(attention.sum(-1), torch.ones(attention.size(0)))
    a = generate(model, src=src, strategy="sample", seed=1, max_len=8).tokens
    assert torch.equal(a, generate(model, src=src, strategy="sample", seed=1, max_len=8).tokens)
