"""Metrics over decoded outputs: BLEU/chrF (sacrebleu), edit distance, WER and PER/token error rate.

Inputs are hypotheses and references as strings or as token sequences (lists of ids or symbols,
special tokens already removed: see `strip_special_tokens`). Every function accepts one reference
per hypothesis (`refs[i]` a string / token sequence) or several (`refs[i]` a list of them, the
count may differ between hypotheses).

Multi-reference conventions (the g2p ones): an error rate uses, for each hypothesis, the reference
with the fewest edits (ties: the first such reference), and both the edits and the reference
length of that reference enter the corpus sums; exact match means equal to any reference.
Error rates are fractions (0.25 = 25%); BLEU and chrF are on sacrebleu's 0-100 scale.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

import sacrebleu
from rapidfuzz.distance import Levenshtein

from treadmill.constants import BOS_ID, EOS_ID, PAD_ID

__all__ = [
    "strip_special_tokens",
    "edit_distance",
    "best_reference",
    "token_error_rate",
    "phoneme_error_rate",
    "word_error_rate",
    "exact_match",
    "corpus_bleu",
    "corpus_chrf",
    "sentence_bleu",
    "reference_streams",
]

T = TypeVar("T")


def strip_special_tokens(
    ids: Sequence[int], bos_id: int = BOS_ID, eos_id: int = EOS_ID, pad_id: int = PAD_ID
) -> list[int]:
    """Return ids without a leading BOS, cut before the first EOS, with PAD removed."""
    out: list[int] = []
    for position, token in enumerate(ids):
        token = int(token)
        if token == eos_id:
            break
        if token == pad_id or (position == 0 and token == bos_id):
            continue
        out.append(token)
    return out


def edit_distance(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Levenshtein distance between two sequences (strings compare character by character)."""
    if isinstance(a, str) != isinstance(b, str):
        raise TypeError(
            f"edit_distance got a {type(a).__name__} and a {type(b).__name__}: pass two strings "
            "(characters) or two token sequences (split a sentence with .split() for words)."
        )
    if isinstance(a, str):
        return int(Levenshtein.distance(a, b))
    # rapidfuzz compares lists of hashables element by element; tensors hash by identity, so
    # turn them into plain ints first.
    return int(Levenshtein.distance(_as_list(a), _as_list(b)))


def _as_list(tokens: Sequence[Hashable]) -> list:
    tolist = getattr(tokens, "tolist", None)
    return list(tolist()) if callable(tolist) else list(tokens)


def _is_token_sequence(item: object) -> bool:
    return isinstance(item, Sequence) and not isinstance(item, str)


def _is_multi_reference(item: object) -> bool:
    """True when item is a non-empty list of references rather than one token sequence."""
    if not isinstance(item, Sequence) or isinstance(item, str) or len(item) == 0:
        return False
    return all(_is_token_sequence(ref) for ref in item)


def _reference_lists(hyps: Sequence[object], refs: Sequence[object], text: bool) -> list[list]:
    """Normalise refs to one list of references per hypothesis, checking lengths and types."""
    if len(hyps) != len(refs):
        raise ValueError(
            f"got {len(hyps)} hypotheses but {len(refs)} references: refs[i] must be the "
            "reference (or list of references) of hyps[i]."
        )
    out = []
    for i, item in enumerate(refs):
        if text:
            multi = isinstance(item, Sequence) and not isinstance(item, str)
        else:
            multi = _is_multi_reference(item)
        group = list(item) if multi else [item]  # type: ignore[call-overload]
        if not group:
            raise ValueError(f"refs[{i}] is an empty list of references: give at least one.")
        if text and not all(isinstance(ref, str) for ref in group):
            raise TypeError(
                f"refs[{i}] = {item!r}: text hypotheses need string references (or lists of them)."
            )
        out.append(group)
    return out


def best_reference(hyp: Sequence[T], refs: Sequence[Sequence[T]]) -> tuple[int, Sequence[T]]:
    """Return (edits, reference) for the reference closest to hyp (ties: the first)."""
    best_edits, best_ref = edit_distance(hyp, refs[0]), refs[0]
    for ref in refs[1:]:
        edits = edit_distance(hyp, ref)
        if edits < best_edits:
            best_edits, best_ref = edits, ref
    return best_edits, best_ref


def _error_rate(hyps: Sequence[Sequence[Hashable]], ref_lists: list[list]) -> float:
    """Sum of edits over sum of reference lengths, each hypothesis against its closest reference."""
    total_edits = total_len = 0
    for hyp, refs in zip(hyps, ref_lists, strict=True):
        edits, ref = best_reference(hyp, refs)
        total_edits += edits
        total_len += len(ref)
    if total_len == 0:
        # Every reference is empty: zero edits is a perfect score, any insertion is unbounded.
        return 0.0 if total_edits == 0 else float("inf")
    return total_edits / total_len


