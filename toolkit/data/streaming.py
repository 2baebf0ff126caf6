"""Streaming pretraining data for corpora of any size: read, tokenize, pack and mask on the fly, rank-sharded, with
an exact, cheap resume.

Sources are local files or folders (txt, jsonl, parquet, each optionally gzipped; the embedded demo corpus is
jsonl), or a `datasets` streaming dataset (`--dataset_name`: a Hub dataset; its data files are the shards and a
position inside one is `datasets`' own `state_dict`). Local files are cut into *shards* once, the same way in every process and independently of the number of processes:
an uncompressed txt/jsonl file into byte ranges of about `--stream_shard_bytes` (cut at paragraph or line
boundaries), a parquet file into its row groups, a gzipped file is one shard (it cannot be entered in the middle).

Each process runs `dataloader_num_workers` DataLoader workers (at least one stream, in-process when 0); stream `g` of
the `G = processes x workers` streams reads shards `order[g::G]`, where `order` is a seeded permutation of the shards
that changes with every pass over the data. So the streams together read every shard exactly once per pass, no two
ranks read the same example, and no rank reads another's files. Inside a stream, rows are tokenized in batches with
the fast tokenizer, packed into blocks of `max_seq_length` (`[CLS] ... [SEP]`, never across documents or shards) or
kept one per row (`line_by_line`), gathered into windows of `--shuffle_buffer_size` examples whose order is a seeded
random permutation, then batched and masked by the recipe's collator, all inside the worker.

Exact resume. A stream's position is a small JSON object: the pass, the shard, the byte/row offset where the current
window started, the few tokens carried into the next block, the window's number and how many of its examples were
already consumed. Every batch carries the position after it; the training process keeps the position of the last
batch it consumed from each stream, and the checkpoint stores them for every rank (`StreamingLoader.sync` gathers
them, then `save_checkpoint` writes them through `accelerator.register_for_checkpointing`). Resuming seeks each file
to its offset and re-tokenizes at most one window (bounded by the shuffle buffer, not by how far the run got), so a
resumed run trains on exactly the batches of the uninterrupted one. Each example's masking depends only on
(seed, pass, shard, example number in the shard), never on the process or worker that reads it.

What does not hold: N processes do not see the same global batches as one process with an N times larger batch
(each stream orders its own shards); a resumed run must use the same number of processes and workers, the same
shard size, buffer and block length (checked, one-line error otherwise).
"""

from __future__ import annotations

import copy
import gzip
import json
import os
import random
import re
import time

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from toolkit.errors import UserError

ROWS_PER_READ = 256  # rows tokenized per fast-tokenizer batch call
READ_CHUNK = 1 << 20
DONE = -2  # a shard position: nothing left to read
TRACE_ENV = "TOOLKIT_STREAM_TRACE_DIR"  # tests: each rank appends the example ids it trained on to a file there
_PARAGRAPH_SEP = re.compile(rb"\r?\n[ \t]*\r?\n")
_LINE_SEP = re.compile(rb"\n")
_START, _END = b"*** START OF", b"*** END OF"
_GUTENBERG_TAIL = (b"end of the project gutenberg", b"end of project gutenberg")
STREAM_KINDS = {"txt": "text", "raw": "text", "tokens": "text", "text": "text", "jsonl": "json", "json": "json"}
STREAM_KINDS["parquet"] = "parquet"


