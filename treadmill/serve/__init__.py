"""Interactive demo pages for trained models (`treadmill serve`): Servable in, gradio Blocks out.

    servable = Servable(model, "seq2seq", "G2P", src_tokenizer=..., tgt_tokenizer=..., encode=...)
    build_app(servable).launch(server_name="127.0.0.1", server_port=7860)

`servable` holds no gradio; `app` imports it (the `demo` extra) only when a page is built.
"""

from treadmill.serve.servable import PAGE_KINDS, Servable, input_problem

__all__ = ["PAGE_KINDS", "Servable", "input_problem", "build_app"]


def build_app(servable: Servable, concurrency: int = 2, max_queue: int = 64):  # type: ignore[no-untyped-def]
    """The gradio page for `servable` (see treadmill.serve.app)."""
    from treadmill.serve.app import build_app as build

    return build(servable, concurrency, max_queue)
