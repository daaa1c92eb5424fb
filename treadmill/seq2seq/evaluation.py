"""The one evaluation path for free-running decoding: `decode_loader`.

Validation during training (`Seq2SeqTrainer.decode_metrics`), `treadmill eval` and `treadmill
generate` all decode through here, so the three report the same numbers for the same model:

    for batch in loader:                      # moved to the device
        output = generate(model, batch's sources, **generation)
        hypotheses -> metrics (exact match, BLEU, chrF, WER, PER, token accuracy)
                   -> each variant's metrics  (e.g. G2P's WER without stress digits)
                   -> each group's metrics    (`exact_match/n_demos=3`, with `groups`)
                   -> on_batch(DecodedBatch)  (predictions files, samples)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from treadmill.checkpoint import unwrap_model
from treadmill.constants import BOS_ID, EOS_ID, PAD_ID
from treadmill.decoding import GenerationOutput, generate
from treadmill.metrics import Seq2SeqMetrics
from treadmill.metrics.streaming import WerUnit
from treadmill.utils import move_to_device

__all__ = ["DecodedBatch", "DecodeResult", "decode_loader", "generate_for_batch", "decoder_only_prompt", "strip_target"]

# Acceptable targets per example, as token ids: references(batch)[i] lists example i's.
ReferenceFn = Callable[[Mapping[str, Any]], list[list[list[int]]]]
# Group labels per example: groups(batch)[i] lists example i's ("n_demos=3", "depth=2").
GroupFn = Callable[[Mapping[str, Any]], list[list[str]]]


def decoder_only_prompt(src: Tensor) -> Tensor:
    """A source row laid out as a decoder-only model sees it before the target: PAD removed."""
    return src[src != PAD_ID]


def strip_target(ids: Sequence[int]) -> list[int]:
    """Token ids without BOS, cut at the first EOS, PAD removed."""
    out = []
    for token in ids:
        if token == EOS_ID:
            break
        if token not in (BOS_ID, PAD_ID):
            out.append(int(token))
    return out


def generate_for_batch(model: nn.Module, batch: Mapping[str, Any], **options: Any) -> GenerationOutput:
    """`generate` on a batch's sources, laid out as the model was trained on them."""
    model = unwrap_model(model)
    if getattr(model, "is_encoder_decoder", True):
        src = batch["src"]
        mask = batch.get("src_padding_mask")
        return generate(model, src, src == PAD_ID if mask is None else mask, **options)
    prompt_src = batch.get("src")
    # The training layout of a decoder-only model: the source, then the target's BOS.
    prompts = (
        [[*decoder_only_prompt(row).tolist(), BOS_ID] for row in prompt_src]
        if prompt_src is not None
        else [[BOS_ID]] * batch["tgt"].size(0)
    )
    return generate(model, prompt=prompts, **options)


@dataclass
class DecodedBatch:
    """One decoded batch: per example its dataset row, n-best hypotheses (ids, best first) with
    their scores, its acceptable references (ids; None when the batch has no targets) and, when
    asked for, the best hypothesis's attention (out_len, src_len)."""

    rows: list[int]
    hypotheses: list[list[list[int]]]
    scores: list[list[float]]
    references: list[list[list[int]]] | None
    attention: list[Tensor | None] | None = None


@dataclass
class DecodeResult:
    """Corpus metrics of the best hypotheses (empty without references), and with
    `keep_hypotheses` every example's n-best list (and attention, when asked for) in loader order."""

    metrics: dict[str, float]
    rows: list[int] = field(default_factory=list)
    hypotheses: list[list[list[int]]] = field(default_factory=list)
    scores: list[list[float]] = field(default_factory=list)
    attention: list[Tensor | None] = field(default_factory=list)


def _n_best(output: GenerationOutput, n: int) -> tuple[list[list[list[int]]], list[list[float]]]:
    """(per example its hypotheses, their scores), n-best lists whatever n is."""
    sequences: list[Any] = output.sequences if n > 1 else [[seq] for seq in output.sequences]
    if output.scores is None:
        return sequences, [[float("nan")] * len(seqs) for seqs in sequences]
    scores = output.scores.tolist() if n > 1 else [[s] for s in output.scores.tolist()]
    return sequences, [row[: len(seqs)] for row, seqs in zip(scores, sequences, strict=True)]


def _own_references(batch: Mapping[str, Any]) -> list[list[list[int]]] | None:
    """Each example's own target as its one reference; None for inputs without targets."""
    return [[strip_target(row.tolist())] for row in batch["tgt"]] if "tgt" in batch else None


def _best_attention(output: GenerationOutput, n: int) -> list[Tensor | None] | None:
    if output.attention is None:
        return None
    return [per[0] if per else None for per in output.attention] if n > 1 else list(output.attention)


