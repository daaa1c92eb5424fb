"""Seed 000's question, measured: why did teacher forcing give 100% and free-running 0%?

Trains sequence reversal several ways and prints one table row per method: teacher-forced token
accuracy and sequence accuracy, free-running (greedy) exact match on 1,000 unseen test sequences,
and the exposure gap. The numbers in docs/exposure_bias.md come from this script.

    python examples/exposure_bias_study.py                 # every variant (about 20 minutes)
    python examples/exposure_bias_study.py tf no-causal    # some of them
"""

from __future__ import annotations

import sys
from pathlib import Path

from torch import Tensor

from treadmill.cli.build import build_model
from treadmill.cli.config import RunConfig, load_run_config
from treadmill.cli.train import train_run
from treadmill.models import TransformerSeq2Seq

EXAMPLES = Path(__file__).parent


class NoCausalMask(TransformerSeq2Seq):
    """The bug seed 000's symptoms point to: the decoder sees the whole target while training.

    Teacher-forced accuracy reaches ~100% by copying the next input token; decoding (which can
    only ever see the past) then has nothing to copy from.
    """

    def forward(self, src: Tensor, tgt_in: Tensor, src_padding_mask: Tensor | None = None,
                tgt_padding_mask: Tensor | None = None) -> Tensor:
        memory = self.encode(src, src_padding_mask)
        x = self._embed(tgt_in, self.tgt_embedding, self.tgt_positions, 0)
        hidden = self.decoder(
            x, memory["outputs"], memory_padding_mask=memory["padding_mask"], is_causal=False
        ).hidden
        return self.output_proj(hidden)


VARIANTS = {
    "tf": ("Transformer, teacher forcing (examples/reverse.yaml)", "reverse.yaml", []),
    "no-causal": ("Transformer, teacher forcing, decoder without causal mask (the bug)", "reverse.yaml", []),
    "scheduled": ("Transformer, scheduled sampling (inverse sigmoid, k=300)", "reverse.yaml",
                  ["seq2seq.scheduled_sampling={kind: inverse_sigmoid, k: 300}"]),
    "rnn": ("RNN (GRU) + Luong attention, teacher forcing (examples/reverse_rnn.yaml)", "reverse_rnn.yaml", []),
    "short": ("Transformer, teacher forcing, 2 epochs only", "reverse.yaml", ["training.epochs=2"]),
    "short+tf": ("... + 200 more steps of teacher forcing (lr 1e-4; the control)", "reverse.yaml",
                 ["training.epochs=2", "sequence_level.enabled=true", "sequence_level.method=mle",
                  "sequence_level.max_steps=200", "sequence_level.lr=1e-4"]),
    "short+mrt": ("... + 200 steps of minimum risk training (4 samples, exact-match reward, lr 1e-4)", "reverse.yaml",
                  ["training.epochs=2", "sequence_level.enabled=true", "sequence_level.method=mrt",
                   "sequence_level.n_candidates=4", "sequence_level.max_steps=200", "sequence_level.lr=1e-4"]),
}


def run_variant(key: str, out: Path) -> dict:
    """Train one variant and return its test metrics."""
    _, config_name, overrides = VARIANTS[key]
    config = load_run_config(EXAMPLES / config_name, overrides)
    summary = train_run(config, out / key, model_fn=build_leaky if key == "no-causal" else build_model)
    return summary["test"]


def build_leaky(config: RunConfig) -> NoCausalMask:
    """The run's model with the same initial weights, its decoder's causal mask removed."""
    model = build_model(config)
    leaky = NoCausalMask(model.config)
    leaky.load_state_dict(model.state_dict())
    return leaky


def main() -> None:
    keys = sys.argv[1:] or list(VARIANTS)
    out = Path("runs/exposure_bias")
    rows = []
    for key in keys:
        test = run_variant(key, out)
        rows.append(
            f"| {VARIANTS[key][0]} | {100 * test['token_accuracy']:.2f} | {100 * test['sequence_accuracy']:.1f} | "
            f"{100 * test['exact_match']:.1f} | {100 * (test['token_accuracy'] - test['gen_token_accuracy']):.2f} |"
        )
        print("\n".join(["| method | TF token acc % | TF sequence acc % | free-running exact match % | gap (points) |",
                         "|---|---|---|---|---|", *rows]), flush=True)


if __name__ == "__main__":
    main()
