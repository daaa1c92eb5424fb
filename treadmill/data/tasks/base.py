"""The `Task` a built-in task builder returns, and the registry entry that describes a builder."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch.utils.data import DataLoader, Dataset

from treadmill.data.collate import collate_seq2seq
from treadmill.data.sampler import TokenBudgetBatchSampler
from treadmill.data.tokenizers import Tokenizer
from treadmill.data.weighted import WeightedEpochSampler
from treadmill.metrics.streaming import WerUnit


@dataclass
class Task:
    """A ready dataset: splits, tokenizers, references and how to batch them.

    `splits` maps "train"/"valid"/"test" to datasets (Seq2SeqDataset for kind "seq2seq",
    ForecastDataset for kind "forecast", ClassificationDataset for kind "classification"). `references[split][i]` lists every acceptable target
    string of example i (multi-reference scoring); None means the dataset's own target is the only
    answer. Tokenizers are None for forecast tasks.
    """

    name: str
    description: str
    splits: dict[str, Dataset]
    src_tokenizer: Tokenizer | None
    tgt_tokenizer: Tokenizer | None
    kind: Literal["seq2seq", "forecast", "lm", "classification"] = "seq2seq"
    references: dict[str, list[list[str]]] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # What WER counts as a word (treadmill.metrics.WER_UNITS): "sequence" when each example is one.
    wer_unit: WerUnit = "word"
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]] = collate_seq2seq
    # Text maps under which decoded outputs are scored as well, as metrics suffixed `_name`
    # (G2P: {"nostress": strip_stress}, WER and PER without stress digits).
    metric_variants: dict[str, Callable[[str], str]] = field(default_factory=dict)
    # The task's own scoring of a model on a loader, in place of free-running decoding
    # (forecasts: MSE/MAE/MASE in original units, next to the naive baselines').
    evaluate_model: Callable[[torch.nn.Module, Task, Any, Any], dict[str, float]] | None = None
    # The figures the epoch summary shows besides the loss and the monitored metric (names
    # without `val_`); empty picks one (treadmill.training.epoch_summary.DEFAULT_HEADLINE).
    headline: tuple[str, ...] = ()
    # Per split, named per-example values (`fields["test"]["n_demos"][i]`) that
    # `data.sample_weights` weights by and `evaluation.group_by` groups by.
    fields: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    # A verifiable reward: checker(source text, output text) -> float, judging an output from its
    # source alone (the addition tasks compute the sum); `sequence_level.reward: checker` uses it.
    checker: Callable[[str, str], float] | None = None

    def split_sizes(self) -> dict[str, int]:
        """Number of examples per split."""
        return {name: len(ds) for name, ds in self.splits.items()}  # type: ignore[arg-type]

    def model_sizes(self) -> dict[str, int]:
        """The sizes a model takes from the task: vocabularies, or a forecast's window and horizon."""
        if self.kind == "forecast":
            return {"context_len": self.metadata["context_len"], "horizon": self.metadata["horizon"]}
        src, tgt = self.src_tokenizer.vocab_size, self.tgt_tokenizer.vocab_size  # type: ignore[union-attr]
        # a decoder-only model reads sources and writes targets with one embedding table
        # plus what a task's own layout tells its models (fewshot-rules: its separator ids)
        return {"src_vocab_size": src, "tgt_vocab_size": tgt, "vocab_size": max(src, tgt),
                **self.metadata.get("model_sizes", {})}

    def source_layout(self) -> dict[str, bool]:
        """Whether the datasets' sources start with BOS and end with EOS (new inputs must match)."""
        from treadmill.constants import BOS_ID, EOS_ID

        split = next((s for s in ("test", "valid", "train") if s in self.splits and len(self.splits[s])), None)  # type: ignore[arg-type]
        example = list(self.splits[split][0]["src"]) if split else []
        return {"bos": bool(example) and example[0] == BOS_ID, "eos": bool(example) and example[-1] == EOS_ID}

    def loader(
        self,
        split: str,
        *,
        batch_size: int | None = None,
        max_tokens: int | None = None,
        max_batch_size: int | None = None,
        shuffle: bool | None = None,
        seed: int = 0,
        num_workers: int = 0,
        sample_weights: Sequence[float] | None = None,
    ) -> DataLoader:
        """A DataLoader over one split: token-budget buckets if `max_tokens`, else fixed batches.

        Without `max_tokens`: batches of `batch_size` (default 64). With `max_tokens`: the budget
        decides the batch size and `batch_size` is not used (so a config's default batch_size does
        not undo the budget); `max_batch_size` optionally caps the samples per batch. The loader's
        `batch_sampler` is then a TokenBudgetBatchSampler: call `loader.batch_sampler.set_epoch(e)`
        before each epoch.
        `shuffle` defaults to True for "train" only. `sample_weights` (one per example, fixed
        batches only) draws each epoch's examples with replacement by weight (WeightedEpochSampler).
        """
        if split not in self.splits:
            raise ValueError(
                f"task {self.name!r} has no split {split!r}; it has {sorted(self.splits)}."
            )
        dataset = self.splits[split]
        shuffle = split == "train" if shuffle is None else shuffle
        if max_tokens is not None:
            if not hasattr(dataset, "lengths"):
                raise ValueError(
                    f"task {self.name!r}: split {split!r} has no lengths() for token budgets; "
                    "use batch_size instead of max_tokens."
                )
            sampler = TokenBudgetBatchSampler(
                dataset.lengths(),
                max_tokens,
                shuffle=shuffle,
                seed=seed,
                max_batch_size=max_batch_size,
            )
            return DataLoader(
                dataset, batch_sampler=sampler, collate_fn=self.collate_fn, num_workers=num_workers
            )
        if batch_size is None:
            batch_size = 64
        if sample_weights is not None:
            return self._weighted_loader(split, sample_weights, batch_size, max_tokens, seed, num_workers)
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            collate_fn=self.collate_fn,
            num_workers=num_workers,
        )

    def _weighted_loader(self, split: str, weights: Sequence[float], batch_size: int, max_tokens: int | None,
                         seed: int, num_workers: int) -> DataLoader:
        """Fixed batches of examples drawn with replacement by weight, per epoch (WeightedEpochSampler)."""
        dataset = self.splits[split]
        if max_tokens is not None or len(weights) != len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"task {self.name!r}: sample_weights need fixed batches (no max_tokens) and one "
                             f"weight per example of {split!r} ({len(dataset)}), got {len(weights)}.")  # type: ignore[arg-type]
        return DataLoader(dataset, batch_size=batch_size, sampler=WeightedEpochSampler(weights, seed=seed),
                          collate_fn=self.collate_fn, num_workers=num_workers,
                          generator=torch.Generator().manual_seed(seed))


@dataclass(frozen=True)
class TaskSpec:
    """A registry entry: the builder and a cheap way to report split sizes."""

    name: str
    description: str
    build: Callable[..., Task]
    sizes: Callable[..., dict[str, int]]
    # Every value of each example field at given options, known without building (None: no fields).
    fields: Callable[..., dict[str, list[Any]]] | None = None

    def option_defaults(self) -> dict[str, Any]:
        """The builder's keyword options and their defaults."""
        params = inspect.signature(self.build).parameters
        return {name: p.default for name, p in params.items() if p.kind is p.KEYWORD_ONLY}
