"""The language_model objective: next-token loss, bits per char, step-based validation, exact resume."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from treadmill import Trainer, TrainingConfig
from treadmill.callbacks import Callback
from treadmill.data.tokenizers import ByteLevelBPETokenizer, CharTokenizer
from treadmill.lm import TokenFileDataset, token_file_loader, write_token_files
from treadmill.lm.trainer import LanguageModelTrainer
from treadmill.models.gpt import GPT, GPTConfig
from treadmill.validation import ConfigError

TEXT = ("Now is the winter of our discontent\nMade glorious summer by this sun of York;\n"
        "And all the clouds that lour'd upon our house\nIn the deep bosom of the ocean buried.\n") * 12


def _model(vocab_size, max_len=16, seed=0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, d_model=16, n_heads=2, n_layers=1, d_ff=32, max_len=max_len, dropout=0.0))


def _files(tmp_path, tokenizer):
    tokenizer = tokenizer.fit([TEXT])
    write_token_files(tmp_path, {"train": TEXT, "valid": TEXT[:400]}, tokenizer)
    return tokenizer


def _config(**kwargs):
    return TrainingConfig(device="cpu", progress_bar=False, seed=0, check_embedding_inputs=False, **kwargs)


@pytest.mark.parametrize("tokenizer", [CharTokenizer(), ByteLevelBPETokenizer(vocab_size=300)], ids=["char", "bpe"])
def test_bits_per_char_equals_a_direct_computation(tmp_path, tokenizer):
    tokenizer = _files(tmp_path, tokenizer)
    data = TokenFileDataset(tmp_path / "valid.bin", block_size=8)
    model = _model(tokenizer.vocab_size)
    metrics = LanguageModelTrainer(model, _config()).evaluate(token_file_loader(data, batch_size=5))
    # Directly: every non-overlapping window's next-token NLL, summed, over the characters covered.
    ids = torch.from_numpy(np.fromfile(tmp_path / "valid.bin", dtype=np.uint16).astype(np.int64))
    nats, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, (len(ids) - 1) // 8 * 8, 8):
            window = ids[start : start + 9]
            nats += F.cross_entropy(model(window[None, :-1])[0], window[1:], reduction="sum").item()
            tokens += 8
    chars = tokens * len(TEXT[:400]) / len(ids)  # the characters those tokens cover
    assert metrics["loss"] == pytest.approx(nats / tokens, rel=1e-5)
    assert metrics["perplexity"] == pytest.approx(math.exp(nats / tokens), rel=1e-5)
    assert metrics["bits_per_char"] == pytest.approx(nats / chars / math.log(2), rel=1e-5)


class _Record(Callback):
    def __init__(self):
        self.validated_at, self.windows = [], []

    def on_validation_end(self, trainer, metrics):
        self.validated_at.append(trainer.global_step)

    def on_batch_start(self, trainer, batch, batch_idx):
        if isinstance(batch, dict):
            self.windows.append(batch["tokens"][:, 0].tolist())


def test_validation_every_n_steps_runs_at_those_steps_and_at_the_end():
    data = TensorDataset(torch.randn(50, 3), torch.randn(50, 1))
    record = _Record()
    trainer = Trainer(torch.nn.Linear(3, 1), _config(epochs=2, validation_every_n_steps=3), DataLoader(data, batch_size=10),
                      DataLoader(data, batch_size=25), loss_fn=torch.nn.MSELoss(), callbacks=[record])
    history = trainer.fit()
    assert record.validated_at == [3, 6, 9, 10]  # 5 steps per epoch: 3, 6, 9 mid-epoch; 10 ends the run
    assert history["step_validations"]["step"] == [3, 6, 9] and len(history["step_validations"]["val_loss"]) == 3
    assert history["val_epochs"] == [2] and len(history["train_metrics"]["loss"]) == 2


def test_lm_epochs_are_validation_periods_and_max_steps_ends_the_run(tmp_path):
    from treadmill.cli.config import load_run_config
    from treadmill.cli.lm import lm_loaders, lm_training

    tokenizer = _files(tmp_path, CharTokenizer())
    (tmp_path / "t.txt").write_text(TEXT)
    (tmp_path / "c.yaml").write_text(
        f"task: {{name: lm-files, options: {{train: {tmp_path / 't.txt'}, block_size: 8, cache_dir: {tmp_path / 'c'}}}}}\n"
        "model: {name: gpt, d_model: 16, n_heads: 2, n_layers: 1, d_ff: 32, dropout: 0.0}\n"
        "data: {batch_size: 4, eval_batch_size: 8}\n"
        "training: {max_steps: 10, validation_every_n_steps: 4, progress_bar: false}\n"
        "evaluation: {max_batches: 2}\n")
    config = load_run_config(str(tmp_path / "c.yaml"), [])
    from treadmill.cli.build import build_task

    task = build_task(config)
    loaders = lm_loaders(config, task, ("train", "valid", "test"))
    assert len(loaders["train"]) == 4 and len(loaders["valid"]) == 2
    assert len(loaders["test"].sampler) == (task.splits["test"].n_tokens - 1) // 8
    training = lm_training(config, task, config.training)
    assert training.epochs == 3
    record = _Record()
    trainer = LanguageModelTrainer(_model(task.tgt_tokenizer.vocab_size, max_len=8), _config(
        epochs=training.epochs, max_steps=10, validation_every_n_steps=4), loaders["train"], loaders["valid"], callbacks=[record])
    history = trainer.fit()
    assert record.validated_at == [4, 8, 10] and history["val_epochs"] == [1, 2, 3]
    assert set(history["val_metrics"]) == {"loss", "perplexity", "bits_per_char"}
    assert tokenizer.vocab_size == task.tgt_tokenizer.vocab_size


def _lm_run(tmp_path, vocab_size, max_steps, resume=None, record=None):
    data = TokenFileDataset(tmp_path / "train.bin", block_size=8)
    loader = token_file_loader(data, batch_size=4, windows="random", num_samples=20, seed=3)  # 5 steps per epoch
    trainer = LanguageModelTrainer(_model(vocab_size, max_len=8), _config(epochs=3, max_steps=max_steps,
                                   checkpoint_dir=str(tmp_path / "ck")), loader, callbacks=[record])
    trainer.fit(resume_from=resume)
    return trainer


def test_random_windows_resume_exactly_mid_epoch(tmp_path):
    vocab_size = _files(tmp_path, CharTokenizer()).vocab_size
    whole, first, second = _Record(), _Record(), _Record()
    _copy(tmp_path, "a")
    _copy(tmp_path, "b")
    reference = _lm_run(tmp_path / "a", vocab_size, 15, record=whole)
    _lm_run(tmp_path / "b", vocab_size, 7, record=first)  # stops inside epoch 2, last.pt keeps the position
    with pytest.warns(UserWarning, match="max_steps: 7 -> 15"):
        resumed = _lm_run(tmp_path / "b", vocab_size, 15, resume="last", record=second)
    assert len(whole.windows) == 15 and first.windows + second.windows == whole.windows  # the window order continues
    for a, b in zip(reference.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


def _copy(tmp_path, name):
    import shutil

    (tmp_path / name).mkdir()
    for file in ("train.bin", "valid.bin", "meta.json"):
        shutil.copy(tmp_path / file, tmp_path / name / file)


def test_a_block_size_beyond_the_models_context_is_refused(tmp_path):
    vocab_size = _files(tmp_path, CharTokenizer()).vocab_size
    loader = token_file_loader(TokenFileDataset(tmp_path / "train.bin", block_size=32), batch_size=2)
    with pytest.raises(ConfigError, match="block_size=32 is larger than the model's max_len=16"):
        LanguageModelTrainer(_model(vocab_size, max_len=16), _config(), loader)
