"""The command line over a transformers checkpoint: `model.name: hf`, LoRA, export --merge-lora,
and the bad inputs that must end in one paragraph and exit code 2."""

from __future__ import annotations

import json
import random
import shutil
import sys

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

import hf_models as H  # noqa: E402

from treadmill.cli import main  # noqa: E402

transformers.utils.logging.disable_progress_bar()

RUN = """
task: {{name: files, options: {{train: {root}/train.tsv, valid: {root}/valid.tsv, test: {root}/test.tsv}}}}
model: {{name: hf, path: {root}/bart}}
data: {{batch_size: 16, eval_batch_size: 16}}
training: {{epochs: 2, progress_bar: false, optimizer: {{optimizer_class: AdamW, lr: 1.0e-2}}}}
seq2seq: {{generation: {{strategy: greedy, max_len: 8}}}}
evaluation: {{splits: [test]}}
diagnostics: {{enabled: false}}
"""
LORA = "model.lora={r: 2, alpha: 4, target_modules: [q_proj, v_proj]}"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("hfcli")
    H.tiny_bart(root / "bart")
    rng = random.Random(0)
    for split, n in (("train", 48), ("valid", 8), ("test", 8)):
        lines = []
        for _ in range(n):
            words = [f"w{rng.randint(0, 19)}" for _ in range(rng.randint(2, 4))]
            lines.append(" ".join(words) + "\t" + " ".join(reversed(words)))
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    config = root / "run.yaml"
    config.write_text(RUN.format(root=root))
    return root, config


def cli(capsys, *args):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def lora_run(setup, tmp_path_factory):
    root, config = setup
    run_dir = root / "lora"
    assert main(["train", str(config), LORA, "--run-dir", str(run_dir)]) == 0
    return run_dir


def test_train_generate_eval_with_a_checkpoint_directory(setup, capsys, tmp_path):
    root, config = setup
    code, out, err = cli(capsys, "train", config, "--run-dir", tmp_path / "run")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["model"] == "hf" and summary["parameters"] == summary["trainable_parameters"]
    saved = json.loads((tmp_path / "run" / "tokenizers" / "src.json").read_text())
    assert saved["kind"] == "hf" and saved["special"] == {"pad": 1, "unk": 3, "bos": 2, "eos": 2}
    code, out, err = cli(capsys, "eval", tmp_path / "run")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-6)
    code, out, err = cli(capsys, "generate", tmp_path / "run", "w1 w2 w3", "w4")
    assert code == 0, err
    assert out.count("\n") == 2  # one line per input
    assert all(w.startswith("w") for w in out.split())  # our ids decoded through tokenizer.json


def test_lora_run_prints_trainable_parameters_and_saves_adapters_only(setup, lora_run, capsys):
    summary = json.loads((lora_run / "summary.json").read_text())
    assert summary["trainable_parameters"] < 0.1 * summary["parameters"]
    from safetensors.torch import load_file

    best = load_file(str(lora_run / "checkpoints" / "best.safetensors"))
    assert best and all("lora_" in k for k in best)
    code, out, err = cli(capsys, "generate", lora_run, "w1 w2 w3")  # base from model.path + adapters
    assert code == 0, err


def test_export_merge_lora_writes_what_transformers_loads(setup, lora_run, capsys):
    code, out, err = cli(capsys, "export", lora_run, "--merge-lora")
    assert code == 0, err
    merged_dir = json.loads(out.strip().splitlines()[-1])["merged"]
    merged = transformers.AutoModelForSeq2SeqLM.from_pretrained(merged_dir)
    from treadmill.cli.run_dir import load_run

    run = load_run(lora_run)
    model, to_hf = run.model.eval(), run.model._to_hf
    src, tgt = torch.tensor([[6, 7, 8, 3]]), torch.tensor([[2, 6, 7]])
    with torch.no_grad():
        ours = model(src, tgt)
        theirs = merged(input_ids=to_hf[src], decoder_input_ids=to_hf[tgt]).logits
    live = ~model._dead
    torch.testing.assert_close(ours[..., live], theirs[..., to_hf[live]], rtol=1e-4, atol=1e-5)
    base = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(setup[0] / "bart"))
    assert not torch.equal(base.model.encoder.layers[0].self_attn.q_proj.weight,
                           merged.model.encoder.layers[0].self_attn.q_proj.weight)


def test_export_without_adapters_is_refused(setup, capsys, tmp_path):
    root, config = setup
    assert main(["train", str(config), "training.epochs=1", "--run-dir", str(tmp_path / "plain")]) == 0
    code, _, err = cli(capsys, "export", tmp_path / "plain", "--merge-lora")
    assert code == 2 and "trained without model.lora" in err


def _bad(root, tmp_path, change):
    broken = tmp_path / "broken"
    shutil.copytree(root / "bart", broken)
    change(broken)
    return broken


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: (d / "config.json").unlink(), "has no config.json"),
        (lambda d: (d / "config.json").write_text(json.dumps({**json.loads((d / "config.json").read_text()),
                                                              "model_type": "reformer"})),
         "model_type 'reformer' is not supported for generation; supported: bart, marian, t5, gpt2, llama"),
        (lambda d: H.write_json(d / "tokenizer_config.json", {"eos_token": "<end>"}),
         "eos_token '<end>' is not in"),
    ],
)
def test_bad_checkpoint_directories_exit_2_with_the_reason(setup, capsys, tmp_path, change, message):
    root, config = setup
    broken = _bad(root, tmp_path, change)
    for command in ("validate", "train"):
        args = [command, config, f"model.path={broken}"] + (["--run-dir", tmp_path / "r"] if command == "train" else [])
        code, _, err = cli(capsys, *args)
        if command == "validate" and "eos_token" in message:
            continue  # the tokenizer is read when the task is built, after validation
        assert code == 2, err
        assert message in err and "Traceback" not in err


def test_lora_target_modules_that_match_nothing_exit_2_listing_the_modules(setup, capsys, tmp_path):
    root, config = setup
    code, _, err = cli(capsys, "train", config, "model.lora={r: 2, target_modules: [query]}", "--run-dir", tmp_path / "r")
    assert code == 2
    assert "['query'] match no module" in err and "q_proj" in err and "fc1" in err


def test_lora_without_peft_exits_2_naming_the_extra(setup, capsys, tmp_path, monkeypatch):
    root, config = setup
    monkeypatch.setitem(sys.modules, "peft", None)
    code, _, err = cli(capsys, "train", config, LORA, "--run-dir", tmp_path / "r")
    assert code == 2 and "pip install 'treadmill[hf]'" in err