def mix(*parts: int) -> int:
    """A 63-bit integer hash of integers (splitmix64 steps): example ids and permutation seeds."""
    x = 0x9E3779B97F4A7C15
    for part in parts:
        x = (x ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        x = (x ^ (x >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return x >> 1


# ----------------------------------------------------------------------------------------------------------------
# planning: files -> shards


def _line_start(data, i: int) -> bool:
    j = i - 1
    while j >= 0 and data[j : j + 1] in (b" ", b"\t"):
        j -= 1
    return j < 0 or data[j : j + 1] == b"\n"


def _find_marker(data, marker: bytes, start: int = 0) -> int:
    """Offset of the first `marker` at a line start (after blanks), or -1."""
    i = data.find(marker, start)
    while i >= 0 and not _line_start(data, i):
        i = data.find(marker, i + 1)
    return i


def _open(path: str):
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def plan_file(path: str, index: int, text_column: str, strip: bool, shard_bytes: int) -> tuple[dict, list[dict]]:
    """File facts (kind, text mode, columns) and its shards."""
    name = os.path.basename(path).lower()
    ext = (name[:-3] if name.endswith(".gz") else name).rsplit(".", 1)[-1]
    kind = STREAM_KINDS.get(ext)
    if kind is None:
        raise UserError(f"--streaming reads txt, jsonl and parquet files (.gz ok); {path} is not one of them")
    info = {"path": path, "kind": kind, "gz": name.endswith(".gz"), "mode": "line", "columns": [text_column]}
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as err:
            raise UserError(f"{path} could not be read as parquet: {str(err).splitlines()[0]}") from None
        info["columns"] = list(pf.schema_arrow.names)
        if text_column not in info["columns"]:
            raise UserError(f"column '{text_column}' not found in {path}; columns are: {', '.join(info['columns'])}")
        shards = [
            {"file": index, "start": g, "end": g}
            for g in range(pf.num_row_groups)
            if pf.metadata.row_group(g).num_rows
        ]
        return info, shards
    with _open(path) as f:
        head = f.read(READ_CHUNK)
    if not head.strip():
        raise UserError(f"{path} is empty")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:
            raise UserError(
                f"{path} is not UTF-8 text (invalid byte at offset {err.start}); re-encode it as UTF-8"
            ) from None
    if kind == "json":
        first = head.lstrip()[:1]
        if first == b"[":
            raise UserError(f"--streaming reads JSON Lines (one object per line); {path} holds a JSON array")
        try:
            row = json.loads(head.split(b"\n", 1)[0])
        except ValueError:
            raise UserError(f"{path}: the first line is not a JSON object (--streaming reads JSON Lines)") from None
        info["columns"] = list(row) if isinstance(row, dict) else []
        if text_column not in info["columns"]:
            raise UserError(f"column '{text_column}' not found in {path}; columns are: {', '.join(info['columns'])}")
    start, end = 0, None
    if kind == "text":
        if strip:  # Gutenberg: START in the first MiB, END in the last MiB (gzip: END found while reading)
            i = _find_marker(head, _START)
            if i >= 0:
                nl = head.find(b"\n", i)
                start = nl + 1 if nl >= 0 else len(head)
            if not info["gz"]:
                size = os.path.getsize(path)
                with open(path, "rb") as f:
                    tail_at = max(start, size - READ_CHUNK)
                    f.seek(tail_at)
                    j = _find_marker(f.read(), _END)
                if j >= 0:
                    end = tail_at + j
        body = head[start:] if start < len(head) else b""
        info["mode"] = "paragraph" if _PARAGRAPH_SEP.search(body) else "line"
    if info["gz"]:
        return info, [{"file": index, "start": start, "end": -1}]
    end = os.path.getsize(path) if end is None else end
    sep = _PARAGRAPH_SEP if info["mode"] == "paragraph" else _LINE_SEP
    cuts = [start]
    with open(path, "rb") as f:
        x = start + shard_bytes
        while x < end:
            f.seek(x)
            window = f.read(65536)
            m = sep.search(window)
            while m is None and len(window) < end - x and len(window) < (64 << 20):
                more = f.read(65536)
                if not more:
                    break
                window += more
                m = sep.search(window)
            if m is None:
                break
            cut = x + m.end()
            if cut >= end:
                break
            cuts.append(cut)
            x = cut + shard_bytes
    cuts.append(end)
    shards = [{"file": index, "start": a, "end": b} for a, b in zip(cuts, cuts[1:]) if b > a]
    return info, shards


class TextStream:
    """A streamed split: its files and shards (planned once, deterministically). `iter()` reads its first rows in
    file order (the tokenizer's training sample); the training pipeline reads it through `PackedStream`."""

    def __init__(
        self, files: list[str], option: str, text_column: str, strip: bool, shard_bytes: int, limit=None, key=None
    ):
        self.option = option
        self.text_column = text_column
        self.key = key or text_column  # the column name its batches carry (--validation_text_column renames)
        self.sample_limit = limit
        self.files, self.shards = [], []
        for i, path in enumerate(files):
            info, shards = plan_file(path, i, text_column, strip, shard_bytes)
            self.files.append(info)
            self.shards.extend(shards)
        if not self.shards:
            raise UserError(f"{option} {', '.join(files)} holds no text")
        self.column_names = [self.key if c == text_column else c for c in self.files[0]["columns"]]
        self.start_override: dict[int, int] = {}  # shard -> first position used (rows held out for validation)

    def fingerprint(self) -> dict:
        return {"files": [os.path.basename(f["path"]) for f in self.files], "shards": len(self.shards)}

    def reader(self, shard_index: int, pos=None):
        shard = self.shards[shard_index]
        info = self.files[shard["file"]]
        if pos is None:
            pos = self.start_override.get(shard_index)
        if info["kind"] == "parquet":
            return _ParquetRows(info, shard, pos or 0, self.text_column)
        return _ByteRows(info, shard, shard["start"] if pos is None else pos, self.text_column)

    def iter(self, batch_size: int = 1000):
        """{text_column: [...]} batches of the first `sample_limit` rows (all if None), in file order."""
        left = self.sample_limit
        for s in range(len(self.shards)):
            reader = self.reader(s)
            while left is None or left > 0:
                n = batch_size if left is None else min(batch_size, left)
                texts, _ = reader.read(n)
                if not texts:
                    break
                if left is not None:
                    left -= len(texts)
                yield {self.key: texts}
            reader.close()
            if left is not None and left <= 0:
                return


class _ByteRows:
    """Rows (paragraphs, lines or JSON objects) of a txt/jsonl shard from byte offset `pos` (uncompressed offset for
    gzip, where seeking decompresses up to it)."""

    def __init__(self, info: dict, shard: dict, pos: int, text_column: str):
        self.info, self.text_column = info, text_column
        self.sep = _PARAGRAPH_SEP if info["mode"] == "paragraph" else _LINE_SEP
        self.end = None if shard["end"] < 0 else shard["end"]
        self.f = _open(info["path"])
        self.file_pos = pos  # offset of the end of `buf`
        self.buf, self.i, self.buf_start = b"", 0, pos
        self.stopped = pos == DONE  # past a Gutenberg END line: nothing more in this shard
        self.eof = self.stopped or (self.end is not None and pos >= self.end)
        if not self.stopped:
            self.f.seek(pos)
        self.doc = shard["file"]

    @property
    def pos(self) -> int:
        return DONE if self.stopped else self.buf_start + self.i

    @property
    def exhausted(self) -> bool:
        if not self.eof and self.end is not None and self.file_pos >= self.end:
            self.eof = True
        return self.stopped or (self.eof and not self.buf[self.i :].strip())

    def _fill(self) -> None:
        self.buf, self.buf_start, self.i = self.buf[self.i :], self.buf_start + self.i, 0
        n = READ_CHUNK if self.end is None else min(READ_CHUNK, self.end - self.file_pos)
        chunk = self.f.read(n) if n > 0 else b""
        if not chunk:
            self.eof = True
        self.buf += chunk
        self.file_pos += len(chunk)

    def _row(self, record: bytes):
        """(text, doc) of one record, or None to skip it; raises StopIteration at a Gutenberg END line."""
        if self.info["kind"] == "json":
            record = record.strip()
            if not record:
                return None
            try:
                row = json.loads(record)
                text = row[self.text_column]
            except (ValueError, KeyError, TypeError):
                raise UserError(
                    f"{self.info['path']}: the line at byte {self.pos} is not a JSON object with '{self.text_column}'"
                ) from None
            return (text, row.get("doc_id")) if text else None
        if self.info["mode"] == "paragraph":
            text = b" ".join(line.strip() for line in record.splitlines() if line.strip())
        else:
            text = record.strip()
        if not text:
            return None
        if text.startswith(_END):
            raise StopIteration
        if text[:32].lower().startswith(_GUTENBERG_TAIL):
            return None
        return text.decode("utf-8", "replace"), self.doc

    def read(self, n: int) -> tuple[list, list]:
        texts, docs = [], []
        while len(texts) < n:
            m = self.sep.search(self.buf, self.i)
            if m is None:
                if not self.eof:
                    self._fill()
                    continue
                if self.i >= len(self.buf):
                    break
                record, self.i = self.buf[self.i :], len(self.buf)
            else:
                record, self.i = self.buf[self.i : m.start()], m.end()
            try:
                row = self._row(record)
            except StopIteration:  # the licence after Gutenberg's END line is not text
                self.eof = self.stopped = True
                break
            if row is not None:
                texts.append(row[0])
                docs.append(row[1])
        return texts, docs

    def close(self) -> None:
        self.f.close()


class _ParquetRows:
    """Rows of one parquet row group from row `pos`."""

    def __init__(self, info: dict, shard: dict, pos: int, text_column: str):
        import pyarrow.parquet as pq

        columns = [text_column] + (["doc_id"] if "doc_id" in info["columns"] else [])
        table = pq.ParquetFile(info["path"]).read_row_group(shard["start"], columns=columns)
        self.texts = table.column(text_column).to_pylist()
        self.docs = table.column("doc_id").to_pylist() if "doc_id" in columns else [shard["file"]] * len(self.texts)
        self.row = pos

    @property
    def pos(self) -> int:
        return self.row

    @property
    def exhausted(self) -> bool:
        return self.row >= len(self.texts)

    def read(self, n: int) -> tuple[list, list]:
        texts, docs = [], []
        while len(texts) < n and self.row < len(self.texts):
            if self.texts[self.row]:
                texts.append(self.texts[self.row])
                docs.append(self.docs[self.row])
            self.row += 1
        return texts, docs

    def close(self) -> None:
        pass


class _HubRows:
    """Rows of one shard of a `datasets.IterableDataset` (Hub or local builder), from its saved `state_dict`; a
    resume lets `datasets` skip to the position inside the shard (raw rows re-read, never re-tokenized)."""

    def __init__(self, dataset, shard: int, pos, text_column: str):
        self.part = dataset.shard(dataset.num_shards, index=shard, contiguous=True)
        if pos is not None:
            self.part.load_state_dict(copy.deepcopy(pos))
        self.rows, self.text_column, self.shard, self.exhausted = iter(self.part), text_column, shard, False

    @property
    def pos(self):
        return copy.deepcopy(self.part.state_dict())

    def read(self, n: int) -> tuple[list, list]:
        texts, docs = [], []
        while len(texts) < n and not self.exhausted:
            try:
                row = next(self.rows)
            except StopIteration:
                self.exhausted = True
                break
            if row.get(self.text_column):
                texts.append(row[self.text_column])
                docs.append(row.get("doc_id", self.shard))
        return texts, docs

    def close(self) -> None:
        pass


class HubStream(TextStream):
    """A streamed split of `datasets.load_dataset(..., streaming=True)`: its shards are the dataset's own (its data
    files), positions are `datasets`' JSON state dicts."""

    def __init__(self, dataset, name: str, text_column: str, limit=None):
        self.option, self.text_column, self.sample_limit, self.dataset = "--dataset_name", text_column, limit, dataset
        self.key = text_column
        self.files, self.shards = [], [{"file": 0, "start": 0, "end": 0} for _ in range(dataset.num_shards)]
        self.name = name
        self.column_names = list(dataset.column_names or next(iter(dataset)).keys())
        if text_column not in self.column_names:
            raise UserError(f"column '{text_column}' not found in {name}; columns are: {', '.join(self.column_names)}")
        self.start_override = {}

    def fingerprint(self) -> dict:
        return {"files": [self.name], "shards": len(self.shards)}

    def reader(self, shard_index: int, pos=None):
        if pos is None:
            pos = self.start_override.get(shard_index)
        return _HubRows(self.dataset, shard_index, pos, self.text_column)


def open_text_streams(data_args) -> dict[str, TextStream]:
    """`train` / `validation` / `test` TextStreams from `--train_file` etc. or the demo corpus (`--streaming`)."""
    from toolkit.data.arguments import split_text_column
    from toolkit.data.loading import demo_files, expand_files, load_hub_dataset

    paths, streams = {}, {}
    if data_args.dataset_name and data_args.train_file:
        # Local files replace the dataset a config names (as without --streaming): no split comes from it.
        print(f"--train_file given: using local files instead of --dataset_name {data_args.dataset_name}")
    elif data_args.dataset_name == "demo":
        paths = {split: [path] for split, path in demo_files(data_args).items()}
    elif data_args.dataset_name:
        for split, dataset in load_hub_dataset(data_args, streaming=True).items():
            if split in ("train", "validation", "test"):
                limit = data_args.tokenizer_train_samples if split == "train" else None
                streams[split] = HubStream(
                    dataset, f"{data_args.dataset_name} [{split}]", data_args.text_column, limit
                )
    for split, option in (("train", "train_file"), ("validation", "validation_file"), ("test", "test_file")):
        if getattr(data_args, option, None):
            paths[split] = expand_files(getattr(data_args, option), f"--{option}")
            streams.pop(split, None)
    if "train" not in paths and "train" not in streams:
        raise UserError("pretraining needs training text: pass --train_file or --dataset_name")
    for split, files in paths.items():
        streams[split] = TextStream(
            files,
            f"--{split}_file",
            split_text_column(data_args, split),
            data_args.strip_gutenberg,
            data_args.stream_shard_bytes,
            data_args.tokenizer_train_samples if split == "train" else None,
            key=data_args.text_column,
        )
    return streams


# ----------------------------------------------------------------------------------------------------------------
# tokenize + pack: the examples of one stream


class Packer:
    """Turns rows into examples: packed blocks `[CLS] tokens [SEP]` of `block_size` (never across documents or
    shards), or one truncated example per row (`line_by_line`). State (the carried tokens) lives in the stream
    position dict `st`, so it is saved with it."""

    def __init__(self, tokenizer, block_size: int, line_by_line: bool = False):
        self.backend = tokenizer.backend_tokenizer
        # the same ids as `encode_batch`, without computing character offsets (tokenizers >= 0.21)
        self.encode = getattr(self.backend, "encode_batch_fast", self.backend.encode_batch)
        self.block_size = block_size
        self.line_by_line = line_by_line
        self.cls, self.sep = tokenizer.cls_token_id, tokenizer.sep_token_id
        self.body = block_size - 2

    def _example(self, ids: list[int], st: dict, shard: int) -> dict:
        example_id = mix(st["pass"], shard, st["count"])
        st["count"] += 1
        return {"input_ids": [self.cls, *ids, self.sep], "example_id": example_id}

    def rows(self, texts: list[str], docs: list, st: dict, shard: int) -> list[dict]:
        encoded = self.encode(texts, add_special_tokens=False)
        out = []
        if self.line_by_line:
            for enc in encoded:
                if enc.ids:
                    out.append(self._example(enc.ids[: self.body], st, shard))
            return out
        carry = st["carry"]
        for enc, doc in zip(encoded, docs):
            if doc != st["carry_doc"]:
                if carry:
                    out.append(self._example(carry, st, shard))
                carry = []
                st["carry_doc"] = doc
            carry.extend(enc.ids)
            start = 0
            while len(carry) - start >= self.body:
                out.append(self._example(carry[start : start + self.body], st, shard))
                start += self.body
            carry = carry[start:]
        st["carry"] = carry
        return out

    def flush(self, st: dict, shard: int) -> list[dict]:
        """End of a shard: the carried tokens become a last, shorter block."""
        carry, st["carry"], st["carry_doc"] = st["carry"], [], None
        return [self._example(carry, st, shard)] if carry and not self.line_by_line else []


class PairPacker(Packer):
    """NSP / SOP sentence pairs made on the fly, document-aware as `toolkit.data.mlm.build_sentence_pairs` does in
    memory (BERT appendix A.2, ALBERT): the rows of a document (consecutive rows with the same `doc_id`; a txt file's
    paragraphs) are its sentences, gathered into chunks up to a target length (drawn per document, shorter with
    `short_seq_prob`); a chunk is cut at a random sentence into A and B. SOP swaps A and B half the time (label 1);
    NSP replaces B half the time by a span of *another* document (label 1) and returns the unused sentences of the
    chunk to the next one. In a stream the other document is the most recent one: the last `max_tokens` tokens of
    sentences before the current document (a shard boundary also starts a new document), kept in the position, so
    a txt file (one document) gets negatives from the stream's previous shard. Every random choice is drawn from
    (seed, pass, shard, pairs made in the shard); the state (current chunk, target, recent sentences) is small JSON
    and resumes exactly. The NSP negatives depend on the stream's previous document, so on the stream layout
    (processes x workers, which a resume must keep anyway)."""

    def __init__(self, tokenizer, block_size: int, objective: str, short_seq_prob: float, seed: int):
        super().__init__(tokenizer, block_size)
        self.objective, self.short_seq_prob, self.seed = objective, short_seq_prob, seed
        self.max_tokens = block_size - 3  # [CLS] A [SEP] B [SEP]

    def _rng(self, st: dict, shard: int, *salt: int) -> random.Random:
        return random.Random(mix(self.seed, st["pass"], shard, st["count"], st.get("made", 0), *salt))

    def _pair(self, chunk: list, st: dict, shard: int) -> tuple[list[dict], list]:
        """One pair from `chunk` (or none) and the sentences that go back to the pool."""
        from toolkit.data.mlm import _truncate_pair, pair_to_features

        rng = self._rng(st, shard)
        st["made"] = st.get("made", 0) + 1
        nsp = self.objective == "nsp"
        if not (len(chunk) >= 2 or (nsp and chunk)):
            return [], []
        a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
        a = [t for sentence in chunk[:a_end] for t in sentence]
        b, label, rest = [], 0, []
        other = st.get("other") or []
        if nsp and (len(chunk) == 1 or rng.random() < 0.5) and other:
            label = 1
            for sentence in other[rng.randrange(len(other)) :]:
                b.extend(sentence)
                if len(b) >= self.max_tokens - len(a):
                    break
            rest = chunk[a_end:]
        else:
            b = [t for sentence in chunk[a_end:] for t in sentence]
            if self.objective == "sop" and rng.random() < 0.5:
                a, b, label = b, a, 1
        a, b = _truncate_pair(a, b, self.max_tokens, rng)
        if not (a and b):
            return [], rest
        example = pair_to_features(a, b, label, self.cls, self.sep)
        example["example_id"] = mix(st["pass"], shard, st["count"])
        st["count"] += 1
        return [example], rest

    def _target(self, st: dict, shard: int) -> int:
        rng = self._rng(st, shard, 1)
        return self.max_tokens if rng.random() >= self.short_seq_prob else rng.randint(2, self.max_tokens)

    def _remember(self, st: dict, sentence: list[int]) -> None:
        """The current document's last sentences, up to `max_tokens` tokens: the next document's 'other'."""
        recent = st.setdefault("recent", [])
        recent.append(sentence)
        while sum(map(len, recent)) - len(recent[0]) >= self.max_tokens:
            recent.pop(0)

    def _end_document(self, st: dict, shard: int) -> list[dict]:
        out, chunk = [], st["carry"]
        while chunk:  # the document's last chunk; NSP may return sentences, which make another chunk
            made, rest = self._pair(chunk, st, shard)
            out.extend(made)
            chunk = rest
        st["carry"], st["length"] = [], 0
        st["other"], st["recent"] = st.get("recent") or st.get("other") or [], []
        return out

    def rows(self, texts: list[str], docs: list, st: dict, shard: int) -> list[dict]:
        encoded = self.encode(texts, add_special_tokens=False)
        out = []
        for enc, doc in zip(encoded, docs):
            if not enc.ids:
                continue
            if doc != st["carry_doc"] or st.get("target") is None:
                out.extend(self._end_document(st, shard))
                st["carry_doc"], st["target"] = doc, self._target(st, shard)
            st["carry"].append(enc.ids)
            st["length"] = st.get("length", 0) + len(enc.ids)
            self._remember(st, enc.ids)
            if st["length"] >= st["target"]:
                made, rest = self._pair(st["carry"], st, shard)
                out.extend(made)
                st["carry"], st["length"] = rest, sum(map(len, rest))
        return out

    def flush(self, st: dict, shard: int) -> list[dict]:
        """End of a shard: the end of a document."""
        out = self._end_document(st, shard)
        st["carry_doc"], st["target"], st["made"] = None, None, 0
        return out


def fresh_position() -> dict:
    return {"pass": 0, "cursor": 0, "pos": None, "count": 0, "carry": [], "carry_doc": None, "window": 0, "skip": 0}


class PackedStream:
    """The examples of stream `index` of `num_streams`: its shards of each pass, packed, shuffled in windows."""

    def __init__(
        self,
        source: TextStream,
        packer,
        seed: int,
        buffer_size: int,
        index: int,
        num_streams: int,
        shuffle_shards=None,
    ):
        self.source, self.packer, self.seed = source, packer, seed
        self.buffer_size, self.index, self.num_streams = buffer_size, index, num_streams
        # shards are visited in a new seeded order every pass when examples are shuffled (or when asked explicitly)
        self.shuffle_shards = buffer_size > 1 if shuffle_shards is None else shuffle_shards
        self.rows_per_read = ROWS_PER_READ  # rows per tokenizer call; a window re-read on resume is at least one read

    def shards_of_pass(self, p: int) -> list[int]:
        order = list(range(len(self.source.shards)))
        if self.shuffle_shards:
            random.Random(mix(self.seed, p)).shuffle(order)
        return order[self.index :: self.num_streams]

    def _fill(self, st: dict, state: dict) -> list[dict]:
        """Read rows from position `st` (updated) until a window's worth of examples is there; a window never spans
        two passes (the position after a pass's last window is the start of the next pass)."""
        want = max(1, self.buffer_size)
        out: list[dict] = []
        mine = self.shards_of_pass(st["pass"])
        if not mine:
            raise RuntimeError(f"stream {self.index} of {self.num_streams} has no shard to read")
        rows_in_pass = 0 if st["cursor"] == 0 and st["pos"] is None else None  # None: the pass began earlier
        while len(out) < want:
            shard = mine[st["cursor"]]
            key = (shard, st["pos"])
            reader = state.get("reader")
            if reader is None or state.get("key") != key:
                if reader is not None:
                    reader.close()
                reader = self.source.reader(shard, st["pos"])
            texts, docs = reader.read(self.rows_per_read)
            if texts:
                out.extend(self.packer.rows(texts, docs, st, shard))
                st["pos"] = reader.pos
                state["reader"], state["key"] = reader, (shard, st["pos"])
                rows_in_pass = None if rows_in_pass is None else rows_in_pass + len(texts)
                if not reader.exhausted:
                    continue
            out.extend(self.packer.flush(st, shard))  # end of the shard
            reader.close()
            state["reader"] = None
            st["cursor"], st["pos"], st["count"] = st["cursor"] + 1, None, 0
            if st["cursor"] == len(mine):  # end of the pass
                if rows_in_pass == 0:
                    raise RuntimeError(f"stream {self.index} of {self.num_streams} found no text in a whole pass")
                st["pass"], st["cursor"] = st["pass"] + 1, 0
                break
        return out

    def __iter__(self):
        """Yields (example, position after it)."""
        yield from self.iterate(fresh_position())

    def iterate(self, position: dict):
        window_start = {k: v for k, v in position.items() if k != "skip"}
        skip = position.get("skip", 0)
        cache: dict = {}
        while True:
            st = json.loads(json.dumps(window_start))  # deep copy; stays JSON-serialisable
            examples = self._fill(st, cache)
            order = list(range(len(examples)))
            if self.buffer_size > 1:
                random.Random(mix(self.seed, self.index, st["pass"], window_start["window"])).shuffle(order)
            st["window"] = window_start["window"] + 1
            for k in range(skip, len(order)):
                after = {**st, "skip": 0} if k == len(order) - 1 else {**window_start, "skip": k + 1}
                yield examples[order[k]], after
            window_start, skip = st, 0


def take_examples(source: TextStream, packer: Packer, n: int | None, hold_out: bool = False) -> list[dict]:
    """The first `n` examples of `source` in file order (all if None), with `example_id` = their index. With
    `hold_out`, the rows they came from are removed from the training stream (`source.start_override`)."""
    examples: list[dict] = []
    st = fresh_position()
    for s in range(len(source.shards)):
        reader = source.reader(s, None)
        while n is None or len(examples) < n:
            texts, docs = reader.read(ROWS_PER_READ)
            if not texts:
                examples.extend(packer.flush(st, s))
                break
            examples.extend(packer.rows(texts, docs, st, s))
        if hold_out:
            source.start_override[s] = reader.pos
        reader.close()
        st["carry"], st["carry_doc"] = [], None
        if n is not None and len(examples) >= n:
            break
    examples = examples[:n] if n is not None else examples
    return [{**e, "example_id": i} for i, e in enumerate(examples)]


# ----------------------------------------------------------------------------------------------------------------
# the DataLoader side: per-rank streams in workers, positions tracked by the training process


class StreamDataset(IterableDataset):
    """This rank's streams, one per DataLoader worker; yields collated batches with their position attached."""

    def __init__(self, source, packer, collator, batch_size, seed, buffer_size, rank, world, num_workers):
        self.source, self.packer, self.collator = source, packer, collator
        self.batch_size, self.seed, self.buffer_size = batch_size, seed, buffer_size
        self.rank, self.world, self.num_workers = rank, world, max(1, num_workers)
        self.positions: list[dict | None] = [None] * self.num_workers  # by logical stream
        self.offset = 0  # DataLoader worker w plays logical stream (w + offset) % num_workers
        self.trace = bool(os.environ.get(TRACE_ENV))

    def __iter__(self):
        info = get_worker_info()
        worker = info.id if info is not None else 0
        logical = (worker + self.offset) % self.num_workers
        stream = PackedStream(
            self.source,
            self.packer,
            self.seed,
            self.buffer_size,
            self.rank * self.num_workers + logical,
            self.world * self.num_workers,
        )
        position = self.positions[logical] or fresh_position()
        features, after = [], None
        for example, after in stream.iterate(position):
            features.append(example)
            if len(features) == self.batch_size:
                batch = self.collator(features)
                meta = {"stream": logical, "position": after}
                if self.trace:
                    meta["ids"] = [f["example_id"] for f in features]
                batch["stream_position"] = json.dumps(meta)
                yield batch
                features = []


class StreamingLoader:
    """The training batches of a streamed split on this rank, on the device; tracks the stream positions for the
    checkpoint (`sync` + `state_dict` / `load_state_dict`, registered with `accelerator.register_for_checkpointing`)
    and the time the loop waits for data."""

    def __init__(self, accelerator, source, packer, collator, args, buffer_size: int, fingerprint: dict, dataset=None):
        self.accelerator = accelerator
        self.num_workers = args.dataloader_num_workers
        self.dataset = dataset or StreamDataset(
            source,
            packer,
            collator,
            args.per_device_train_batch_size,
            args.seed,
            buffer_size,
            accelerator.process_index,
            accelerator.num_processes,
            self.num_workers,
        )
        self.fingerprint = {
            **fingerprint,
            "processes": accelerator.num_processes,
            "workers": self.dataset.num_workers,
            "batch_size": args.per_device_train_batch_size,
        }
        self.next_stream = 0
        self.consumed = 0
        self._synced: dict | None = None
        self._synced_at = -1
        self.wait_s = 0.0
        self.loop_start: float | None = None

    # --- checkpoint state ---
    def local_state(self) -> dict:
        return {"next_stream": self.next_stream, "positions": self.dataset.positions, "consumed": self.consumed}

    def sync(self, accelerator) -> None:
        """Collective (every process): gather every rank's stream positions for the next checkpoint."""
        from accelerate.utils import gather_object

        ranks = gather_object([self.local_state()]) if accelerator.num_processes > 1 else [self.local_state()]
        self._synced = {"fingerprint": self.fingerprint, "ranks": ranks}
        self._synced_at = self.consumed

    def state_dict(self) -> dict:
        if self._synced_at != self.consumed:
            if self.accelerator.num_processes > 1:
                raise RuntimeError("StreamingLoader.sync(accelerator) must run on every process before saving")
            self.sync(self.accelerator)
        return self._synced

    def load_state_dict(self, state: dict) -> None:
        saved = state["fingerprint"]
        if saved != self.fingerprint:
            diff = ", ".join(f"{k}: {saved.get(k)} -> {v}" for k, v in self.fingerprint.items() if saved.get(k) != v)
            raise UserError(
                f"the checkpoint's stream cannot be resumed exactly with these settings ({diff}); resume with the "
                "same data, processes, dataloader_num_workers, batch size, shard size and block length"
            )
        mine = state["ranks"][self.accelerator.process_index]
        self.dataset.positions = mine["positions"]
        self.next_stream = self.dataset.offset = mine["next_stream"]
        self.consumed = mine["consumed"]

    # --- iteration ---
    def _loader(self) -> DataLoader:
        return DataLoader(
            self.dataset,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            prefetch_factor=4 if self.num_workers else None,
        )

    def __iter__(self):
        device = self.accelerator.device
        non_blocking = device.type == "cuda"
        iterator = iter(self._loader())
        first = True
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(iterator)
            except UserError as err:  # raised in a worker: keep only its message, one line
                lines = [line for line in str(err).strip().splitlines() if line.strip()]
                raise UserError(lines[-1].split("UserError: ", 1)[-1]) from None
            now = time.perf_counter()
            if first:  # worker start-up is not waiting in the steady state
                self.loop_start, first = now, False
            else:
                self.wait_s += now - t0
            meta = json.loads(batch.pop("stream_position"))
            if "ids" in meta:
                self._trace(meta["ids"])
            self.dataset.positions[meta["stream"]] = meta["position"]
            self.next_stream = (meta["stream"] + 1) % self.dataset.num_workers
            self.consumed += 1
            self.on_batch(meta)
            yield {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}

    def on_batch(self, meta: dict) -> None:
        """Called with each batch's metadata before the batch is handed to the loop (subclasses: per-stream state)."""

    def _trace(self, ids: list[int]) -> None:
        path = os.path.join(os.environ[TRACE_ENV], f"stream_ids_rank{self.accelerator.process_index}.txt")
        with open(path, "a", encoding="utf-8") as f:
            f.write(" ".join(map(str, ids)) + "\n")

    def batches(self, accelerator, state):
        """Micro-batches for the training loop, with dropout reseeded per position as `training_batches` does."""
        from toolkit.training.loop import position_seed

        seed = accelerator.dataloader_config.data_seed or 0
        for batch in self:
            torch.manual_seed(position_seed(seed, 0, state.batch_in_epoch, accelerator.process_index))
            state.batch_in_epoch += 1
            yield batch

    def wait_fraction(self) -> float | None:
        """Fraction of the training loop's time spent waiting for the next batch (after the first one)."""
        if self.loop_start is None:
            return None
        return round(self.wait_s / max(1e-9, time.perf_counter() - self.loop_start), 4)


def check_streaming_args(data_args, args) -> None:
    """One-line errors for what streaming cannot do, before any heavy work."""
    if args.max_steps <= 0:
        raise UserError(
            "--streaming needs --max_steps: a stream has no length, so --num_train_epochs cannot set the run length"
        )
    if data_args.max_train_samples:
        raise UserError("--max_train_samples does not apply with --streaming (the run length is --max_steps)")
    if data_args.shuffle_buffer_size < 0:
        raise UserError("--shuffle_buffer_size must be >= 0")


def build_streaming_data(
    accelerator, raw: dict, tokenizer, data_args, args, block_size: int, line_by_line, collator,
    sentence_objective: str = "none", short_seq_prob: float = 0.1,
):  # fmt: skip
    """(StreamingLoader for training, validation examples): validation is the validation split's first
    `max_eval_samples` examples, or without one the first `max_eval_samples` (default 1000) of the training data,
    which are then held out of training. Either way the same examples, masked the same, in every evaluation.
    `sentence_objective` nsp / sop: the examples are sentence pairs (`PairPacker`) instead of packed blocks."""
    if sentence_objective != "none":
        packer = PairPacker(tokenizer, block_size, sentence_objective, short_seq_prob, args.seed)
        eval_packer = PairPacker(tokenizer, block_size, sentence_objective, short_seq_prob, args.seed + 1)
    else:
        packer = eval_packer = Packer(tokenizer, block_size, line_by_line)
    train = raw["train"]
    if "validation" in raw:
        eval_examples = take_examples(raw["validation"], eval_packer, data_args.max_eval_samples)
    else:
        eval_examples = take_examples(train, eval_packer, data_args.max_eval_samples or 1000, hold_out=True)
    if not eval_examples:
        raise UserError("no validation examples could be built: the validation text is empty")
    streams = accelerator.num_processes * max(1, args.dataloader_num_workers)
    if len(train.shards) < streams:
        raise UserError(
            f"the training data has {len(train.shards)} shard(s) but {accelerator.num_processes} process(es) x "
            f"{max(1, args.dataloader_num_workers)} worker(s) need at least {streams}: pass more files, a smaller "
            "--stream_shard_bytes, or fewer --dataloader_num_workers"
        )
    fingerprint = {
        **train.fingerprint(),
        "held_out": sorted(train.start_override.items()),
        "block_size": block_size,
        "line_by_line": bool(line_by_line),
        "sentence_objective": sentence_objective,
        "shuffle_buffer_size": data_args.shuffle_buffer_size,
        "seed": args.seed,
    }
    fingerprint["held_out"] = [list(x) for x in fingerprint["held_out"]]
    loader = StreamingLoader(accelerator, train, packer, collator, args, data_args.shuffle_buffer_size, fingerprint)
    return loader, eval_examples


def refuse_streaming(data_args, recipe: str) -> None:
    """Recipes that load their data whole: `--streaming` is a one-line error, never silently ignored."""
    if data_args.streaming:
        raise UserError(
            f"--streaming is not supported by {recipe}: it loads its data whole (use --max_train_samples / "
            "--max_eval_samples to bound it); streaming is implemented in recipes/pretrain_bert.py and recipes/pretrain_elmo.py"
        )
