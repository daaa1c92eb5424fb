"""treadmill export: int8 / fp16 / onnx beside the run, sizes recorded, and eval / generate on each."""

import contextlib
import csv
import io
import json

import pytest
import torch
from serve_runs import GPT, SEQ2SEQ, train_run

from treadmill.cli import main
from treadmill.cli.generate import generate_lines
from treadmill.cli.run_dir import load_run
from treadmill.decoding import generate

pytest.importorskip("onnxruntime")  # the export extra; the Makefile installs it


def _cli(capsys, *args):
    code = main([*map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("export"), SEQ2SEQ, "s2s")


@pytest.fixture(scope="module")
def sources(run_dir):
    with open(run_dir / "predictions.tsv") as handle:
        return [row["source"] for row in csv.DictReader(handle, delimiter="\t")]


def test_int8_and_fp16_exports_record_their_size_and_decode(run_dir, sources, capsys):
    for fmt in ("int8", "fp16"):
        code, out, err = _cli(capsys, "export", run_dir, "--format", fmt)
        assert code == 0, err
        record = json.loads((run_dir / "export" / fmt / "export.json").read_text())
        assert record["format"] == fmt and record["size_bytes"] == sum(record["files"].values())
        assert record["files"] == {path.name: path.stat().st_size for path in (run_dir / "export" / fmt).iterdir()
                                   if path.name != "export.json"}
        assert f"Wrote {run_dir / 'export' / fmt}" in out
    float_lines = generate_lines(run_dir, sources, [])
    for fmt in ("int8", "fp16"):
        lines = generate_lines(run_dir, sources, [], export=fmt)
        assert len(lines) == len(sources)
        # a 16-wide model barely trained: small weight changes may flip a few near-ties, not most
        assert sum(a == b for a, b in zip(lines, float_lines, strict=True)) >= 0.8 * len(sources)
    code, out, err = _cli(capsys, "eval", run_dir, "--export", "int8")
    assert code == 0, err
    assert 0.0 <= json.loads(out.splitlines()[-1])["exact_match"] <= 1.0
    assert load_run(run_dir, export="int8").model.decoder.blocks[0].self_attn.in_proj.__class__.__name__ == "Linear"
    assert type(load_run(run_dir, export="int8").model.output_proj).__module__.startswith("torch.ao.nn.quantized")


def test_onnxruntime_backend_gives_eager_outputs(run_dir, sources, capsys):
    code, out, err = _cli(capsys, "export", run_dir, "--format", "onnx")
    assert code == 0, err
    record = json.loads((run_dir / "export" / "onnx" / "export.json").read_text())
    assert sorted(record["files"]) == ["decoder_first.onnx", "decoder_step.onnx", "encoder.onnx"]
    for settings in (["strategy=greedy"], ["strategy=beam", "beam_size=3"]):
        eager = generate_lines(run_dir, sources, settings)
        code, out, err = _cli(capsys, "generate", run_dir, *sources, "--backend", "onnxruntime",
                              *(item for s in settings for item in ("--set", s)))
        assert code == 0, err
        assert out.splitlines() == eager
    # same tokens and the same scores, step by step
    torch_model, ort_model = load_run(run_dir).model, load_run(run_dir, export="onnx").model
    src = torch.tensor([[4, 5, 6, 7, 3], [6, 5, 3, 0, 0]])
    a, b = (generate(m, src, max_len=8, return_scores=True) for m in (torch_model, ort_model))
    assert a.sequences == b.sequences
    assert torch.allclose(a.scores, b.scores, atol=1e-4)


def test_onnx_int8_export_quantizes_the_weight_products_and_decodes(run_dir, sources, capsys):
    import onnx

    code, out, err = _cli(capsys, "export", run_dir, "--format", "onnx-int8")
    assert code == 0, err
    directory = run_dir / "export" / "onnx-int8"
    record = json.loads((directory / "export.json").read_text())
    assert sorted(record["files"]) == ["decoder_first.onnx", "decoder_step.onnx", "encoder.onnx"]
    assert not [p for p in directory.iterdir() if p.name.startswith("onnx-float-")]  # scratch removed
    for name in record["files"]:
        ops = {node.op_type for node in onnx.load(directory / name).graph.node}
        # weights in int8, activations quantized per call: the dynamic-quantization pattern
        assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops, (name, sorted(ops))
    float_record = json.loads((run_dir / "export" / "onnx" / "export.json").read_text()) if (
        run_dir / "export" / "onnx" / "export.json").is_file() else None
    if float_record is not None:
        assert record["size_bytes"] < float_record["size_bytes"]
    float_lines = generate_lines(run_dir, sources, [])
    code, out, err = _cli(capsys, "generate", run_dir, *sources, "--backend", "onnxruntime", "--export", "onnx-int8")
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == len(sources)
    assert sum(a == b for a, b in zip(lines, float_lines, strict=True)) >= 0.8 * len(sources)
    assert lines == generate_lines(run_dir, sources, [], export="onnx-int8")
    with pytest.raises(SystemExit) as exit_info:  # eval scores a loss, which the onnx graphs cannot
        _cli(capsys, "eval", run_dir, "--export", "onnx-int8")
    assert exit_info.value.code == 2 and "invalid choice: 'onnx-int8'" in capsys.readouterr().err


def test_serve_pages_decode_with_an_export(run_dir, sources):
    """`serve --export FORMAT` builds its page over the exported model: the answers of `generate --export`."""
    from treadmill.cli.serve import servable_from_run
    from treadmill.serve.seq2seq_page import decoding_options, n_best

    for fmt in ("int8", "onnx"):
        if not (run_dir / "export" / fmt / "export.json").is_file():  # when this test runs alone
            with contextlib.redirect_stdout(io.StringIO()):
                assert main(["export", str(run_dir), "--format", fmt]) == 0
        servable = servable_from_run(load_run(run_dir, export=fmt), export=fmt)
        assert servable.attention == (fmt != "onnx") and fmt in servable.title
        options = decoding_options(servable, "beam", 3, 1, 1.0, 0, 1.0)
        answers = [n_best(servable, text, options)[0][0][0] for text in sources[:5]]
        assert answers == generate_lines(run_dir, sources[:5], [], export=fmt)


def test_export_errors_name_the_problem(run_dir, tmp_path, capsys):
    code, _, err = _cli(capsys, "generate", run_dir, "a1", "--export", "int8", "--backend", "onnxruntime")
    assert code == 2 and "--backend onnxruntime runs the onnx export" in err
    gpt = train_run(tmp_path, GPT, "gpt")
    code, _, err = _cli(capsys, "export", gpt, "--format", "onnx")
    assert code == 2 and "TransformerSeq2Seq" in err
    code, _, err = _cli(capsys, "generate", gpt, "a1", "--export", "fp16")
    assert code == 2 and "holds no export" in err and "treadmill export" in err
    with contextlib.redirect_stderr(io.StringIO()):
        code, _, err = _cli(capsys, "export", gpt, "--format", "int8")
    assert code == 0
    assert generate_lines(gpt, ["a1 a2"], [], export="int8") == [generate_lines(gpt, ["a1 a2"], [], export="int8")[0]]
