"""Run configs: YAML + dotted overrides, unknown keys with suggestions, value errors naming fields."""

from pathlib import Path

import pytest

from treadmill.cli.config import (
    RunConfigError,
    load_run_config,
    parse_overrides,
    run_config_from_dict,
)


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


BASE = """
task: {name: reverse, options: {n_train: 100}}
model: {name: transformer, d_model: 32}
training:
  epochs: 2
  optimizer: {optimizer_class: AdamW, lr: 1.0e-3}
"""


def test_overrides_parse_yaml_values_into_nested_dicts():
    assert parse_overrides(
        ["model.d_model=256", "training.optimizer.lr=3e-4", "seq2seq.generation.strategy=beam"]
    ) == {
        "model": {"d_model": 256},
        "training": {"optimizer": {"lr": 3e-4}},
        "seq2seq": {"generation": {"strategy": "beam"}},
    }


def test_bad_override_syntax_is_explained():
    with pytest.raises(RunConfigError, match="dotted.key=value"):
        parse_overrides(["model.d_model"])


def test_overrides_apply_and_defaults_fill_in(tmp_path):
    config = load_run_config(
        write(tmp_path, BASE),
        ["model.d_model=64", "training.optimizer.lr=3e-4", "data.batch_size=16"],
    )
    assert config.model.fields["d_model"] == 64 and config.model.build_config().d_model == 64
    assert config.training.optimizer.lr == 3e-4
    assert config.data.batch_size == 16 and config.data.eval_batch_size == 256
    assert config.evaluation.splits == ["test"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "training.optimzer.lr=1",
            "Unknown config key 'training.optimzer'. Did you mean 'training.optimizer'?",
        ),
        ("model.d_modle=8", "Unknown config key 'model.d_modle'. Did you mean 'model.d_model'?"),
        ("data.batchsize=8", "Did you mean 'data.batch_size'?"),
        ("trainig.epochs=3", "Did you mean 'training'?"),
        ("training.optimizer.lrr=1", "Did you mean 'training.optimizer.lr'?"),
    ],
)
def test_unknown_keys_suggest_the_closest(tmp_path, override, message):
    with pytest.raises(RunConfigError) as info:
        load_run_config(write(tmp_path, BASE), [override])
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("training.epochs=0", "epochs"),
        ("training.optimizer.lr=-1", "lr"),
        ("training.gradient_accumulation_steps=0", "gradient_accumulation_steps"),
        ("seq2seq.label_smoothing=1.5", "label_smoothing"),
        ("model.name=transfomer", "Did you mean 'transformer'"),
        ("data.max_tokens=0", r"data\.max_tokens must be null or an integer >= 1, got 0"),
        ("data.batch_size=abc", r"data\.batch_size must be an integer >= 1, got 'abc'"),
        ("data.num_workers=-1", r"data\.num_workers"),
        ("evaluation.splits=[tset]", r"evaluation\.splits must be a list drawn from \['train', 'valid', 'test'\]"),
        ("evaluation.samples=-2", r"evaluation\.samples"),
        ("diagnostics.on_alarm=stpo", r"diagnostics\.on_alarm: .*'warn' or 'stop'"),
        ("diagnostics.enabled=maybe", r"diagnostics\.enabled must be true or false"),
        ("seed=1.5", r"seed must be an integer"),
        ("data=5", r"Config section 'data' must be a mapping"),
        ("task.options=3", r"task\.options must be a mapping"),
        # decoding options fail when the config loads, not after hours of training at the first decode
        ("evaluation.generation.beam_szie=5", r"evaluation\.generation: .*'beam_szie'.*Did you mean 'beam_size'"),
        ("seq2seq.generation.strategy=beem", r"seq2seq\.generation: .*strategy"),
        ("evaluation.generation.beam_size=0", r"evaluation\.generation: .*beam_size"),
        ("sequence_level.method=mrtt", r"sequence_level: .*method must be one of mrt, reinforce, grpo, consistency"),
        ("sequence_level.epochs=0", r"sequence_level\.epochs must be an integer >= 1"),
    ],
)
def test_invalid_values_name_the_field(tmp_path, override, field):
    with pytest.raises(RunConfigError, match=field):
        load_run_config(write(tmp_path, BASE), [override])


def test_missing_file_and_missing_task(tmp_path):
    with pytest.raises(RunConfigError, match="does not exist"):
        load_run_config(tmp_path / "nope.yaml")
    with pytest.raises(RunConfigError, match="needs a task"):
        load_run_config(write(tmp_path, "model: {name: transformer}\n"))


def test_pytorch_treadmill_aliases_work_in_yaml(tmp_path):
    config = load_run_config(
        write(tmp_path, BASE), ["training.grad_clip_norm=1.0", "training.validate_every=2"]
    )
    assert config.training.max_grad_norm == 1.0 and config.training.validation_frequency == 2


def test_evaluation_decoding_options_are_checked_as_merged_over_the_validation_ones(tmp_path):
    # temperature belongs to sampling; evaluation switches to beam search without clearing it
    config = BASE + "seq2seq: {generation: {strategy: sample, temperature: 0.7}}\n"
    assert load_run_config(write(tmp_path, config)).seq2seq.generation["temperature"] == 0.7
    with pytest.raises(RunConfigError, match=r"evaluation\.generation: .*temperature"):
        load_run_config(write(tmp_path, config), ["evaluation.generation.strategy=beam"])


@pytest.mark.parametrize("example", sorted(Path(__file__).parents[1].glob("examples/*.yaml")), ids=lambda p: p.name)
def test_every_example_config_validates(example):
    if _is_rows_file(example):  # a sweep's rows (--rows): each validated over the base config it names
        from treadmill.cli.sweep import _row_config, read_rows

        base = example.parent / _is_rows_file(example)
        assert all(_row_config(base, row, []).task.name for _, row in read_rows(example))
        return
    config = load_run_config(example)  # the model config is built too (placeholder vocabulary sizes)
    assert config.task.name and config.model.build_config() is not None
    # what config.yaml holds reads back to the same config
    assert run_config_from_dict(config.to_dict()).to_dict() == config.to_dict()


def _is_rows_file(path):
    """The base config a rows file (treadmill sweep --rows) names, or None for a run config."""
    from omegaconf import OmegaConf

    raw = OmegaConf.to_container(OmegaConf.load(path))
    return raw.get("config") if "rows" in raw else None


def test_an_old_model_field_name_that_disagrees_with_the_new_one_is_refused():
    examples = Path(__file__).parents[1] / "examples"
    config = load_run_config(examples / "reverse_rnn.yaml", ["model.n_layers=1"])
    assert config.model.build_config().n_layers == 1
    with pytest.raises(RunConfigError, match=r"model\.num_layers=2 and model\.n_layers=1"):
        load_run_config(examples / "reverse_rnn.yaml", ["model.num_layers=2"])
    old_only = run_config_from_dict({"task": {"name": "reverse"}, "model": {"name": "rnn", "num_layers": 2}})
    assert old_only.model.build_config().n_layers == 2  # run directories trained before the rename
