"""Data loading, tokenizer training, packing and the embedded demo data (see each module's docstring)."""

from toolkit.data.arguments import DataArguments, PretrainingDataArguments
from toolkit.data.batching import ListDataset, TokenBatchSampler, length_grouped_order
from toolkit.data.loading import check_columns, load_raw_datasets, strip_gutenberg
from toolkit.data.packing import pack_into_blocks, tokenize_dataset
from toolkit.data.parallel import is_parallel_prefix, read_lines, read_parallel
from toolkit.data.task_text import add_task_text, load_pretraining_text
from toolkit.data.tokenizer_training import (
    batch_iterator,
    load_or_train_tokenizer,
    train_bpe,
    train_word_level,
    train_wordpiece,
)

__all__ = [
    "DataArguments",
    "ListDataset",
    "PretrainingDataArguments",
    "TokenBatchSampler",
    "add_task_text",
    "is_parallel_prefix",
    "length_grouped_order",
    "load_or_train_tokenizer",
    "load_pretraining_text",
    "read_lines",
    "read_parallel",
    "batch_iterator",
    "check_columns",
    "load_raw_datasets",
    "pack_into_blocks",
    "strip_gutenberg",
    "tokenize_dataset",
    "train_bpe",
    "train_word_level",
    "train_wordpiece",
]
