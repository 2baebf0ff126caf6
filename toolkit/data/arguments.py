"""Data options shared by every recipe. Names follow the Hugging Face example scripts."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataArguments:
    dataset_name: str | None = field(
        default=None,
        metadata={"help": "A Hub dataset name, or 'demo' for the embedded demo data (no download)."},
    )
    dataset_config_name: str | None = field(
        default=None,
        metadata={"help": "Hub dataset configuration; for 'demo': corpus, classification, summarization."},
    )
    train_file: str | None = field(
        default=None, metadata={"help": "Training file or folder (txt/csv/tsv/json/jsonl/parquet, .gz ok)."}
    )
    validation_file: str | None = field(default=None, metadata={"help": "Validation file or folder."})
    test_file: str | None = field(default=None, metadata={"help": "Test file or folder."})
    validation_split_percentage: int = field(
        default=5, metadata={"help": "Hold out this percentage of train when no validation split is given."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Truncate the training set (debugging)."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Truncate the evaluation set."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for tokenization."})
    streaming: bool = field(
        default=False,
        metadata={"help": "Pretraining: read, tokenize, pack and mask on the fly (local files; needs --max_steps)."},
    )
    shuffle_buffer_size: int = field(
        default=10000, metadata={"help": "Streaming: examples shuffled together in one window (0: stream order)."}
    )
    tokenizer_train_samples: int = field(
        default=100000, metadata={"help": "Streaming: rows of the stream a tokenizer is trained on, when none given."}
    )
    stream_shard_bytes: int = field(
        default=1 << 20, metadata={"help": "Streaming: size of the byte ranges txt/jsonl files are read in per rank."}
    )
    text_column: str = field(default="text", metadata={"help": "Column holding the text."})
    strip_gutenberg: bool = field(
        default=True, metadata={"help": "Drop Project Gutenberg header/licence outside the START/END markers."}
    )


@dataclass
class PretrainingDataArguments(DataArguments):
    """The data options of the pretraining recipes: `DataArguments` plus the task text of task-adaptive pretraining."""

    extra_text_file: str | None = field(
        default=None,
        metadata={
            "help": "Task-adaptive pretraining (Gururangan et al. 2020): add one text column of this file (e.g. the "
            "task's train.tsv; labels are dropped) to the training text."
        },
    )
    extra_text_column: str | None = field(
        default=None, metadata={"help": "Column of --extra_text_file holding the text (default: text)."}
    )
    validation_text_column: str | None = field(
        default=None,
        metadata={
            "help": "Column holding the text of --validation_file / --test_file when it differs from --text_column "
            "(e.g. training on a tsv's 'sentence' column, evaluating on WikiText's 'text'); default: --text_column."
        },
    )


def split_text_column(data_args, split: str) -> str:
    """The column a split's text is read from: --validation_text_column for a --validation_file / --test_file when
    given (a split held out of train, or from the same Hub dataset, has train's columns)."""
    if (
        split != "train"
        and getattr(data_args, f"{split}_file", None)
        and getattr(data_args, "validation_text_column", None)
    ):
        return data_args.validation_text_column
    return data_args.text_column