def decode_loader(
    model: nn.Module,
    loader: Iterable[Any],
    generation: Mapping[str, Any],
    references: ReferenceFn | None = None,
    *,
    detokenize: Callable[[list[int]], str] | None = None,
    wer_unit: WerUnit = "word",
    device: Any = None,
    max_batches: int | None = None,
    variants: Mapping[str, Callable[[str], str]] | None = None,
    on_batch: Callable[[DecodedBatch], None] | None = None,
    merge_ranks: bool = False,
    keep_hypotheses: bool = False,
    groups: GroupFn | None = None,
) -> DecodeResult:
    """Decode `loader` free-running and score the best hypotheses against `references` (default:
    each batch's own `tgt`; batches without one are decoded, not scored); `variants` name text maps
    scored as well (metrics suffixed `_name`); `groups` label examples, and each label's examples
    are scored on their own too (metrics suffixed `/label`, with their count `n_examples/label`)."""
    options = {**generation, "return_scores": True}
    n = int(options.get("num_return_sequences", 1))
    scorer = _Scorer(detokenize, wer_unit, variants or {})
    result = DecodeResult(metrics={})
    for index, batch in enumerate(loader):
        if max_batches is not None and index >= max_batches:
            break
        if device is not None:
            batch = move_to_device(batch, device)
        output = generate_for_batch(model, batch, **options)
        hypotheses, scores = _n_best(output, n)
        refs = references(batch) if references is not None else _own_references(batch)
        if refs is not None:
            scorer.update([seqs[0] if seqs else [] for seqs in hypotheses], refs,
                          groups(batch) if groups is not None else None)
        seen = len(result.rows) if keep_hypotheses else 0
        rows = batch["index"].tolist() if "index" in batch else list(range(seen, seen + len(hypotheses)))
        decoded = DecodedBatch(rows, hypotheses, scores, refs, _best_attention(output, n))
        if on_batch is not None:
            on_batch(decoded)
        if keep_hypotheses:
            result.rows += rows
            result.hypotheses += hypotheses
            result.scores += scores
            result.attention += decoded.attention or [None] * len(rows)
    result.metrics = scorer.compute(merge_ranks)
    return result


class _Scorer:
    """Corpus metrics of the best hypotheses, and of their text under each variant map."""

    def __init__(self, detokenize: Callable[[list[int]], str] | None, wer_unit: WerUnit,
                 variants: Mapping[str, Callable[[str], str]]) -> None:
        if variants and detokenize is None:
            raise ValueError("decode_loader: metric variants map text, so they need detokenize.")
        self.detokenize, self.variants = detokenize, variants
        self.accumulators = {"": Seq2SeqMetrics(detokenize=detokenize, wer_unit=wer_unit)}
        self.accumulators.update({f"_{name}": Seq2SeqMetrics(wer_unit=wer_unit) for name in variants})
        self.wer_unit = wer_unit
        self.group_counts: dict[str, int] = {}

    def update(self, best: list[list[int]], refs: list[list[list[int]]], labels: list[list[str]] | None = None) -> None:
        """Add a batch: best[i] is example i's best hypothesis, refs[i] its references (ids),
        labels[i] its group labels."""
        self.accumulators[""].update(best, refs)
        for i, example_labels in enumerate(labels or []):
            for label in example_labels:
                key = f"/{label}"
                if key not in self.accumulators:
                    self.accumulators[key] = Seq2SeqMetrics(detokenize=self.detokenize, wer_unit=self.wer_unit)
                self.accumulators[key].update([best[i]], [refs[i]])
                self.group_counts[label] = self.group_counts.get(label, 0) + 1
        for name, text_map in self.variants.items():
            decode = self.detokenize
            self.accumulators[f"_{name}"].update([text_map(decode(h)) for h in best],  # type: ignore[misc]
                                                 [[text_map(decode(r)) for r in group] for group in refs])  # type: ignore[misc]

    def compute(self, merge_ranks: bool) -> dict[str, float]:
        """The metrics, suffixed by variant; {} when nothing was scored."""
        metrics: dict[str, float] = {}
        # the whole split and its variants first, then the groups in sorted order (stable columns)
        ordered = sorted(self.accumulators.items(), key=lambda item: (item[0].startswith("/"), item[0]))
        for suffix, accumulator in ordered:
            if merge_ranks:  # every rank decoded its shard: all must see (and stop on) the same numbers
                _merge_ranks(accumulator)
            if len(accumulator) == 0:
                continue
            values = accumulator.compute()
            values["gen_token_accuracy"] = values.pop("token_accuracy")
            values.pop("sequence_accuracy", None)  # free-running sequence accuracy is exact_match
            metrics.update({f"{k}{suffix}": v for k, v in values.items()})
            if suffix.startswith("/"):
                metrics[f"n_examples{suffix}"] = float(len(accumulator))
        return metrics


def _merge_ranks(accumulator: Seq2SeqMetrics) -> None:
    from treadmill.distributed import all_gather_objects

    states = all_gather_objects(accumulator.state_dict())
    accumulator.reset()
    for state in states:
        accumulator.merge_state(state)
