"""Streaming ELMo pretraining data: word windows made on the fly, and per-row *lanes* so that LSTM states can be
carried across consecutive windows, on the shards, rank sharding and exact resume of `toolkit/data/streaming.py`.

Words. Every row (paragraph, line or JSON object) becomes `<s> words </s>` (words split by the ELMo tokenizer, as
`recipes/pretrain_elmo.py` does in memory), rows are concatenated into one continuous word stream and cut into
windows of `window_length` words; each window also keeps the word before it and the word after it, the targets of
the backward and forward LM at its edges. The words not yet in a window ride in the stream position (JSON).

`carry_state=False`: the windows are independent examples. Each of the `processes x workers` streams reads its own
shards, shuffles its windows in windows of `--shuffle_buffer_size` and batches them (the BERT path, unchanged).

`carry_state=True` (bilm-tf): batch row `r` of DataLoader worker stream `g` is a *lane*, a word stream of its own
that reads shards `order[l::P*W*B]` (`l = g*B + r`, `order` the seeded shard permutation of the pass) in text order:
consecutive batches of a stream hold consecutive windows of each lane, so every row continues its own text and the
forward LM carries its states across all of a lane's windows, across paragraph and shard boundaries (as the
in-memory recipe does across the rows of its stream). Windows are never shuffled (that would break the text the
states carry); `--shuffle_buffer_size 0` also keeps the shards in file order. The backward LM reads right to left, so
it cannot follow an unbounded stream: each lane is cut into segments of `segment_windows` windows, batch `i` of a
segment gives the backward LM window `S - 1 - i` of the same segment, and its states are carried within the segment
and start from zero at each segment (`LaneStates`). The training loop keeps carried states per worker stream, since
DataLoader workers take turns.

Exact resume: a lane stream's position is the lane positions at the start of the current segment plus the number of
batches done; a resume re-reads, per lane, at most one read batch of rows and one segment, whatever the position. The
carried LSTM states of every stream of every rank are part of the checkpoint (gathered from all ranks), so a resumed
run trains on the same windows with the same states. What does not hold: N processes are not one process with an N
times larger batch (each lane reads its own shards), and a resume must keep processes, workers, batch size, window
and segment length, shard size and buffer (checked, one-line error).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from toolkit.data.streaming import (
    ROWS_PER_READ,
    TRACE_ENV,
    PackedStream,
    StreamingLoader,
    fresh_position,
    mix,
    open_text_streams,
)
from toolkit.errors import UserError

CHAR_CACHE_WORDS = 200_000  # spellings whose ids a worker keeps (the table starts again when full: bounded memory)
LANE_ROWS_PER_READ = 64  # rows per tokenizer call in a lane: a resume re-reads at most this many rows per lane


# ----------------------------------------------------------------------------------------------------------------
# rows -> windows


class WindowPacker:
    """Rows -> windows of one continuous word stream (`<s> words </s>` per row), each `{"words": [before, w_1 ..
    w_L, after], "example_id"}` (`before` is None at the very start). Used by `PackedStream` in place of BERT's
    `Packer`: the words not yet in a window and the last word of the previous window are kept in the position."""

    def __init__(self, tokenizer, length: int):
        self.backend = tokenizer.backend_tokenizer
        self.bos, self.eos = tokenizer.bos_token, tokenizer.eos_token
        self.length = length

    def words(self, texts: list[str]) -> list[str]:
        out: list[str] = []
        for text, encoding in zip(texts, self.backend.encode_batch(texts, add_special_tokens=False)):
            out.append(self.bos)
            out.extend(text[start:end] for start, end in encoding.offsets)
            out.append(self.eos)
        return out

    def rows(self, texts: list[str], docs: list, st: dict, shard: int) -> list[dict]:
        carry = st["carry"] + self.words(texts)
        before = st.get("before")
        out, start, n = [], 0, self.length
        while len(carry) - start > n:  # a window needs the word after it (its last forward target)
            out.append(
                {"words": [before, *carry[start : start + n + 1]], "example_id": mix(st["pass"], shard, st["count"])}
            )
            st["count"] += 1
            before = carry[start + n - 1]
            start += n
        st["carry"], st["before"] = carry[start:], before
        return out

    def flush(self, st: dict, shard: int) -> list[dict]:
        """End of a shard: the stream goes on into the next one (the carried words stay)."""
        return []


class WindowCollator:
    """Windows -> the recipe's batch: vocabulary ids, character ids and next/previous-word targets (the forward LM
    never predicts `<s>`, the backward LM never `</s>`, as the in-memory `StreamWindows`), stacked by `collate_fn`.
    Each distinct spelling gets a row in a table of vocabulary and character ids (at most `CHAR_CACHE_WORDS`, then the
    table starts again), so a window's ids are two array look-ups."""

    def __init__(self, tokenizer, with_chars: bool, collate_fn):
        self.vocab = tokenizer.get_vocab()
        self.unk, self.bos, self.eos = tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
        self.tokenizer, self.with_chars, self.collate_fn = tokenizer, with_chars, collate_fn
        self.width = tokenizer.max_characters_per_token
        self._reset(1024)

    def _reset(self, capacity: int) -> None:
        self.types: dict[str, int] = {}
        self.vocab_of_type = np.zeros(capacity, dtype=np.int64)
        self.chars_of_type = np.zeros((capacity, self.width), dtype=np.int16)

    def _add(self, words: list[str]) -> None:
        start, end = len(self.types) - len(words), len(self.types)
        if end > len(self.vocab_of_type):  # grow by doubling
            grown = max(end, 2 * len(self.vocab_of_type))
            self.vocab_of_type = np.resize(self.vocab_of_type, grown)
            self.chars_of_type = np.resize(self.chars_of_type, (grown, self.width))
        self.vocab_of_type[start:end] = [self.vocab.get(w, self.unk) for w in words]
        if self.with_chars:
            self.chars_of_type[start:end] = self.tokenizer.words_to_char_ids(words)

    def _arrays(self, example: dict) -> tuple[np.ndarray, np.ndarray | None]:
        """Vocabulary ids of the window's words with the words before and after it (-100: none before the stream's
        start), and its character ids; kept in the example, since the backward LM reads the same window again."""
        if "arrays" in example:
            return example["arrays"]
        words = example["words"]
        if len(self.types) + len(words) > CHAR_CACHE_WORDS:
            self._reset(len(self.vocab_of_type))
        types, new = self.types, []
        t = np.empty(len(words), dtype=np.int64)
        for i, word in enumerate(words):
            if word is None:
                t[i] = -1
                continue
            row = types.get(word)
            if row is None:
                row = types[word] = len(types)
                new.append(word)
            t[i] = row
        if new:
            self._add(new)
        ids = np.where(t < 0, -100, self.vocab_of_type[np.maximum(t, 0)])
        chars = self.chars_of_type[t[1:-1]].astype(np.int64) if self.with_chars else None
        example["arrays"] = ids, chars
        return ids, chars

    def _window(self, example: dict, prefix: str, chars: dict) -> tuple[dict, np.ndarray]:
        ids, char_ids = self._arrays(example)  # (L + 2,): before, window, after; (L, C)
        if char_ids is not None:
            chars[prefix].append(char_ids)
        return {f"{prefix}input_ids": torch.from_numpy(ids[1:-1].copy())}, ids

    def _targets(self, ids: np.ndarray, forward: bool) -> torch.Tensor:
        targets = (ids[2:] if forward else ids[:-2]).copy()
        targets[targets == (self.bos if forward else self.eos)] = -100
        return torch.from_numpy(targets)

    def __call__(self, examples: list[dict]) -> dict:
        """Independent windows: both LMs read the same window."""
        items, chars = [], {"": []}
        for example in examples:
            item, ids = self._window(example, "", chars)
            item["forward_labels"] = self._targets(ids, True)
            item["backward_labels"] = self._targets(ids, False)
            items.append(item)
        return self._collate(items, chars)

    def pairs(self, forward: list[dict], backward: list[dict]) -> dict:
        """Carried states: row r reads `forward[r]` with the forward LM and `backward[r]` with the backward LM."""
        items, chars = [], {"": [], "backward_": []}
        for fwd, bwd in zip(forward, backward):
            item, ids = self._window(fwd, "", chars)
            item["forward_labels"] = self._targets(ids, True)
            back, back_ids = self._window(bwd, "backward_", chars)
            item.update(back)
            item["backward_labels"] = self._targets(back_ids, False)
            items.append(item)
        return self._collate(items, chars)

    def _collate(self, items: list[dict], chars: dict) -> dict:
        """`collate_fn(items)`, with the character ids stacked here and, when `collate_fn` has the model's `config`
        (the recipe's `PlanCollator`), their character-CNN plan made here too: the same result as
        `character_cnn_plan` (`torch.unique` over rows), from a sort of the rows' bytes, which is much faster."""
        config = getattr(self.collate_fn, "config", None) if self.with_chars else None
        if config is None:
            for prefix, arrays in chars.items():
                for item, array in zip(items, arrays):
                    item[f"{prefix}char_ids"] = torch.from_numpy(array)
            return self.collate_fn(items)
        batch = self.collate_fn(items)
        padding, widest = config.char_vocab_size - 1, max(width for width, _ in config.char_cnn_filters)
        for prefix, arrays in chars.items():
            stacked = np.stack(arrays)  # (B, L, C)
            batch[f"{prefix}char_ids"] = torch.from_numpy(stacked)
            batch[f"{prefix}char_plan"] = distinct_rows(stacked, padding, widest)
        return batch


