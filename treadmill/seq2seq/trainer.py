"""Seq2SeqTrainer: teacher-forced training, free-running validation, the exposure gap.

Batches are dicts with `src` (batch, src_len) and `tgt` (batch, tgt_len) token ids, `tgt` being
BOS ... EOS, PAD (0) after. The model follows the protocol in docs/model_protocol.md. Validation
reports both views of the same model:

* teacher-forced (the model sees the reference prefix): `val_loss`, `val_perplexity`,
  `val_token_accuracy`, `val_sequence_accuracy`;
* free-running (the model feeds itself through `generate()`): `val_exact_match`,
  `val_gen_token_accuracy`, `val_bleu`, `val_chrf`, `val_wer`, `val_per` (`wer_unit="sequence"`
  makes `val_wer` the share of wrong outputs, for tasks with one word per example such as G2P);
* `val_exposure_gap` = teacher-forced minus free-running token accuracy. A large gap with a high
  teacher-forced accuracy is seed 000's symptom; see docs/exposure_bias.md.

A decoder-only model sees each pair as one sequence: the source without padding (with the EOS
the dataset may end it with), then the target BOS ... EOS; the loss is taken on the target only.
Free-running decoding prompts it with exactly that prefix, the source then BOS.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from treadmill.checkpoint import unwrap_model
from treadmill.config import ConfigError
from treadmill.constants import PAD_ID
from treadmill.metrics import (
    WerUnit,
    check_wer_unit,
    sequence_accuracy,
    token_accuracy,
)
from treadmill.seq2seq.evaluation import (
    decode_loader,
    decoder_only_prompt,
    generate_for_batch,
    strip_target,
)
from treadmill.seq2seq.losses import LabelSmoothedCrossEntropy
from treadmill.seq2seq.scheduled_sampling import ScheduledSamplingSchedule, mix_two_pass
from treadmill.trainer import Trainer
from treadmill.training.data_order import batches_in_epoch

__all__ = ["Seq2SeqConfig", "Seq2SeqTrainer", "TokenLoss", "decoder_only_prompt", "strip_target"]


class TokenLoss(NamedTuple):
    """A batch's mean loss with the token count the Trainer weights it by."""

    loss: Tensor
    n_tokens: Tensor
    nll_sum: Tensor


@dataclass
class Seq2SeqConfig:
    """What Seq2SeqTrainer adds to TrainingConfig: loss, validation decoding, scheduled sampling.

    `generation` holds `GenerationConfig` fields for validation decoding (strategy, beam_size, ...);
    `val_decode_batches` caps how many validation batches are decoded free-running (None: all,
    0: none); `scheduled_sampling` is None or {"kind": "linear"|"exponential"|"inverse_sigmoid",
    "k": ..., "c": ..., "eps_min": ...}.
    """

    label_smoothing: float = 0.1
    loss_reduction: str = "token"
    generation: dict[str, Any] = field(default_factory=dict)
    val_decode_batches: int | None = None
    scheduled_sampling: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(
                f"Seq2SeqConfig.label_smoothing must be in [0, 1), got {self.label_smoothing!r}."
            )
        if self.loss_reduction not in ("token", "sentence"):
            raise ConfigError(
                f"Seq2SeqConfig.loss_reduction must be 'token' or 'sentence', got {self.loss_reduction!r}."
            )
        if self.val_decode_batches is not None and self.val_decode_batches < 0:
            raise ConfigError(
                f"Seq2SeqConfig.val_decode_batches must be >= 0 or None, got {self.val_decode_batches!r}."
            )
        if self.scheduled_sampling is not None:
            self.schedule()  # validates

    def schedule(self) -> ScheduledSamplingSchedule | None:
        """The scheduled-sampling schedule, or None for pure teacher forcing."""
        if not self.scheduled_sampling:
            return None
        try:
            return ScheduledSamplingSchedule(**self.scheduled_sampling)
        except TypeError as err:
            names = [f.name for f in dataclasses.fields(ScheduledSamplingSchedule)]
            raise ConfigError(
                f"Seq2SeqConfig.scheduled_sampling {self.scheduled_sampling}: {err}. Fields: {names}."
            ) from err


