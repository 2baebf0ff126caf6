"""Load text datasets from the Hub, local files or folders, or the embedded demo data, with clear errors.

Local formats: txt (also .raw / .tokens), csv, tsv, json, jsonl, parquet, and gzip of any of these; a folder is read
as all supported files inside it. Plain-text files become one row per paragraph (blank-line separated with
hard-wrapped lines joined, or one per line when a file has no blank lines) with a `doc_id` per file, after dropping a Project Gutenberg header and licence. Everything goes
through `datasets.load_dataset`, so processed results are cached and reused by the next run.
"""

from __future__ import annotations

import csv
import gzip
import os
import re

import datasets
from datasets import DatasetDict

from toolkit.data.demo import DEMO_NAMES, demo_data_files
from toolkit.errors import UserError

TEXT_EXTS = ("txt", "raw", "tokens", "text")
BUILDERS = {
    **{e: "text" for e in TEXT_EXTS},
    "csv": "csv",
    "tsv": "csv",
    "json": "json",
    "jsonl": "json",
    "parquet": "parquet",
}
# `datasets` fingerprints module-level functions by name, not code: bump this when a cached transform changes.
CACHE_VERSION = "2"
GUTENBERG_START, GUTENBERG_END = "*** START OF", "*** END OF"
_BLANK_LINES = re.compile(r"\r?\n[ \t]*\r?\n")


def file_extension(path: str) -> str:
    name = os.path.basename(path).lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.rsplit(".", 1)[-1] if "." in name else ""


def expand_files(path: str, option: str) -> list[str]:
    """A file, or the supported files of a folder (sorted). `option` names the flag, for error messages."""
    if not os.path.exists(path):
        raise UserError(f"{option} {path} does not exist")
    if os.path.isdir(path):
        files = sorted(
            os.path.join(path, n) for n in os.listdir(path) if file_extension(n) in BUILDERS and not n.startswith(".")
        )
        if not files:
            raise UserError(f"{option} {path} is a folder with no supported files ({', '.join(sorted(BUILDERS))})")
        return files
    if file_extension(path) not in BUILDERS:
        raise UserError(
            f"{option} {path}: unsupported file type; expected one of {', '.join(sorted(BUILDERS))} (.gz ok)"
        )
    return [path]


def check_utf8(path: str, limit: int | None = 1 << 20) -> None:
    """Fail early, naming the file, if its first MiB (`limit` None: all of it) is not UTF-8 (parquet is binary and
    skipped)."""
    if file_extension(path) == "parquet":
        return
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        head = f.read() if limit is None else f.read(limit)
    if not head.strip():
        raise UserError(f"{path} is empty")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if limit is None or err.start < len(head) - 4:  # not just a multi-byte character cut at the limit
            raise UserError(
                f"{path} is not UTF-8 text (invalid byte at offset {err.start}); re-encode it as UTF-8"
            ) from None


def _root_cause(err: BaseException) -> BaseException:
    """The innermost exception of a chain (datasets wraps reader errors in "An error occurred while generating")."""
    while (err.__cause__ or err.__context__) is not None:
        err = err.__cause__ or err.__context__
    return err


