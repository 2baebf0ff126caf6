"""Data loading, tokenizer training, packing and the embedded demo data (see each module's docstring)."""

from toolkit.data.arguments import DataArguments
from toolkit.data.loading import check_columns, load_raw_datasets, strip_gutenberg
from toolkit.data.packing import pack_into_blocks, tokenize_dataset
from toolkit.data.tokenizer_training import batch_iterator, train_bpe, train_word_level, train_wordpiece

__all__ = [
    "DataArguments",
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
