"""Embedded demo data: English text that ships with the Python interpreter itself, so quickstarts need no download.

Sources (read from files, never by importing the modules):
- `pydoc_data.topics`: the help topics of the language reference (read as a data file with `ast`);
- docstrings of the standard library's own `.py` files, extracted with `ast`.

Three datasets, each split deterministically (by a hash of the text) 80/10/10 into train/validation/test:
- `corpus`: paragraphs of running text, with a `doc_id` per topic/docstring (MLM and biLM pretraining);
- `classification`: docstring -> which top-level standard-library package it documents (`text`, `label`);
- `summarization`: docstring body -> its one-line summary (`document`, `summary`).
They are written once as jsonl under the toolkit cache (`TOOLKIT_CACHE`, default ~/.cache/toolkit) and loaded
with `datasets`, so tokenization results are cached like any file dataset.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
import os
import sys
import sysconfig
from collections import Counter, defaultdict

DEMO_NAMES = ("corpus", "classification", "summarization")
SPLITS = ("train", "validation", "test")
# Packages of the standard library used as classification labels (each has hundreds of docstrings).
CLASSIFICATION_PACKAGES = ("asyncio", "email", "tkinter", "multiprocessing", "xml", "unittest", "importlib")
MAX_PER_LABEL = 300
_SKIP_DIRS = {
    "test",
    "tests",
    "idlelib",
    "turtledemo",
    "site-packages",
    "__pycache__",
    "lib2to3",
    "distutils",
    "ensurepip",
}


def cache_dir() -> str:
    root = os.environ.get("TOOLKIT_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "toolkit"))
    return os.path.join(root, "demo", f"py{sys.version_info.major}.{sys.version_info.minor}")


def _split_of(text: str) -> str:
    bucket = int(hashlib.md5(text.encode("utf-8")).hexdigest(), 16) % 100
    return "train" if bucket < 80 else "validation" if bucket < 90 else "test"


def _stdlib_files():
    root = sysconfig.get_paths()["stdlib"]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                yield os.path.relpath(path, root), path


@functools.lru_cache(maxsize=1)
def stdlib_docstrings() -> tuple[tuple[str, str], ...]:
    """(relative path, docstring) for every module/class/function docstring of the standard library."""
    return tuple(_iter_stdlib_docstrings())


def _iter_stdlib_docstrings():
    for rel, path in _stdlib_files():
        try:
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                doc = ast.get_docstring(node, clean=True)
                if doc and len(doc) >= 40:
                    yield rel, doc


def pydoc_topics() -> dict[str, str]:
    """The `pydoc_data.topics` help texts, parsed from the file (a dict literal) without importing it."""
    root = sysconfig.get_paths()["stdlib"]
    path = os.path.join(root, "pydoc_data", "topics.py")
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "topics":
            return ast.literal_eval(node.value)
    return {}


def _paragraphs(text: str) -> list[str]:
    paragraphs = []
    for block in text.split("\n\n"):
        block = " ".join(line.strip() for line in block.strip().splitlines() if line.strip())
        if len(block) >= 20:
            paragraphs.append(block)
    return paragraphs


def build_corpus() -> dict[str, list[dict]]:
    rows = {split: [] for split in SPLITS}
    documents = [(f"pydoc:{k}", v) for k, v in sorted(pydoc_topics().items())]
    documents += [(f"{rel}:{i}", doc) for i, (rel, doc) in enumerate(stdlib_docstrings())]
    for doc_id, (name, text) in enumerate(documents):
        split = _split_of(name + text)
        for paragraph in _paragraphs(text):
            rows[split].append({"text": paragraph, "doc_id": doc_id})
    return rows


def build_classification() -> dict[str, list[dict]]:
    per_label: dict[str, list[str]] = defaultdict(list)
    seen = set()
    for rel, doc in stdlib_docstrings():
        package = rel.split(os.sep)[0]
        if package in CLASSIFICATION_PACKAGES and doc not in seen and len(per_label[package]) < MAX_PER_LABEL:
            seen.add(doc)
            per_label[package].append(" ".join(doc.split())[:1000])
    rows = {split: [] for split in SPLITS}
    for label in CLASSIFICATION_PACKAGES:
        for text in per_label[label]:
            rows[_split_of(text)].append({"text": text, "label": label})
    return rows


def build_summarization() -> dict[str, list[dict]]:
    rows = {split: [] for split in SPLITS}
    seen = set()
    for _, doc in stdlib_docstrings():
        lines = inspect.cleandoc(doc).splitlines()
        if len(lines) < 3 or lines[1].strip() or not lines[0].strip().endswith("."):
            continue
        summary, body = lines[0].strip(), " ".join(" ".join(lines[2:]).split())
        if not (15 <= len(summary) <= 120 and 80 <= len(body) <= 1200) or body in seen:
            continue
        seen.add(body)
        rows[_split_of(body)].append({"document": body, "summary": summary})
    return rows


_BUILDERS = {"corpus": build_corpus, "classification": build_classification, "summarization": build_summarization}


def demo_data_files(name: str, directory: str | None = None) -> dict[str, str]:
    """Write the demo dataset `name` as jsonl (once) and return {split: path}."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown demo dataset '{name}': expected one of {', '.join(DEMO_NAMES)}")
    directory = directory or os.path.join(cache_dir(), name)
    files = {split: os.path.join(directory, f"{split}.jsonl") for split in SPLITS}
    if all(os.path.isfile(p) for p in files.values()):
        return files
    rows = _BUILDERS[name]()
    os.makedirs(directory, exist_ok=True)
    for split, path in files.items():
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            for row in rows[split]:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        os.replace(tmp, path)  # atomic: concurrent processes never see a half-written file
    return files


def demo_stats() -> dict[str, dict[str, int]]:
    """Number of rows per split of each demo dataset (documented in the README)."""
    stats = {}
    for name in DEMO_NAMES:
        files = demo_data_files(name)
        stats[name] = {split: sum(1 for _ in open(path, encoding="utf-8")) for split, path in files.items()}
    return stats


def label_counts(name: str = "classification", split: str = "train") -> Counter:
    with open(demo_data_files(name)[split], encoding="utf-8") as f:
        return Counter(json.loads(line)["label"] for line in f)


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo-data", help="Write the embedded demo datasets as jsonl and print their sizes."
    )
    parser.add_argument("--out", default=None, help="Folder to write into (default: the toolkit cache).")

    def run(args):
        for name in DEMO_NAMES:
            files = demo_data_files(name, os.path.join(args.out, name) if args.out else None)
            sizes = {split: sum(1 for _ in open(p, encoding="utf-8")) for split, p in files.items()}
            print(name, json.dumps(sizes), os.path.dirname(files["train"]))

    parser.set_defaults(func=run)
