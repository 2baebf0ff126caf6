"""How examples become batches: a list as a Dataset, length-grouped orders and token-count batches.

- `ListDataset`: a list of example dicts as a map-style `Dataset`.
- `length_grouped_order`: a seeded permutation that puts examples of similar length in the same batch.
- `TokenBatchSampler`: batches of at most N padded tokens (fairseq's `--max-tokens`), shuffled per epoch.
"""

from __future__ import annotations

import random

import torch


class ListDataset(torch.utils.data.Dataset):
    """A list of examples (dicts) as a map-style dataset."""

    def __init__(self, items: list):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def length_grouped_order(lengths: list[int], batch_size: int, seed: int) -> list[int]:
    """A permutation that puts examples of similar length in the same batch: shuffle, sort by length within
    mega-batches of 64 batches, cut into batches, shuffle the batches (deterministic in `seed`)."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    mega = 64 * batch_size
    batches = []
    for start in range(0, len(order), mega):
        chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return [i for batch in batches for i in batch]


class _Epoch:
    """Holds the epoch; accelerate calls `set_epoch` on a batch sampler's `sampler`, sharded or not."""

    def __init__(self):
        self.epoch = 0

    def set_epoch(self, epoch: int):
        self.epoch = epoch


class TokenBatchSampler(torch.utils.data.Sampler):
    """Batches of at most `max_tokens` padded tokens (fairseq's `--max-tokens`).

    Examples are sorted by length, so each batch holds similar lengths (little padding); the batches are made once
    (fixed composition, so the epoch length never changes) and their order is shuffled with (seed, epoch).
    """

    def __init__(self, lengths: list[int], max_tokens: int, seed: int):
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
        self.batches, batch, longest = [], [], 0
        for i in order:
            longest_if_added = max(longest, lengths[i])
            if batch and longest_if_added * (len(batch) + 1) > max_tokens:
                self.batches.append(batch)
                batch, longest_if_added = [], lengths[i]
            batch.append(i)
            longest = longest_if_added
        if batch:
            self.batches.append(batch)
        self.seed = seed
        self.sampler = _Epoch()

    def set_epoch(self, epoch: int):
        self.sampler.set_epoch(epoch)

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        order = list(range(len(self.batches)))
        random.Random(self.seed * 100003 + self.sampler.epoch).shuffle(order)
        for b in order:
            yield self.batches[b]
