"""examples/g2p_errors.py: each kind of G2P error lands in its class."""

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "g2p_errors.py"


def test_errors_are_classified_against_the_dictionary(tmp_path):
    # "abbitt" is AE1 B IH0 T in the CMU dictionary.
    hypotheses = {
        "AE1 B IH0 T": "correct",
        "AE1 B IH2 T": "one stress digit 0<->2",
        "AE2 B IH0 T": "one stress digit, other",
        "AE1 B AH0 T": "one reduced vowel",
        "AE1 P IH0 T": "one other phoneme",
        "AE1 P AH0 T": "2+ substitutions",
        "AE1 B T": "length differs",
    }
    lines = ["source\treference\thypothesis"] + [f"abbitt\tAE1 B IH0 T\t{h}" for h in hypotheses]
    (tmp_path / "predictions.tsv").write_text("\n".join(lines) + "\n")
    result = subprocess.run([sys.executable, str(EXAMPLE), str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "7 test words, 6 wrong" in result.stdout
    counts = {line[:28].strip(): int(line[28:34]) for line in result.stdout.splitlines()[1:]}
    assert counts == {name: 1 for name in list(hypotheses.values())[1:]}
