"""Task-adaptive pretraining text: add a task's own unlabeled training text to a pretraining corpus.

Gururangan et al. (2020), "Don't Stop Pretraining": masked-LM training on the text of the task itself (its inputs
only, labels dropped) helps most when labels are few. `add_task_text` reads one text column of a csv / tsv / json /
jsonl / parquet file (or a plain-text file, one paragraph per row), drops every other column, and appends the rows
to the training split as one extra document, so packing joins the task's short sentences into full blocks.
`load_pretraining_text` is how both pretraining recipes read their text: the corpus (or its streams), checked, plus
the task text.
"""

from __future__ import annotations

import datasets

from toolkit.data.arguments import split_text_column
from toolkit.data.loading import _load_split_files, check_columns, expand_files, load_raw_datasets
from toolkit.data.streaming import TextStream
from toolkit.errors import UserError

OPTION = "--extra_text_file"


def add_task_text(train, path: str, column: str | None, text_column: str = "text", strip: bool = True):
    """`train` with the non-empty rows of `column` of `path` appended (as `text_column`, one new `doc_id`).

    `column` may be None for plain-text files (their paragraphs are the rows). Raises `UserError` (one line, naming
    the file and the column) when the file cannot be read or lacks the column, before any tokenization.
    """
    if isinstance(train, (datasets.IterableDataset, TextStream)):
        raise UserError(f"{OPTION} does not work with --streaming; drop one of them")
    extra = _load_split_files(expand_files(path, OPTION), OPTION, strip, streaming=False)
    column = column or "text"
    check_columns(extra, [column], f"{OPTION} {path} (set --extra_text_column)")
    extra = extra.select_columns([column])
    if column != text_column:
        extra = extra.rename_column(column, text_column)
    extra = extra.filter(lambda row: isinstance(row[text_column], str) and bool(row[text_column].strip()))
    if len(extra) == 0:
        raise UserError(f"{OPTION} {path}: column '{column}' holds no text")
    keep = [text_column] + (["doc_id"] if "doc_id" in train.column_names else [])
    train = train.select_columns(keep)
    if "doc_id" in keep:
        new_doc = max(train["doc_id"], default=-1) + 1
        extra = extra.add_column("doc_id", [new_doc] * len(extra))
    extra = extra.cast(train.features)  # e.g. string vs large_string of another file type
    return datasets.concatenate_datasets([train, extra])


def load_pretraining_text(accelerator, data_args, seed: int, open_streams=None) -> dict:
    """The splits of a pretraining run (`PretrainingDataArguments`): train + validation (held out of train when none
    is given), or the planned streams with --streaming, plus the task text of --extra_text_file. The main process
    reads first, so the other processes find the datasets cache ready. `open_streams(data_args)` plans the streams
    (default: `toolkit.data.streaming.open_text_streams`)."""
    with accelerator.main_process_first():
        if data_args.streaming:  # planned here, read by the DataLoader workers (toolkit/data/streaming.py)
            from toolkit.data.streaming import open_text_streams

            raw = (open_streams or open_text_streams)(data_args)
        else:
            raw = load_raw_datasets(data_args, need_validation=True, seed=seed)
    if "train" not in raw:
        raise UserError("pretraining needs training text: pass --train_file or --dataset_name")
    check_columns(raw["train"], [data_args.text_column], "the training data (set --text_column)")
    for split in ("validation", "test"):
        column = split_text_column(data_args, split)
        if split in raw and not data_args.streaming:
            check_columns(raw[split], [column], f"the {split} data (set --validation_text_column)")
            if column != data_args.text_column:  # one name from here on, as the recipes read it
                keep = [c for c in raw[split].column_names if c != data_args.text_column]
                raw[split] = raw[split].select_columns(keep).rename_column(column, data_args.text_column)
    if data_args.extra_text_file:
        with accelerator.main_process_first():
            raw["train"] = add_task_text(
                raw["train"], data_args.extra_text_file, data_args.extra_text_column, data_args.text_column
            )
    return raw
