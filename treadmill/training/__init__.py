"""The training loop's support code: what `treadmill.trainer.Trainer` runs on, one mechanism a module.

| module | what lives there |
|---|---|
| `training/optim.py` | `build_optimizer` (per-module LR scales, weight-decay groups), `build_scheduler`, warm-up schedules, `scheduler_for` (sized to the run) |
| `training/precision.py` | which autocast dtype on which device; the fp16 grad scaler and `step_optimizer` |
| `training/running_means.py` | `RunningMeans`: sample/token-weighted means kept on the device |
| `training/data_order.py` | per-epoch data order from (seed, epoch); mid-epoch fast-forward for exact resume |
| `training/signals.py` | `GracefulStop`: SIGTERM/SIGINT finish the step, save, exit |
| `training/checks.py` | embedding-range and non-finite checks (loss; weights before a checkpoint) that name the culprit |
| `training/rotation.py` | crash-safe file writes and the `last.pt` rotation that always leaves a complete `last.pt` |
| `training/progress.py` | `ProgressReporter`: the loop's live bar (rich) or plain lines, bars for validation passes, ETAs; `progress_task` for passes outside the loop |
| `training/epoch_summary.py` | what an epoch's end shows: loss, the monitored metric with its best and epoch, the headline; a table or a line |
| `training/batches.py` | what the default hooks do with a batch: feed the model, find targets, read (loss, weight) |
| `training/evaluation.py` | the evaluation and prediction passes behind `Trainer.evaluate` / `Trainer.predict` |

Checkpoint writing, loading and exact resume live in `treadmill.checkpoint`; the callbacks a
config asks for are built by `treadmill.callbacks.from_config`.

This package imports nothing itself, so `import treadmill.training.x` loads only module x.
"""
