"""build_app(servable): the Gradio page for a run, chosen by its kind, with a request queue.

Every handler returns its problem as a message in the page (a Markdown line with id `status`)
instead of raising, so empty, over-long or out-of-vocabulary input never breaks the server. The
queue runs `concurrency` requests at once (the model is shared; decoding holds no state between
requests) and holds up to `max_queue` waiting users. Needs the `demo` extra (gradio).

Element ids, for browsers and tests: `input`, `submit`, `status`, and per page `best`, `nbest`,
`attention` (seq2seq), `output`, `stop` (lm), `window`, `plot` (forecast).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from treadmill.serve.servable import Servable

__all__ = ["build_app", "require_gradio"]

STRATEGIES = ("greedy", "beam", "sample")


def require_gradio() -> Any:
    """The gradio module, or an ImportError naming the extra to install."""
    try:
        import gradio
    except ImportError as err:
        raise ImportError(f"`treadmill serve` needs the demo extra: pip install 'treadmill[demo]' ({err})") from err
    return gradio


def build_app(servable: Servable, concurrency: int = 2, max_queue: int = 64) -> Any:
    """The gr.Blocks page for `servable` (not launched), its queue configured."""
    gr = require_gradio()
    with gr.Blocks(title=f"Treadmill: {servable.title}", analytics_enabled=False) as app:
        gr.Markdown(f"## {servable.title}")
        if servable.kind == "seq2seq":
            _seq2seq_page(gr, servable)
        elif servable.kind == "lm":
            _lm_page(gr, servable)
        else:
            _forecast_page(gr, servable)
    app.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    return app


def _problem(message: str) -> str:
    return f"**⚠ {message}**"


def _seq2seq_page(gr: Any, servable: Servable) -> None:
    from treadmill.serve.seq2seq_page import attention_picture, decoding_options, n_best

    gen = servable.generation
    strategy = gen.get("strategy", "greedy")
    with gr.Row():
        with gr.Column():
            text = gr.Textbox(label=f"Input (at most {servable.max_input_tokens} tokens)", elem_id="input", lines=1)
            with gr.Row():
                strategy_box = gr.Radio(list(STRATEGIES), value=strategy, label="decoding")
                beam = gr.Slider(1, 16, value=int(gen.get("beam_size", 5)), step=1, label="beam size")
                count = gr.Slider(1, 16, value=3 if strategy == "beam" else 1, step=1, label="hypotheses shown")
            with gr.Row():
                temperature = gr.Slider(0.05, 2.0, value=float(gen.get("temperature", 1.0)), label="temperature")
                top_k = gr.Slider(0, 100, value=int(gen.get("top_k") or 0), step=1, label="top-k (0: off)")
                top_p = gr.Slider(0.05, 1.0, value=float(gen.get("top_p", 1.0)), label="top-p")
            button = gr.Button("Decode", variant="primary", elem_id="submit")
            if servable.examples:
                gr.Examples([[e] for e in servable.examples], inputs=[text])
        with gr.Column():
            status = gr.Markdown("", elem_id="status")
            best = gr.Textbox(label="Best hypothesis", elem_id="best", interactive=False)
            table = gr.Dataframe(headers=["rank", "score", "hypothesis"], label="n best (log-probability scores)",
                                 elem_id="nbest", interactive=False)
            picture = gr.Plot(label="Attention of the best hypothesis", show_label=False, elem_id="attention")

    def decode(text_value: str, strategy_value: str, beam_value: float, count_value: float, temp: float,
               k: float, p: float) -> tuple[Any, ...]:
        options = decoding_options(servable, strategy_value, int(beam_value), int(count_value), temp, int(k), p)
        try:
            hypotheses, best_ids = n_best(servable, text_value or "", options)
        except ValueError as err:  # the input's problem, told in the page
            return _problem(str(err)), "", [], None
        rows = [[rank, round(score, 4), hyp] for rank, (hyp, score) in enumerate(hypotheses, start=1)]
        figure = None
        if servable.attention:
            try:
                figure = attention_picture(servable, text_value, best_ids)
            except ValueError:
                figure = None  # a model without attention weights: the answer still shows
        return f"Decoded with {strategy_value}.", hypotheses[0][0], rows, figure

    inputs = [text, strategy_box, beam, count, temperature, top_k, top_p]
    outputs = [status, best, table, picture]
    gr.on([button.click, text.submit], decode, inputs, outputs, api_name="decode")


def _lm_page(gr: Any, servable: Servable) -> None:
    from treadmill.serve.lm_page import sampling_options, stream_text

    gen = servable.generation
    with gr.Row():
        with gr.Column():
            prompt = gr.Textbox(label=f"Prompt (at most {servable.max_input_tokens} tokens)", elem_id="input", lines=3)
            with gr.Row():
                strategy_box = gr.Radio(["greedy", "sample"], value="sample" if gen.get("strategy") == "sample"
                                        else "greedy", label="decoding")
                length = gr.Slider(1, 1000, value=int(gen.get("max_len", 200)), step=1, label="max new tokens")
                seed = gr.Number(value=-1, precision=0, label="seed (-1: random)")
            with gr.Row():
                temperature = gr.Slider(0.05, 2.0, value=float(gen.get("temperature", 1.0)), label="temperature")
                top_k = gr.Slider(0, 100, value=int(gen.get("top_k") or 0), step=1, label="top-k (0: off)")
                top_p = gr.Slider(0.05, 1.0, value=float(gen.get("top_p", 1.0)), label="top-p")
            with gr.Row():
                button = gr.Button("Generate", variant="primary", elem_id="submit")
                stop = gr.Button("Stop", elem_id="stop")
        with gr.Column():
            status = gr.Markdown("", elem_id="status")
            output = gr.Textbox(label="Continuation (streamed)", elem_id="output", lines=8, interactive=False)

    def generate(prompt_value: str, strategy_value: str, length_value: float, seed_value: float | None, temp: float,
                 k: float, p: float) -> Iterator[tuple[str, str]]:
        options = sampling_options(servable, strategy_value, temp, int(k), p, int(length_value),
                                   None if seed_value is None else int(seed_value))
        text = ""
        try:
            for step, text in enumerate(stream_text(servable, prompt_value or "", options)):
                # The status is written once: a token message still in flight when Stop is pressed
                # must not overwrite "Stopped." with "Generating…".
                yield ("Generating…" if step == 0 else gr.skip()), text
        except ValueError as err:
            yield _problem(str(err)), text
            return
        yield "Done.", text

    event = button.click(generate, [prompt, strategy_box, length, seed, temperature, top_k, top_p], [status, output],
                         api_name="generate")
    stop.click(lambda: "Stopped.", None, [status], cancels=[event])


def _forecast_page(gr: Any, servable: Servable) -> None:
    from treadmill.serve.forecast_page import forecast_figure

    n = len(servable.forecast_windows) if servable.forecast_windows is not None else 0
    with gr.Row():
        window = gr.Slider(0, max(n - 1, 0), value=0, step=1, label=f"test window (0 to {max(n - 1, 0)})",
                           elem_id="window")
        button = gr.Button("Forecast", variant="primary", elem_id="submit")
    status = gr.Markdown("", elem_id="status")
    plot = gr.Plot(label="History and forecast", elem_id="plot")

    def forecast(index: float) -> tuple[str, Any]:
        try:
            figure, summary = forecast_figure(servable, int(index))
        except ValueError as err:
            return _problem(str(err)), None
        return summary, figure

    button.click(forecast, [window], [status, plot], api_name="forecast")
