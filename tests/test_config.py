"""TrainingConfig / OptimizerConfig / SchedulerConfig: fields, aliases and validation messages."""

import pytest
import torch

from treadmill import OptimizerConfig, SchedulerConfig, TrainingConfig
from treadmill.config import ConfigError
from treadmill.utils import resolve_device


def test_seed001_fields_are_accepted():
    config = TrainingConfig(
        epochs=100,
        device="auto",
        mixed_precision=False,
        gradient_accumulation_steps=2,
        max_grad_norm=1.0,
        validation_frequency=1,
        log_frequency=10,
        early_stopping_patience=15,
        early_stopping_min_delta=0.001,
        checkpoint_dir="./checkpoints/seq2seq",
        save_best_model=True,
        save_last_model=True,
        optimizer=OptimizerConfig(
            optimizer_class="AdamW", lr=0.001, weight_decay=0.01, params={"betas": (0.9, 0.98)}
        ),
    )
    assert config.gradient_accumulation_steps == 2 and config.optimizer.lr == 0.001


def test_pytorch_treadmill_aliases_map_to_fields_and_read_back():
    config = TrainingConfig(
        validate_every=3,
        print_every=7,
        grad_clip_norm=0.5,
        accumulate_grad_batches=4,
        progress_bar=False,
        scheduler=SchedulerConfig(scheduler_class="StepLR", params={"step_size": 2}),
    )
    assert config.validation_frequency == 3 and config.validate_every == 3
    assert config.log_frequency == 7 and config.print_every == 7
    assert config.max_grad_norm == 0.5 and config.grad_clip_norm == 0.5
    assert config.gradient_accumulation_steps == 4 and config.accumulate_grad_batches == 4
    assert config.progress_bar is False
    assert config.scheduler.interval == "epoch"


def test_alias_conflicting_with_field_is_rejected():
    with pytest.raises(ConfigError, match="validate_every"):
        TrainingConfig(validation_frequency=1, validate_every=2)


def test_unknown_field_suggests_closest():
    with pytest.raises(ConfigError, match="Did you mean 'max_grad_norm'"):
        TrainingConfig(max_grad_nrom=1.0)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"gradient_accumulation_steps": 0}, "gradient_accumulation_steps"),
        ({"accumulate_grad_batches": 0}, "gradient_accumulation_steps"),
        ({"epochs": 0}, "epochs"),
        ({"device": "tpu"}, "device"),
        ({"mixed_precision": "fp8"}, "mixed_precision"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"log_frequency": 0}, "log_frequency"),
        # strings (e.g. from a config written by hand) are refused by name, not with a TypeError
        ({"early_stopping_min_delta": "0.001"}, "early_stopping_min_delta"),
        ({"max_grad_norm": "1.0"}, "max_grad_norm"),
        ({"seed": "42"}, "seed"),
        ({"optimizer": {"weight_decay": "0.01"}}, "weight_decay"),
    ],
)
def test_invalid_training_values_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        TrainingConfig(**kwargs)


def test_unknown_device_lists_allowed_values():
    with pytest.raises(ConfigError, match="'auto', 'cpu', 'cuda'"):
        TrainingConfig(device="gpu")


def test_optimizer_validation():
    with pytest.raises(ConfigError, match="lr"):
        OptimizerConfig(lr=-1e-3)
    with pytest.raises(ConfigError, match="Did you mean 'AdamW'.*Allowed:.*SGD"):
        OptimizerConfig(optimizer_class="AdamWW")
    assert OptimizerConfig(optimizer_class=torch.optim.SGD).resolve_class() is torch.optim.SGD


def test_scheduler_validation_and_intervals():
    with pytest.raises(ConfigError, match="scheduler_class"):
        SchedulerConfig("warmup_cosinus")
    assert SchedulerConfig("warmup_cosine", params={"warmup_steps": 10}).interval == "step"
    assert SchedulerConfig("OneCycleLR", params={"max_lr": 0.1}).interval == "step"
    assert SchedulerConfig("CosineAnnealingLR").interval == "epoch"
    with pytest.raises(ConfigError, match="warmup_steps"):
        SchedulerConfig("warmup_linear", params={"warmup_steps": -1})


def test_dict_sub_configs_are_converted():
    config = TrainingConfig(
        optimizer={"lr": 0.1, "optimizer_class": "SGD"},
        scheduler={"scheduler_class": "warmup_linear"},
    )
    assert isinstance(config.optimizer, OptimizerConfig) and config.optimizer.lr == 0.1
    assert isinstance(config.scheduler, SchedulerConfig)


def test_precision_normalisation():
    assert TrainingConfig(mixed_precision=True).precision == "bf16"
    assert TrainingConfig(mixed_precision="fp16").precision == "fp16"
    assert TrainingConfig(mixed_precision=False).precision == "fp32"


def test_auto_device_is_cpu_without_accelerators(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_device_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


def test_to_dict_is_plain_data():
    class MySGD(torch.optim.SGD):
        pass

    data = TrainingConfig(optimizer=OptimizerConfig(optimizer_class=torch.optim.SGD)).to_dict()
    assert data["optimizer"]["optimizer_class"] == "SGD"  # torch's own: the name a config would use
    mine = TrainingConfig(optimizer=OptimizerConfig(optimizer_class=MySGD)).to_dict()
    assert mine["optimizer"]["optimizer_class"] == f"{__name__}.test_to_dict_is_plain_data.<locals>.MySGD"
    assert data["scheduler"] is None
