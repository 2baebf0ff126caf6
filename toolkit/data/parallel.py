"""Line-aligned parallel text as fairseq users keep it: `prefix.de` + `prefix.en` (`.gz` ok).

- `read_lines`: the lines of a UTF-8 text file (optionally gzipped), without line endings.
- `is_parallel_prefix`: whether `path` names such a pair of files rather than a file of its own.
- `read_parallel`: the (source, target) pairs, with one-line errors for a missing, empty or misaligned side.
"""

from __future__ import annotations

import gzip
import os

from toolkit.errors import UserError


def read_lines(path: str) -> list[str]:
    """Lines of a UTF-8 text file (optionally .gz), without the trailing newline (`\\n` or `\\r\\n`)."""
    if not os.path.isfile(path):
        raise UserError(f"file {path} does not exist")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            return [line.rstrip("\r\n") for line in f]
    except UnicodeDecodeError:
        raise UserError(f"{path} is not UTF-8 text") from None


def parallel_file(prefix: str, lang: str) -> str | None:
    """`prefix.lang` or `prefix.lang.gz`, whichever exists (None: neither)."""
    for path in (f"{prefix}.{lang}", f"{prefix}.{lang}.gz"):
        if os.path.isfile(path):
            return path
    return None


def is_parallel_prefix(path: str | None, source_lang: str | None, target_lang: str | None) -> bool:
    return bool(path and source_lang and target_lang and not os.path.exists(path)) and (
        parallel_file(path, source_lang) is not None or parallel_file(path, target_lang) is not None
    )


def read_parallel(prefix: str, source_lang: str, target_lang: str, option: str) -> list[tuple[str, str]]:
    """`prefix.source_lang` and `prefix.target_lang`, line-aligned, as (source, target) pairs; `option` (e.g.
    "--train_file") names where the prefix came from in errors."""
    files = [parallel_file(prefix, source_lang), parallel_file(prefix, target_lang)]
    for path, lang in zip(files, (source_lang, target_lang)):
        if path is None:
            raise UserError(f"{option} {prefix}: parallel file {prefix}.{lang} does not exist")
    sources, targets = read_lines(files[0]), read_lines(files[1])
    for path, lines in zip(files, (sources, targets)):
        if not any(line.strip() for line in lines):
            raise UserError(f"{option} {prefix}: parallel file {path} is empty")
    if len(sources) != len(targets):
        raise UserError(
            f"{option} {prefix}: {files[0]} has {len(sources)} lines but {files[1]} has {len(targets)} lines; "
            "parallel files must be line-aligned"
        )
    return list(zip(sources, targets))
