"""LoRA through peft on our own models and on Hugging Face ones: only adapters train, checkpoints
hold the adapters, merged weights equal base + adapters, and bad requests are named errors."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("peft")

from copy_task import copy_batches  # noqa: E402

from treadmill import OptimizerConfig, TrainingConfig  # noqa: E402
from treadmill.hf._extra import MissingExtraError  # noqa: E402
from treadmill.models.registry import build_model  # noqa: E402
from treadmill.peft import LoraSettings, apply_lora, has_lora, merge_lora, parameter_counts  # noqa: E402
from treadmill.seq2seq.trainer import Seq2SeqConfig, Seq2SeqTrainer  # noqa: E402
from treadmill.validation import ConfigError  # noqa: E402

VOCAB = 20


def ours(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("transformer", {"src_vocab_size": VOCAB, "tgt_vocab_size": VOCAB, "d_model": 32,
                                       "n_heads": 2, "n_encoder_layers": 2, "n_decoder_layers": 2, "d_ff": 64,
                                       "dropout": 0.0})


def bart(tmp_path: Path):
    hf_models = pytest.importorskip("hf_models")
    pytest.importorskip("transformers").utils.logging.disable_progress_bar()
    from treadmill.hf import load_pretrained

    return load_pretrained(hf_models.tiny_bart(tmp_path / "bart"), task="seq2seq").model


def models(tmp_path):
    return {
        "ours": (ours(), ["in_proj", "out_proj", "w1", "w2"]),
        "bart": (bart(tmp_path), ["q_proj", "v_proj"]),
    }


def train(model, tmp_path, steps=3):
    batches = copy_batches(n_batches=steps, batch=8, vocab=VOCAB, max_len=5)
    config = TrainingConfig(epochs=1, seed=0, progress_bar=False, checkpoint_dir=str(tmp_path / "ckpt"),
                            optimizer=OptimizerConfig("AdamW", lr=1e-2))
    trainer = Seq2SeqTrainer(model, config, batches, seq2seq=Seq2SeqConfig(label_smoothing=0.1))
    trainer.print_report = False
    trainer.fit()
    return trainer


@pytest.mark.parametrize("name", ["ours", "bart"])
def test_only_adapter_parameters_change_during_training(tmp_path, name):
    model, targets = models(tmp_path)[name]
    apply_lora(model, r=4, alpha=8, target_modules=targets)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    train(model, tmp_path)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "training changed nothing"
    assert all("lora_" in n for n in changed), sorted(n for n in changed if "lora_" not in n)
    assert any("lora_B" in n for n in changed)  # B starts at zero: the adapters really learned
    trainable, total = parameter_counts(model)
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n)
    assert trainable / total <= 0.25


@pytest.mark.parametrize("name", ["ours", "bart"])
def test_checkpoint_holds_the_adapters_only_and_resumes_into_a_fresh_base(tmp_path, name):
    model, targets = models(tmp_path)[name]
    full_size = sum(t.numel() for t in model.state_dict().values())
    apply_lora(model, r=2, alpha=4, target_modules=targets)
    trainer = train(model, tmp_path)
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)["model"]
    assert state and all("lora_" in k for k in state)
    assert sum(t.numel() for t in state.values()) < 0.2 * full_size
    # base + adapters: a fresh model of the same base with the saved adapters computes the same
    fresh, _ = models(tmp_path / "again")[name]
    apply_lora(fresh, r=2, alpha=4, target_modules=targets)
    fresh.load_state_dict(state)
    src, tgt = torch.tensor([[5, 6, 7, 3]]), torch.tensor([[2, 5, 6]])
    model.eval(), fresh.eval()
    torch.testing.assert_close(fresh(src, tgt), trainer.model(src, tgt))


@pytest.mark.parametrize("name", ["ours", "bart"])
def test_merged_model_equals_base_plus_adapters(tmp_path, name):
    model, targets = models(tmp_path)[name]
    apply_lora(model, r=4, alpha=8, target_modules=targets)
    with torch.no_grad():  # adapters far from their zero start, so merging has something to add
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.3)
    model.eval()
    merged = merge_lora(model)
    assert not has_lora(merged) and has_lora(model)
    assert not any("lora_" in k for k in merged.state_dict())
    assert len(merged.state_dict()) > len(model.state_dict())  # every weight again
    src, tgt = torch.tensor([[5, 6, 7, 3], [8, 9, 3, 0]]), torch.tensor([[2, 5, 6], [2, 8, 0]])
    with torch.no_grad():
        adapted, plain = model(src, tgt), merged(src, tgt)
    torch.testing.assert_close(plain, adapted, rtol=1e-4, atol=1e-5)
    # and merging changed the weights: W + B A * alpha / r
    some = next(k for k in merged.state_dict() if k.endswith(targets[0] + ".weight"))
    base = some.replace(targets[0] + ".weight", targets[0] + ".base_layer.weight")
    base_weight = dict(model.named_parameters())[base]
    assert not torch.equal(merged.state_dict()[some], base_weight)


def test_cross_attention_in_proj_of_our_models_is_not_adapted():
    """Our attention reads that weight directly (two slices), which a LoRA wrapper would not see."""
    model = apply_lora(ours(), r=2, target_modules=["in_proj"])
    adapted = {n.rsplit(".lora_", 1)[0] for n, _ in model.named_parameters() if "lora_" in n}
    assert any("self_attn.in_proj" in n for n in adapted)
    assert not any("cross_attn" in n for n in adapted)


def test_target_modules_matching_nothing_list_the_module_names():
    with pytest.raises(ConfigError, match=r"\['q_proj'\] match no module of TransformerSeq2Seq.*in_proj, out_proj"):
        apply_lora(ours(), r=2, target_modules=["q_proj"])


def test_bad_settings_are_named_errors():
    with pytest.raises(ConfigError, match="model.lora.r=0"):
        LoraSettings(r=0, target_modules=("w1",))
    with pytest.raises(ConfigError, match="target_modules is empty"):
        LoraSettings(r=2)
    with pytest.raises(ConfigError, match="Unknown config key 'model.lora.rank'"):
        LoraSettings.from_dict({"rank": 2})


def test_lora_without_peft_installed_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` now raises ImportError
    with pytest.raises(MissingExtraError, match=r"pip install 'treadmill\[hf\]'"):
        apply_lora(ours(), r=2, target_modules=["w1"])