def distinct_rows(char_ids: np.ndarray, padding_char_id: int, max_width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`toolkit.models.elmo.modeling_elmo.distinct_words` on the host with numpy: (B, T, C) character ids (< 65536)
    -> (unique_words (N, C'), inverse (B*T,)), rows in the same (lexicographic) order as `torch.unique(dim=0)`:
    big-endian unsigned 16-bit bytes compare like the numbers they hold."""
    num_chars = char_ids.shape[-1]
    rows = np.ascontiguousarray(char_ids.reshape(-1, num_chars).astype(">u2"))
    keys = rows.view(np.dtype((np.void, 2 * num_chars))).ravel()
    unique_keys, inverse = np.unique(keys, return_inverse=True)
    unique_words = unique_keys.view(">u2").reshape(-1, num_chars).astype(np.int64)
    is_char = (unique_words != padding_char_id) & (unique_words != 0)
    longest = int((is_char * np.arange(1, num_chars + 1)).max()) if unique_words.size else 0
    unique_words = np.ascontiguousarray(unique_words[:, : min(num_chars, longest + max_width)])
    return torch.from_numpy(unique_words), torch.from_numpy(inverse.reshape(-1).astype(np.int64))


# ----------------------------------------------------------------------------------------------------------------
# lanes: one word stream per batch row


class LaneDataset(IterableDataset):
    """This rank's worker streams, each `batch_size` lanes wide; yields collated batches with their position."""

    def __init__(self, source, packer, collator, batch_size, segment, seed, shuffle_shards, rank, world, num_workers):
        self.source, self.packer, self.collator = source, packer, collator
        self.batch_size, self.segment, self.seed, self.shuffle_shards = batch_size, segment, seed, shuffle_shards
        self.rank, self.world, self.num_workers = rank, world, max(1, num_workers)
        self.positions: list[dict | None] = [None] * self.num_workers  # by logical stream
        self.offset = 0  # DataLoader worker w plays logical stream (w + offset) % num_workers
        self.trace = bool(os.environ.get(TRACE_ENV))

    def lanes(self, logical: int) -> list[PackedStream]:
        stream = self.rank * self.num_workers + logical
        total = self.world * self.num_workers * self.batch_size
        lanes = [
            PackedStream(
                self.source, self.packer, self.seed, 0, stream * self.batch_size + r, total, self.shuffle_shards
            )
            for r in range(self.batch_size)
        ]
        for lane in lanes:
            lane.rows_per_read = LANE_ROWS_PER_READ
        return lanes

    def iterate(self, logical: int, position: dict | None):
        """Yields (batch, metadata): window `i` of the current segment of every lane for the forward LM and window
        `S - 1 - i` for the backward LM."""
        position = position or {"batch": 0, "lanes": [fresh_position() for _ in range(self.batch_size)]}
        done, starts, S = position["batch"], position["lanes"], self.segment
        iterators = [lane.iterate(p) for lane, p in zip(self.lanes(logical), starts)]
        skip = done % S
        while True:
            segment = [[next(it) for _ in range(S)] for it in iterators]  # per lane: S (window, position after)
            ends = [windows[-1][1] for windows in segment]
            for i in range(skip, S):
                forward = [windows[i][0] for windows in segment]
                batch = self.collator.pairs(forward, [windows[S - 1 - i][0] for windows in segment])
                done += 1
                meta = {
                    "stream": logical,
                    "position": {"batch": done, "lanes": ends if i == S - 1 else starts},
                    "segment_start": i == 0,
                }
                if self.trace:
                    meta["ids"] = [w["example_id"] for w in forward]
                yield batch, meta
            starts, skip = ends, 0

    def __iter__(self):
        import json

        info = get_worker_info()
        logical = ((info.id if info is not None else 0) + self.offset) % self.num_workers
        for batch, meta in self.iterate(logical, self.positions[logical]):
            batch["stream_position"] = json.dumps(meta)
            yield batch


class LaneStates:
    """LSTM states carried per worker stream (workers take turns batch by batch). `states` reads and writes those of
    the stream the current batch came from; at a segment's first batch the backward LM's states read as zeros (the
    same as no state), since its windows of the previous segment lie elsewhere in the text."""

    def __init__(self, num_streams: int):
        self.by_stream: list[tuple | None] = [None] * num_streams
        self.current, self.segment_start = 0, False

    @property
    def states(self):
        states = self.by_stream[self.current]
        if states is None or not self.segment_start:
            return states
        h, c = states[0].clone(), states[1].clone()  # (layers, 2 directions, B, *)
        h[:, 1], c[:, 1] = 0.0, 0.0
        return h, c

    @states.setter
    def states(self, value) -> None:
        self.by_stream[self.current] = value


class LaneStreamingLoader(StreamingLoader):
    """`StreamingLoader` over lanes, which also keeps (`carried`) and checkpoints every stream's LSTM states."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.carried = LaneStates(self.dataset.num_workers)

    def on_batch(self, meta: dict) -> None:
        self.carried.current, self.carried.segment_start = meta["stream"], bool(meta.get("segment_start"))

    def local_state(self) -> dict:
        states = [None if s is None else (s[0].detach().cpu(), s[1].detach().cpu()) for s in self.carried.by_stream]
        return {**super().local_state(), "states": states}

    def state_dict(self) -> dict:
        """JSON (positions) + tensors under flat keys (`states.<rank>.<stream>.h|c`), for `register_checkpoint_state`."""
        synced = super().state_dict()
        out, ranks = {"fingerprint": synced["fingerprint"], "ranks": []}, []
        for rank, local in enumerate(synced["ranks"]):
            local = dict(local)
            for stream, states in enumerate(local.pop("states", [])):
                if states is not None:
                    out[f"states.{rank}.{stream}.h"], out[f"states.{rank}.{stream}.c"] = states
            ranks.append(local)
        out["ranks"] = ranks
        return out

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict({"fingerprint": state["fingerprint"], "ranks": state["ranks"]})
        rank, device = self.accelerator.process_index, self.accelerator.device
        for stream in range(len(self.carried.by_stream)):
            h = state.get(f"states.{rank}.{stream}.h")
            self.carried.by_stream[stream] = (
                None if h is None else (h.to(device), state[f"states.{rank}.{stream}.c"].to(device))
            )


# ----------------------------------------------------------------------------------------------------------------
# the recipe's entry points


def take_rows(source, n: int, hold_out: bool = False) -> list[str]:
    """The first `n` rows of `source` in file order; with `hold_out` they are removed from the training stream."""
    texts: list[str] = []
    for s in range(len(source.shards)):
        reader = source.reader(s, None)
        while len(texts) < n:
            got, _ = reader.read(min(ROWS_PER_READ, n - len(texts)))
            if not got:
                break
            texts.extend(got)
        if hold_out:
            source.start_override[s] = reader.pos
        reader.close()
        if len(texts) >= n:
            break
    return texts


def open_elmo_streams(data_args) -> dict:
    """`train`: the streamed training split; `validation`: a `datasets.Dataset` of the first `--max_eval_samples`
    (default 1000) rows of the validation split, or without one of the training split, which are then held out of
    training (before the vocabulary is built on the stream's first rows). The same rows in every evaluation."""
    import datasets

    raw = open_text_streams(data_args)
    n = data_args.max_eval_samples or 1000
    if "validation" in raw:
        texts = take_rows(raw["validation"], n)
    else:
        texts = take_rows(raw["train"], n, hold_out=True)
    if not texts:
        raise UserError("no validation text: the validation split is empty")
    return {"train": raw["train"], "validation": datasets.Dataset.from_dict({data_args.text_column: texts})}


def build_elmo_stream_loader(
    accelerator, train, tokenizer, data_args, args, window_length: int, carry_state: bool, segment: int, with_chars,
    collate_fn,
):  # fmt: skip
    """The training batches of the streamed split `train` on this rank (a `StreamingLoader`; with `carry_state` a
    `LaneStreamingLoader` whose `carried` holds the LSTM states to pass to the model)."""
    if segment < 1:
        raise UserError("--stream_segment_windows must be >= 1")
    workers = max(1, args.dataloader_num_workers)
    rows = args.per_device_train_batch_size if carry_state else 1
    streams = accelerator.num_processes * workers * rows
    if len(train.shards) < streams:
        what = f"{accelerator.num_processes} process(es) x {workers} worker(s)"
        what += f" x {rows} rows (each batch row reads its own shards with --carry_state)" if carry_state else ""
        raise UserError(
            f"the training data has {len(train.shards)} shard(s) but {what} need at least {streams}: pass more "
            "files, a smaller --stream_shard_bytes, or a smaller batch / fewer --dataloader_num_workers"
        )
    packer = WindowPacker(tokenizer, window_length)
    collator = WindowCollator(tokenizer, with_chars, collate_fn)
    fingerprint = {
        **train.fingerprint(),
        "held_out": [list(x) for x in sorted(train.start_override.items())],
        "window_length": window_length,
        "carry_state": bool(carry_state),
        "segment_windows": segment if carry_state else None,
        "shuffle_buffer_size": data_args.shuffle_buffer_size,
        "seed": args.seed,
    }
    if not carry_state:
        return StreamingLoader(accelerator, train, packer, collator, args, data_args.shuffle_buffer_size, fingerprint)
    dataset = LaneDataset(
        train, packer, collator, args.per_device_train_batch_size, segment, args.seed,
        data_args.shuffle_buffer_size > 0, accelerator.process_index, accelerator.num_processes,
        args.dataloader_num_workers,
    )  # fmt: skip
    return LaneStreamingLoader(accelerator, train, packer, collator, args, 0, fingerprint, dataset=dataset)


__all__ = [
    "LaneDataset",
    "LaneStates",
    "LaneStreamingLoader",
    "WindowCollator",
    "WindowPacker",
    "build_elmo_stream_loader",
    "open_elmo_streams",
    "take_rows",
]
