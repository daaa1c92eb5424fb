"""Decoding speed: Treadmill's generate() vs Hugging Face BART's generate(), output tokens/s.

Both models are random-init and BART-sized (bench/peers.py: d_model 256, 4 heads, 3+3 layers,
FFN 1024, vocabulary 1000), in eval mode, on the same right-padded sources (lengths in [16, 32],
mask passed to both). Every output is forced to the same length: min_len = max_len = L for ours,
min_new_tokens = max_new_tokens = L for HF (EOS is blocked until L tokens exist, and BART's forced
EOS is switched off), so both run L decoder steps per hypothesis; the script asserts that every
returned sequence has exactly L tokens in both. Both use the KV cache, no sampling, no n-gram
blocking, length penalty 1, the same beam size, early_stopping=True (a batch entry is done when
beam_size hypotheses are finished; with forced lengths that happens at step L in both). Ours may
add one step in beam search to score the EOS that closes each hypothesis: more work, not less.
The outputs themselves differ (two random models); only their lengths must match.

Tokens/s counts returned output tokens: batch x L / seconds. Calls alternate between the two
libraries (A B, B A, ...) after one warm-up call each; the table gives medians and the ratio
ours / HF (target >= 1.5).

    .venv/bin/python bench/decode_vs_hf.py --threads 1   # 1-2 minutes on 1 core
    .venv/bin/python bench/decode_vs_hf.py --quick       # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import os

import torch
from decode_speed import make_batch
from peers import Sizes, build_bart, build_ours, interleave, median, print_machine, timed, verdict
from torch import Tensor, nn

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID
from treadmill.decoding import generate


def ours_generate(
    model: nn.Module, src: Tensor, mask: Tensor, length: int, beams: int
) -> list[int]:
    """Treadmill generate() with the output length forced to `length`; returns output lengths."""
    options = {"strategy": "greedy"} if beams == 1 else {"strategy": "beam", "beam_size": beams}
    out = generate(model, src, mask, min_len=length, max_len=length, use_cache=True, **options)
    return [len(seq) for seq in out.sequences]


def hf_generate(model: nn.Module, src: Tensor, mask: Tensor, length: int, beams: int) -> list[int]:
    """BART generate() with min_new_tokens = max_new_tokens = `length`; returns output lengths."""
    from transformers import GenerationConfig

    # early_stopping is a beam-search flag; HF warns when greedy decoding is given it.
    beam_only = {"early_stopping": True, "length_penalty": 1.0} if beams > 1 else {}
    config = GenerationConfig(
        max_new_tokens=length,
        min_new_tokens=length,
        num_beams=beams,
        num_return_sequences=1,
        do_sample=False,
        use_cache=True,
        no_repeat_ngram_size=0,
        decoder_start_token_id=BOS_ID,
        bos_token_id=BOS_ID,
        eos_token_id=EOS_ID,
        pad_token_id=PAD_ID,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
        **beam_only,
    )
    sequences = model.generate(
        input_ids=src, attention_mask=(~mask).long(), generation_config=config
    )
    body = sequences[:, 1:]  # drop the decoder start token
    return body.ne(PAD_ID).logical_and(body.ne(EOS_ID)).sum(1).tolist()


def measure_cell(
    models: dict[str, nn.Module], src: Tensor, mask: Tensor, length: int, beams: int, rounds: int
) -> dict[str, float]:
    """Median tokens/s of each library for one (beams, batch, length) cell; checks lengths."""
    calls = {"treadmill": ours_generate, "hf": hf_generate}
    expected = [length] * src.size(0)

    def runner(name: str):
        def run() -> tuple[float, float]:
            lengths, seconds = timed(lambda: calls[name](models[name], src, mask, length, beams))
            assert lengths == expected, f"{name}: output lengths {lengths}, expected {length} each"
            return float(sum(lengths)), seconds

        return run

    rates = interleave({name: runner(name) for name in calls}, rounds)
    return {name: median(values) for name, values in rates.items()}


def main() -> None:
    """Parse options, build both models, print the machine, the table and the verdicts."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short outputs, small batches")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=5, help="timed calls per library and cell")
    parser.add_argument("--length", type=int, default=32, help="forced output length")
    parser.add_argument("--src-len", type=int, default=32, help="longest source length")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--beams", type=int, nargs="+", default=[1, 5], help="1 = greedy")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.length, args.batches = 2, 8, [1, 4]
    torch.set_num_threads(args.threads)
    sizes = Sizes(max_positions=max(64, args.length + 2, args.src_len))
    torch.manual_seed(0)
    models = {"treadmill": build_ours(sizes).eval(), "hf": build_bart(sizes).eval()}
    print_machine()
    print(
        f"BART-sized models (d_model {sizes.d_model}, {sizes.layers}+{sizes.layers} layers, vocab "
        f"{sizes.vocab}), src_len <= {args.src_len}, output length {args.length} in both, "
        f"median of {args.rounds} interleaved calls"
    )
    src, mask = make_batch(2, sizes.vocab, args.src_len)
    ours_generate(models["treadmill"], src, mask, 4, 1)  # warm-up: allocations, kernel choice
    hf_generate(models["hf"], src, mask, 4, 1)
    print("| strategy | batch | length | treadmill tok/s | HF tok/s | ours / HF |")
    print("|----------|------:|-------:|----------------:|---------:|----------:|")
    ratios = {}
    for beams in args.beams:
        name = "greedy" if beams == 1 else f"beam{beams}"
        for batch in args.batches:
            src, mask = make_batch(batch, sizes.vocab, args.src_len)
            rates = measure_cell(models, src, mask, args.length, beams, args.rounds)
            ratio = rates["treadmill"] / rates["hf"]
            ratios[f"{name} batch {batch}"] = ratio
            print(
                f"| {name:<8} | {batch:>5} | {args.length:>6} | {rates['treadmill']:>15,.0f} | "
                f"{rates['hf']:>8,.0f} | {ratio:>8.2f}x |",
                flush=True,
            )
    print("output lengths equal in both: yes (asserted on every call)")
    for cell, ratio in ratios.items():
        verdict(f"{cell} tokens/s ours/HF", ratio, 1.5, True)


if __name__ == "__main__":
    main()
