"""treadmill serve: the pages' answers through gradio_client, bad input as messages, exit 2 on bad setups."""

import contextlib
import io
import socket
from pathlib import Path

import pytest
from serve_runs import GPT, SEQ2SEQ, free_port, train_run

from treadmill.cli import main
from treadmill.cli.generate import generate_lines
from treadmill.cli.run_dir import load_run
from treadmill.cli.serve import servable_from_run
from treadmill.serve import Servable, input_problem

LONG = "a1 " * 7  # seven tokens

gradio = pytest.importorskip("gradio")  # the demo extra; the Makefile installs it
gradio_client = pytest.importorskip("gradio_client")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    return {"seq2seq": train_run(root, SEQ2SEQ, "s2s"), "gpt": train_run(root, GPT, "gpt")}


@contextlib.contextmanager
def served(servable: Servable):
    from treadmill.serve.app import build_app

    port = free_port()
    app = build_app(servable)
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield app, gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        app.close()


def test_input_problems_name_what_is_wrong(runs):
    servable = servable_from_run(load_run(runs["seq2seq"]), max_input_tokens=6)
    assert input_problem(servable, "a1 a2 a3") is None
    assert "empty" in input_problem(servable, "  ")
    assert "7 tokens long" in input_problem(servable, LONG) and "at most 6" in input_problem(servable, LONG)
    assert "'b7'" in input_problem(servable, "a1 b7") and "vocabulary" in input_problem(servable, "a1 b7")


def test_seq2seq_page_answers_as_generate_and_keeps_serving_after_bad_input(runs):
    servable = servable_from_run(load_run(runs["seq2seq"]), max_input_tokens=6)
    assert servable.kind == "seq2seq" and servable.generation["strategy"] == "beam"
    expected = generate_lines(runs["seq2seq"], ["a1 a2 a3 a4", "a4 a3 a1"], [])
    n_best_lines = generate_lines(runs["seq2seq"], ["a1 a2 a3 a4"], ["num_return_sequences=3"])
    with served(servable) as (_, client):
        for bad, message in (("", "empty"), (LONG, "at most 6"), ("a1 b7", "vocabulary")):
            status, best, table, _ = client.predict(bad, "beam", 3, 3, 1.0, 0, 1.0, api_name="/decode")
            assert message in status and best == ""
        answers = [client.predict(text, "beam", 3, 3, 1.0, 0, 1.0, api_name="/decode") for text in ("a1 a2 a3 a4", "a4 a3 a1")]
        greedy = client.predict("a1 a2 a3 a4", "greedy", 3, 3, 1.0, 0, 1.0, api_name="/decode")
        # six users at once: two decode, the others wait in the queue; every one gets its answer
        jobs = [client.submit(text, "beam", 3, 1, 1.0, 0, 1.0, api_name="/decode")
                for text in ("a1 a2 a3 a4", "a4 a3 a1") * 3]
        concurrent = [job.result(timeout=120)[1] for job in jobs]
    assert [best for _, best, _, _ in answers] == expected
    assert concurrent == expected * 3
    rows = answers[0][2]["data"]
    # the n-best table is `generate --set num_return_sequences=3`: rank, score, hypothesis
    assert [f"a1 a2 a3 a4\t{rank}\t{score:.4f}\t{hyp}" for rank, score, hyp in rows] == n_best_lines
    assert answers[0][3] is not None  # the attention plot of the best hypothesis
    assert greedy[1] == generate_lines(runs["seq2seq"], ["a1 a2 a3 a4"], ["strategy=greedy"])[0]
    assert len(greedy[2]["data"]) == 1


def test_lm_page_streams_the_continuation_token_by_token(runs):
    servable = servable_from_run(load_run(runs["gpt"]))
    assert servable.kind == "lm"
    servable.generation.update(min_len=6)  # at least six tokens, so the stream has steps to show
    with served(servable) as (_, client):
        job = client.submit("a1 a2 a3", "greedy", 8, -1, 1.0, 0, 1.0, api_name="/generate")
        final = job.result()
        steps = [output for _, output in job.outputs()]
        bad = client.predict("", "greedy", 8, -1, 1.0, 0, 1.0, api_name="/generate")
    assert final[0] == "Done."
    texts = [text for text in steps if text]
    # each update grows the text by a token, ending in the whole continuation
    assert len(set(texts)) >= 6 and texts[-1] == final[1]
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:], strict=False))
    assert "empty" in bad[0]


def test_forecast_page_plots_history_and_forecast(tmp_path):
    example = Path(__file__).parents[1] / "examples" / "forecast_sunspots.yaml"
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["train", str(example), "--run-dir", str(tmp_path / "fc"), "training.epochs=2",
                     "training.progress_bar=false"]) == 0
    from treadmill.serve.forecast_page import forecast_figure

    servable = servable_from_run(load_run(tmp_path / "fc", task=True))
    assert servable.kind == "forecast" and len(servable.forecast_windows) >= 1
    figure, summary = forecast_figure(servable, 0)
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels == ["history", "actual", "forecast"] and "MAE" in summary
    with pytest.raises(ValueError, match="does not exist"):
        forecast_figure(servable, len(servable.forecast_windows))


def _serve(capsys, *args):
    code = main(["serve", *map(str, args)])
    return code, capsys.readouterr().err


def test_serve_exits_2_naming_a_missing_file_or_a_busy_port(runs, tmp_path, capsys):
    code, err = _serve(capsys, tmp_path / "nothing", "--port", free_port())
    assert code == 2 and "no config.yaml" in err
    (runs["seq2seq"] / "checkpoints").rename(runs["seq2seq"] / "moved")
    try:
        code, err = _serve(capsys, runs["seq2seq"], "--port", free_port())
        assert code == 2 and "best.safetensors or last.pt" in err
    finally:
        (runs["seq2seq"] / "moved").rename(runs["seq2seq"] / "checkpoints")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, err = _serve(capsys, runs["seq2seq"], "--port", port)
    assert code == 2 and f"127.0.0.1:{port}" in err and "in use" in err
