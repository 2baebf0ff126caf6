"""Tokenize a text dataset in batches (cached by `datasets`) and pack token ids into fixed-length blocks."""

from __future__ import annotations

from toolkit.data.loading import CACHE_VERSION


def tokenize_dataset(dataset, tokenizer, text_column: str = "text", num_proc: int | None = None, **tok_kwargs):
    """Adds `input_ids` (and what the tokenizer returns); drops the other columns except `doc_id`."""
    keep = {"doc_id"}
    remove = [c for c in (dataset.column_names or []) if c not in keep]

    def tokenize(batch):
        return tokenizer(batch[text_column], return_attention_mask=False, return_token_type_ids=False, **tok_kwargs)

    return dataset.map(tokenize, batched=True, num_proc=num_proc, remove_columns=remove, desc="tokenize")


def _pack(batch, block_size: int, bos: int | None, eos: int | None, respect_documents: bool, cache_version: str = ""):
    """Concatenate `input_ids` and cut blocks of `block_size` (bos/eos added around each block's content)."""
    body = block_size - (bos is not None) - (eos is not None)
    blocks, docs = [], []
    buffer: list[int] = []
    doc_ids = batch.get("doc_id") or [0] * len(batch["input_ids"])
    current_doc = doc_ids[0] if doc_ids else 0

    def flush(final: bool):
        nonlocal buffer
        while len(buffer) >= body or (final and buffer):
            chunk, buffer = buffer[:body], buffer[body:]
            blocks.append(([bos] if bos is not None else []) + chunk + ([eos] if eos is not None else []))
            docs.append(current_doc)

    for ids, doc in zip(batch["input_ids"], doc_ids):
        if respect_documents and doc != current_doc:
            flush(final=True)
            current_doc = doc
        buffer.extend(ids)
        flush(final=False)
    flush(final=True)
    return {"input_ids": blocks, "doc_id": docs}


def pack_into_blocks(
    dataset,
    block_size: int,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    respect_documents: bool = False,
    num_proc: int | None = None,
    batch_size: int = 1000,
):
    """Pack tokenized rows (without special tokens) into blocks of exactly `block_size` ids, except each batch's
    last block, which may be shorter. With `respect_documents`, a block never spans two documents (`doc_id`).
    Adds `example_id` (the block's index), which deterministic per-example randomness (MLM masking) keys on."""
    packed = dataset.map(
        _pack,
        batched=True,
        batch_size=batch_size,
        num_proc=num_proc,
        remove_columns=dataset.column_names,
        fn_kwargs={
            "block_size": block_size,
            "bos": bos_token_id,
            "eos": eos_token_id,
            "respect_documents": respect_documents,
            "cache_version": CACHE_VERSION,
        },
        desc=f"pack into blocks of {block_size}",
    )
    return packed.map(lambda _, idx: {"example_id": idx}, with_indices=True, desc="index blocks")
