"""Data: vocabularies and tokenizers, seq2seq datasets, collation, length bucketing, built-in tasks.

from treadmill.data import get_task
task = get_task("reverse", n_train=5000)
loader = task.loader("train", max_tokens=4096)       # token-budget buckets
for epoch in range(epochs):
    loader.batch_sampler.set_epoch(epoch)
    for batch in loader: ...                        # batch["src"], batch["tgt"], masks
"""

from treadmill.data.collate import Seq2SeqCollator, collate_forecast, collate_seq2seq, pad_sequences
from treadmill.data.datasets import Seq2SeqDataset, read_jsonl_pairs, read_tsv_pairs
from treadmill.data.sampler import TokenBudgetBatchSampler
from treadmill.data.splits import stable_split, stable_unit
from treadmill.data.tasks import Task, TaskInfo, get_task, list_tasks, task_options, task_sizes
from treadmill.data.tokenizers import (
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    WordTokenizer,
    load_tokenizer,
    tokenizer_from_dict,
)
from treadmill.data.vocab import Vocab

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "Seq2SeqCollator",
    "Seq2SeqDataset",
    "Task",
    "TaskInfo",
    "TokenBudgetBatchSampler",
    "Tokenizer",
    "Vocab",
    "WordTokenizer",
    "collate_forecast",
    "collate_seq2seq",
    "get_task",
    "list_tasks",
    "load_tokenizer",
    "pad_sequences",
    "read_jsonl_pairs",
    "read_tsv_pairs",
    "stable_split",
    "stable_unit",
    "task_options",
    "task_sizes",
    "tokenizer_from_dict",
]