def token_error_rate(
    hyps: Sequence[Sequence[Hashable]],
    refs: Sequence[Sequence[Hashable]] | Sequence[Sequence[Sequence[Hashable]]],
) -> float:
    """Corpus token (phoneme) error rate: sum of token edits / sum of reference tokens."""
    for i, hyp in enumerate(hyps):
        if isinstance(hyp, str):
            raise TypeError(
                f"hyps[{i}] is a string; token_error_rate takes token sequences "
                "(use word_error_rate for text, or pass hyp.split())."
            )
    return _error_rate(hyps, _reference_lists(hyps, refs, text=False))


# PER in g2p is the token error rate over phoneme sequences.
phoneme_error_rate = token_error_rate


def word_error_rate(hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]) -> float:
    """Corpus word error rate on whitespace tokens: sum of word edits / sum of reference words."""
    ref_lists = _reference_lists(hyps, refs, text=True)
    hyp_words = [_as_text(hyp, i).split() for i, hyp in enumerate(hyps)]
    return _error_rate(hyp_words, [[ref.split() for ref in group] for group in ref_lists])


def exact_match(
    hyps: Sequence[Sequence[Hashable]] | Sequence[str], refs: Sequence[object]
) -> tuple[int, int]:
    """Count hypotheses equal to any of their references: returns (matches, n_hypotheses)."""
    text = bool(hyps) and isinstance(hyps[0], str)
    ref_lists = _reference_lists(hyps, refs, text=text)
    matches = 0
    for hyp, group in zip(hyps, ref_lists, strict=True):
        if text:
            # Whitespace differences are not errors.
            matches += any(str(hyp).split() == ref.split() for ref in group)
        else:
            matches += any(list(hyp) == list(ref) for ref in group)
    return matches, len(hyps)


def _as_text(hyp: object, i: int) -> str:
    if not isinstance(hyp, str):
        raise TypeError(
            f"hyps[{i}] is a {type(hyp).__name__}; this metric takes strings (join token "
            "sequences with ' '.join(map(str, tokens)) first)."
        )
    return hyp


def reference_streams(
    hyps: Sequence[str], refs: Sequence[str] | Sequence[Sequence[str]]
) -> list[list[str | None]]:
    """Transpose per-hypothesis references into sacrebleu's streams, padding short groups with None."""
    for i, hyp in enumerate(hyps):
        _as_text(hyp, i)
    ref_lists = _reference_lists(hyps, refs, text=True)
    n_streams = max((len(group) for group in ref_lists), default=1)
    # sacrebleu drops None references, which is how it supports a varying reference count.
    return [[group[j] if j < len(group) else None for group in ref_lists] for j in range(n_streams)]


def corpus_bleu(
    hyps: Sequence[str],
    refs: Sequence[str] | Sequence[Sequence[str]],
    *,
    tokenize: str = "13a",
    lowercase: bool = False,
    smooth_method: str = "exp",
) -> float:
    """Corpus BLEU (0-100) from sacrebleu; refs[i] is hyps[i]'s reference or list of references."""
    if not hyps:
        raise ValueError("corpus_bleu got no hypotheses: pass at least one.")
    streams = reference_streams(hyps, refs)
    return float(
        sacrebleu.corpus_bleu(
            list(hyps),
            streams,  # type: ignore[arg-type]
            tokenize=tokenize,
            lowercase=lowercase,
            smooth_method=smooth_method,
        ).score
    )


def corpus_chrf(
    hyps: Sequence[str],
    refs: Sequence[str] | Sequence[Sequence[str]],
    *,
    char_order: int = 6,
    word_order: int = 0,
    beta: int = 2,
) -> float:
    """Corpus chrF (0-100) from sacrebleu (word_order=2 gives chrF++)."""
    if not hyps:
        raise ValueError("corpus_chrf got no hypotheses: pass at least one.")
    streams = reference_streams(hyps, refs)
    return float(
        sacrebleu.corpus_chrf(
            list(hyps),
            streams,  # type: ignore[arg-type]
            char_order=char_order,
            word_order=word_order,
            beta=beta,
        ).score
    )


def sentence_bleu(
    hyp: str, refs: str | Sequence[str], *, tokenize: str = "13a", lowercase: bool = False
) -> float:
    """Sentence BLEU (0-100) from sacrebleu, with effective n-gram order and exp smoothing."""
    group = [refs] if isinstance(refs, str) else list(refs)
    if not group:
        raise ValueError("sentence_bleu got an empty list of references: give at least one.")
    return float(
        sacrebleu.sentence_bleu(
            _as_text(hyp, 0), group, tokenize=tokenize, lowercase=lowercase
        ).score
    )