def strip_gutenberg(text: str) -> str:
    """Keep what lies between Project Gutenberg's `*** START OF` and `*** END OF` lines (text without them as is),
    also dropping the "End of (the) Project Gutenberg ..." line older files put just before the end marker."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip().startswith(GUTENBERG_START)), None)
    end = next((i for i, line in enumerate(lines) if line.strip().startswith(GUTENBERG_END)), None)
    if start is None and end is None:
        return text
    body = lines[(start + 1 if start is not None else 0) : end]
    while body and (
        not body[-1].strip()
        or body[-1].strip().lower().startswith(("end of the project gutenberg", "end of project gutenberg"))
    ):
        body.pop()
    return "\n".join(body)


def _documents_to_paragraphs(batch, indices, strip: bool, cache_version: str = ""):
    texts, doc_ids = [], []
    for j, document in enumerate(batch["text"]):
        doc_id = indices[j]
        if strip:
            document = strip_gutenberg(document)
        # Hard-wrapped text (paragraphs separated by blank lines) vs one paragraph per line (e.g. WikiText).
        blocks = _BLANK_LINES.split(document) if _BLANK_LINES.search(document) else document.splitlines()
        for block in blocks:
            paragraph = " ".join(line.strip() for line in block.splitlines() if line.strip())
            if paragraph:
                texts.append(paragraph)
                doc_ids.append(doc_id)
    return {"text": texts, "doc_id": doc_ids}


def _load_split_files(files: list[str], option: str, strip: bool, streaming: bool):
    kinds = {BUILDERS[file_extension(f)] for f in files}
    if len(kinds) > 1:
        raise UserError(f"{option} mixes file types ({', '.join(sorted(kinds))}); use one format per split")
    kind = kinds.pop()
    for f in files:
        check_utf8(f)
    kwargs = {}
    if kind == "text":
        kwargs["sample_by"] = "document"
    if kind == "csv" and all(file_extension(f) == "tsv" for f in files):
        kwargs.update(delimiter="\t", quoting=csv.QUOTE_NONE)
    try:
        dataset = datasets.load_dataset(kind, data_files={"data": files}, split="data", streaming=streaming, **kwargs)
    except UnicodeDecodeError:
        raise UserError(f"{option}: a file in {', '.join(files)} is not UTF-8 text") from None
    except (ValueError, datasets.exceptions.DatasetGenerationError) as err:
        cause = _root_cause(err)
        if isinstance(cause, UnicodeDecodeError):  # past the first MiB that check_utf8 reads up front
            for f in files:
                check_utf8(f, limit=None)
        raise UserError(
            f"{option} {', '.join(files)} could not be read as {kind}: {str(cause).splitlines()[0][:200]}"
        ) from None
    if kind == "text":
        dataset = dataset.map(
            _documents_to_paragraphs,
            batched=True,
            with_indices=True,
            fn_kwargs={"strip": strip, "cache_version": CACHE_VERSION},
            remove_columns=["text"],
        )
    if not streaming and len(dataset) == 0:
        raise UserError(f"{option} {', '.join(files)} holds no examples")
    return dataset


def demo_files(data_args) -> dict[str, str]:
    """The embedded demo data's split files for `dataset_config_name` (default `corpus`), or a one-line error."""
    name = data_args.dataset_config_name or "corpus"
    if name not in DEMO_NAMES:
        raise UserError(f"dataset_config_name '{name}' is not a demo dataset; expected one of {', '.join(DEMO_NAMES)}")
    return demo_data_files(name)


def load_hub_dataset(data_args, streaming: bool):
    """`datasets.load_dataset(dataset_name, dataset_config_name)`, its `valid` split named `validation`; a network
    failure or an unknown name is one line that says how to run offline."""
    try:
        loaded = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name, streaming=streaming)
    except Exception as err:  # network / unknown dataset: name it and what failed
        raise UserError(
            f"dataset_name {data_args.dataset_name} could not be {'streamed' if streaming else 'loaded'} "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}); offline, pass --train_file instead"
        ) from None
    return {
        ("validation" if split == "valid" and "validation" not in loaded else split): ds
        for split, ds in loaded.items()
    }


def load_raw_datasets(data_args, need_validation: bool = True, seed: int = 42) -> DatasetDict:
    """Splits `train` (if given), `validation` and `test` (if given) from `DataArguments`.

    `dataset_name: demo` loads the embedded demo data (`dataset_config_name`: corpus, classification or
    summarization). Local `--train_file` (and `--validation_file` / `--test_file`) replace a `dataset_name`: a config
    naming a Hub dataset runs offline on local files of the same columns. Without a validation split,
    `validation_split_percentage` of train is held out.
    """
    splits = DatasetDict()
    streaming = data_args.streaming
    if data_args.dataset_name and getattr(data_args, "train_file", None):
        # Local files replace the Hub dataset a config names: the offline override each task YAML documents.
        print(f"--train_file given: using local files instead of --dataset_name {data_args.dataset_name}")
    elif data_args.dataset_name == "demo":
        splits.update(datasets.load_dataset("json", data_files=demo_files(data_args), streaming=streaming))
    elif data_args.dataset_name:
        splits.update(load_hub_dataset(data_args, streaming))
    for split, option in (("train", "train_file"), ("validation", "validation_file"), ("test", "test_file")):
        path = getattr(data_args, option, None)
        if path:
            splits[split] = _load_split_files(
                expand_files(path, f"--{option}"), f"--{option}", data_args.strip_gutenberg, streaming
            )
    if not splits:
        raise UserError("no data given: pass --dataset_name (or 'demo') or --train_file")
    if need_validation and "validation" not in splits and "train" in splits and not streaming:
        held_out = splits["train"].train_test_split(test_size=data_args.validation_split_percentage / 100, seed=seed)
        splits["train"], splits["validation"] = held_out["train"], held_out["test"]
    if not streaming:
        if data_args.max_train_samples and "train" in splits:
            splits["train"] = splits["train"].select(range(min(data_args.max_train_samples, len(splits["train"]))))
        for split in ("validation", "test"):
            if data_args.max_eval_samples and split in splits:
                splits[split] = splits[split].select(range(min(data_args.max_eval_samples, len(splits[split]))))
    return splits


def check_columns(dataset, columns, where: str) -> None:
    """Raise a one-line error naming the missing column, the data it was looked for in, and what exists."""
    present = list(dataset.column_names or []) if hasattr(dataset, "column_names") else []
    for column in columns:
        if column and column not in present:
            raise UserError(f"column '{column}' not found in {where}; columns are: {', '.join(present)}")