class Seq2SeqTrainer(Trainer):
    """A Trainer for encoder-decoder and decoder-only sequence models (see the module docstring)."""

    def __init__(
        self,
        model: torch.nn.Module,
        config: Any = None,
        train_dataloader: Iterable[Any] | None = None,
        val_dataloader: Iterable[Any] | None = None,
        loss_fn: Callable[..., Any] | None = None,
        metric_fns: Mapping[str, Callable[..., Any]] | None = None,
        callbacks: Sequence[Any] | None = None,
        *,
        seq2seq: Seq2SeqConfig | None = None,
        detokenize: Callable[[list[int]], str] | None = None,
        references: Callable[[Mapping[str, Any]], list[list[list[int]]]] | None = None,
        wer_unit: WerUnit = "word",
        groups: Callable[[Mapping[str, Any]], list[list[str]]] | None = None,
    ) -> None:
        check_wer_unit(wer_unit, "Seq2SeqTrainer")  # before the model moves or the process group forms
        self.seq2seq = seq2seq or Seq2SeqConfig()
        if loss_fn is None:
            loss_fn = LabelSmoothedCrossEntropy(
                self.seq2seq.label_smoothing, PAD_ID, self.seq2seq.loss_reduction  # type: ignore[arg-type]
            )
        super().__init__(
            model, config, train_dataloader, val_dataloader, loss_fn, metric_fns, callbacks
        )
        self.detokenize = detokenize
        self.references = references
        self.wer_unit = wer_unit
        self.groups = groups  # validation examples' group labels: metrics per group (evaluation.group_by)
        self.schedule = self.seq2seq.schedule()
        self._ss_generator = torch.Generator(device=self.device).manual_seed(self.data_seed + 1)
        self._last_loss: TokenLoss | None = None

    # ------------------------------------------------------------------ batches

    @property
    def is_encoder_decoder(self) -> bool:
        """Whether the model has an encoder (else it is decoder-only)."""
        return bool(getattr(unwrap_model(self.model), "is_encoder_decoder", True))

    @staticmethod
    def _check_batch(batch: Any) -> None:
        if not isinstance(batch, Mapping) or "tgt" not in batch:
            keys = list(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ValueError(
                f"Seq2SeqTrainer expects dict batches with 'src' and 'tgt' token ids; got {keys}."
            )

    def _decoder_only_tokens(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(tokens, labels) for a decoder-only model: src then tgt per row; loss only on tgt."""
        src, tgt = batch.get("src"), batch["tgt"]
        rows, label_rows = [], []
        for i in range(tgt.size(0)):
            prompt = decoder_only_prompt(src[i]) if src is not None else tgt.new_empty(0)
            target = tgt[i][tgt[i] != PAD_ID]
            rows.append(torch.cat([prompt, target]))
            label_rows.append(torch.cat([torch.full_like(prompt, PAD_ID), target]))
        tokens = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=PAD_ID)
        labels = torch.nn.utils.rnn.pad_sequence(label_rows, batch_first=True, padding_value=PAD_ID)
        return tokens, labels  # (batch, seq_len) each

    def _targets(self, batch: Any) -> Tensor:
        """The ids each logit position must predict (PAD where no loss is taken)."""
        if self.is_encoder_decoder:
            target = batch["tgt"][:, 1:]
        else:
            _, labels = self._decoder_only_tokens(batch)
            target = labels[:, 1:]
        # A model whose special ids share a column (treadmill.hf: GPT-2's BOS is its EOS) names the
        # column each id is scored in; the decoder-only separator BOS is then predicted as EOS.
        canonical = getattr(unwrap_model(self.model), "canonical_targets", None)
        return canonical(target) if canonical is not None else target

    # ------------------------------------------------------------------ hooks

    def _forward_pass(self, batch: Any) -> Tensor:
        """Teacher-forced logits (batch, tgt_len - 1, vocab); scheduled sampling while training."""
        self._check_batch(batch)
        if not self.is_encoder_decoder:
            tokens, _ = self._decoder_only_tokens(batch)
            return self.model(tokens[:, :-1], tgt_padding_mask=tokens[:, :-1] == PAD_ID)
        src, tgt_in = batch["src"], batch["tgt"][:, :-1]
        src_padding_mask = batch.get("src_padding_mask")
        if src_padding_mask is None:
            src_padding_mask = src == PAD_ID
        if self.schedule is not None and self.model.training:
            tgt_in = mix_two_pass(
                self.model,
                src,
                tgt_in,
                src_padding_mask,
                self.schedule(self.global_step),
                self._ss_generator,
            )
        return self.model(
            src, tgt_in, src_padding_mask=src_padding_mask, tgt_padding_mask=tgt_in == PAD_ID
        )

    def _compute_loss(self, batch: Any, predictions: Tensor) -> TokenLoss:
        """Label-smoothed cross-entropy ignoring PAD, weighted by target tokens."""
        target = self._targets(batch)
        if isinstance(self.loss_fn, LabelSmoothedCrossEntropy):
            out = self.loss_fn.loss_and_count(predictions.float(), target)
            loss = out.loss_sum / self.loss_fn.normalizer(out).clamp(min=1)
            # Sentence-averaged losses are weighted by sentences, token-averaged ones by tokens.
            weight = out.n_tokens if self.loss_fn.reduction == "token" else out.n_sentences
            self._last_loss = TokenLoss(loss, weight, out.nll_sum)
            return self._last_loss
        return self.loss_fn(predictions, target)  # type: ignore[misc]

    def _compute_metrics(self, batch: Any, predictions: Tensor) -> dict[str, Any]:
        """Teacher-forced token/sequence accuracy, NLL per token, and any user metric functions."""
        target = self._targets(batch)
        metrics: dict[str, Any] = {
            "token_accuracy": token_accuracy(predictions, target),
            "sequence_accuracy": sequence_accuracy(predictions, target),
        }
        if self._last_loss is not None:
            metrics["nll"] = (self._last_loss.nll_sum, (target != PAD_ID).sum())
        for name, fn in self.metric_fns.items():
            metrics[name] = fn(predictions, batch)
        return metrics

    def _derive_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        if "nll" in metrics:  # mean NLL per token -> perplexity (the NLL itself is not reported)
            metrics["perplexity"] = math.exp(min(metrics.pop("nll"), 50.0))
        return metrics

    # ------------------------------------------------------------------ free-running evaluation

    def evaluate(
        self, dataloader: Iterable[Any] | None = None, prefix: str = "", decode: bool = True
    ) -> dict[str, float]:
        """Teacher-forced metrics plus (unless decode=False) free-running metrics and the exposure gap."""
        metrics = super().evaluate(dataloader, prefix)
        cap = self.seq2seq.val_decode_batches
        if cap == 0 or not decode:
            return metrics
        loader = dataloader if dataloader is not None else self.val_dataloader
        decoded = self.decode_metrics(loader, max_batches=cap)  # type: ignore[arg-type]
        metrics.update({f"{prefix}{k}": v for k, v in decoded.items()})
        if f"{prefix}token_accuracy" in metrics:
            metrics[f"{prefix}exposure_gap"] = (
                metrics[f"{prefix}token_accuracy"] - decoded["gen_token_accuracy"]
            )
        return metrics

    def generate_batch(self, batch: Mapping[str, Tensor], **overrides: Any) -> list[list[int]]:
        """Free-running outputs (token ids, no BOS/EOS) for a batch's sources."""
        output = generate_for_batch(self.model, batch, **{**self.seq2seq.generation, **overrides})
        return [list(seq) for seq in output.sequences]  # type: ignore[arg-type]  # n-best lists when asked for

    def decode_metrics(
        self, loader: Iterable[Any], max_batches: int | None = None
    ) -> dict[str, float]:
        """Exact match, token accuracy, BLEU, chrF, WER and PER of free-running outputs (every rank's, under DDP)."""
        total = batches_in_epoch(loader)
        if max_batches is not None:
            total = max_batches if total is None else min(total, max_batches)
        with self.progress.track("decoding", total) as bar:
            return decode_loader(
                self.model, loader, self.seq2seq.generation, self.references, detokenize=self.detokenize,
                wer_unit=self.wer_unit, device=self.device, max_batches=max_batches, merge_ranks=self.dist.enabled,
                on_batch=lambda _: bar.advance(), groups=self.groups,
            ).metrics
