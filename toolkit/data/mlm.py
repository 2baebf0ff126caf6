"""Masked-language-model data: dynamic masking collator and NSP/SOP sentence-pair construction.

Masking follows BERT (Devlin et al., 2019): each eligible token is selected with probability `mlm_probability`; a
selected token is replaced by [MASK] 80% of the time, by a random token 10%, and kept 10%; the loss is computed on
selected tokens only (`labels` = original id there, -100 elsewhere). Whole-word masking selects WordPiece words
(a token plus its "##" continuations) together. Special tokens and padding are never selected.

Reproducibility and batch-split invariance. Every random number is a pure function of
(seed, epoch, example_id, position, stream), computed with an integer hash (a splitmix64-style mixer) on int64
tensors, vectorised over the batch. No global RNG is touched, so
- the same example in the same epoch is masked identically whatever batch it lands in, on whichever process, and
  whatever was drawn before it (exact resume; a 2-process run equals a 1-process run);
- a new epoch (`set_epoch`) gives a new masking.
Features should therefore carry `example_id`, the row index of the example in the dataset (ordering-independent and
unique). Without it, the collator falls back to a hash of the example's token ids (still batch-split invariant, but
duplicate texts then get the same masking).
"""

import random

import torch

# splitmix64 constants as signed int64 (two's complement: multiplication mod 2**64 is the same)
_GOLDEN = 0x9E3779B97F4A7C15 - (1 << 64)
_M1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_M2 = 0x94D049BB133111EB - (1 << 64)


def _shr(x: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 (torch's >> is arithmetic on negative numbers)."""
    return (x >> s) & ((1 << (64 - s)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser on int64 tensors (wrapping arithmetic): a bijective, well-scrambling integer hash."""
    x = (x ^ _shr(x, 30)) * _M1
    x = (x ^ _shr(x, 27)) * _M2
    return x ^ _shr(x, 31)


def hash_uniform(seed: int, epoch: int, example_ids: torch.Tensor, positions: torch.Tensor, stream: int):
    """Uniform [0, 1) float64 numbers, one per broadcast element of `example_ids` x `positions`, each a pure
    function of (seed, epoch, example_id, position, stream)."""
    base = _mix(torch.tensor((seed * 1_000_003 + epoch) * 8 + stream, dtype=torch.int64) * _GOLDEN + _GOLDEN)
    h = _mix(base + example_ids.to(torch.int64) * _GOLDEN)
    h = _mix(h + positions.to(torch.int64) * _M1)
    return _shr(h, 11).to(torch.float64) * (1.0 / (1 << 53))


def _content_ids(rows) -> torch.Tensor:
    """Fallback example ids: a hash of each example's token ids."""
    out = []
    for ids in rows:
        t = torch.as_tensor(ids, dtype=torch.int64)
        h = _mix(t * _GOLDEN + torch.arange(len(t), dtype=torch.int64) * _M2)
        out.append(int(_mix(h.sum().reshape(1) + len(t))[0]))
    return torch.tensor(out, dtype=torch.int64)


class DataCollatorForMLM:
    """Pads a list of features and applies dynamic 80/10/10 masking.

    Args:
        tokenizer: a transformers tokenizer (needs `pad_token_id`, `mask_token_id`, `all_special_ids`, `len()`,
            and for whole-word masking a WordPiece vocabulary with "##" continuation tokens).
        mlm_probability: fraction of eligible tokens (or words) selected for prediction.
        whole_word_mask: select whole WordPiece words.
        seed: masking seed; together with `set_epoch(epoch)` it fully determines the masking.
        pad_to_multiple_of: round the padded length up to a multiple of this.
        mask_replace_prob, random_replace_prob: the 80/10 of the 80/10/10 rule.
        return_masked_positions: also return `masked_positions`, the (N,) flat indices (row * T + column, ascending)
            of the positions with a label. A BERT with `sparse_prediction` then selects them on the device without
            asking it how many there are (no host-device synchronisation in the training step).
        omit_unpadded_attention_mask: leave `attention_mask` out of a batch that has no padding (packed blocks), so
            the model need not ask the device whether the mask is all ones before picking SDPA's mask-free kernel.

    Features: dicts with "input_ids" (list or tensor of ints), optional "token_type_ids", "attention_mask",
    "example_id" (the dataset row index; see the module docstring) and "next_sentence_label". Returns a dict of
    tensors: input_ids (masked), attention_mask (unless omitted, see above), token_type_ids, labels,
    next_sentence_label when given, and masked_positions when asked for.
    """

    def __init__(
        self,
        tokenizer,
        mlm_probability: float = 0.15,
        whole_word_mask: bool = False,
        seed: int = 0,
        pad_to_multiple_of: int | None = None,
        mask_replace_prob: float = 0.8,
        random_replace_prob: float = 0.1,
        return_masked_positions: bool = False,
        omit_unpadded_attention_mask: bool = False,
    ):
        if not 0.0 < mlm_probability < 1.0:
            raise ValueError("mlm_probability must be in (0, 1)")
        if tokenizer.mask_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError("the tokenizer needs a mask token and a pad token")
        self.tokenizer = tokenizer
        self.mlm_probability = mlm_probability
        self.whole_word_mask = whole_word_mask
        self.seed = seed
        self.epoch = 0
        self.pad_to_multiple_of = pad_to_multiple_of
        self.mask_replace_prob = mask_replace_prob
        self.random_replace_prob = random_replace_prob
        self.return_masked_positions = return_masked_positions
        self.omit_unpadded_attention_mask = omit_unpadded_attention_mask
        self.pad_token_id = tokenizer.pad_token_id
        self.mask_token_id = tokenizer.mask_token_id
        vocab_size = len(tokenizer)
        special = torch.zeros(vocab_size, dtype=torch.bool)
        special[[i for i in tokenizer.all_special_ids if i is not None and i < vocab_size]] = True
        self.special = special  # (V,) True for ids never masked
        self.replacement_ids = (~special).nonzero().squeeze(1)  # ids a "random token" may take
        self.continuation = None
        if whole_word_mask:
            tokens = tokenizer.convert_ids_to_tokens(list(range(vocab_size)))
            self.continuation = torch.tensor([t is not None and t.startswith("##") for t in tokens])
            if not self.continuation.any():
                raise ValueError("whole_word_mask needs a WordPiece vocabulary with '##' continuation tokens")

    def set_epoch(self, epoch: int) -> None:
        """Select the masking of epoch `epoch` (call at the start of each epoch, also when resuming)."""
        self.epoch = int(epoch)

    def __call__(self, features):
        rows = [torch.as_tensor(f["input_ids"], dtype=torch.long) for f in features]
        B = len(rows)
        T = max(len(r) for r in rows)
        if self.pad_to_multiple_of:
            T = -(-T // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((B, T), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((B, T), dtype=torch.long)
        token_type_ids = torch.zeros((B, T), dtype=torch.long)
        for i, (f, r) in enumerate(zip(features, rows)):
            input_ids[i, : len(r)] = r
            attention_mask[i, : len(r)] = torch.as_tensor(f.get("attention_mask", [1] * len(r)), dtype=torch.long)
            if f.get("token_type_ids") is not None:
                token_type_ids[i, : len(r)] = torch.as_tensor(f["token_type_ids"], dtype=torch.long)
        if all("example_id" in f for f in features):
            example_ids = torch.tensor([int(f["example_id"]) for f in features], dtype=torch.int64)
        else:
            example_ids = _content_ids(rows)
        masked, labels = self.mask_tokens(input_ids, attention_mask, example_ids)
        batch = dict(input_ids=masked, attention_mask=attention_mask, token_type_ids=token_type_ids, labels=labels)
        if all("next_sentence_label" in f for f in features):
            batch["next_sentence_label"] = torch.tensor([int(f["next_sentence_label"]) for f in features])
        if self.return_masked_positions:
            batch["masked_positions"] = (labels.reshape(-1) != -100).nonzero().squeeze(1)
        if self.omit_unpadded_attention_mask and bool(attention_mask.all()):
            del batch["attention_mask"]
        return batch

    def mask_tokens(self, input_ids, attention_mask, example_ids):
        """Returns (masked input_ids, labels) for a padded (B, T) batch; see the module docstring."""
        B, T = input_ids.shape
        positions = torch.arange(T, dtype=torch.int64)[None, :]  # (1, T)
        ids = example_ids[:, None]  # (B, 1)
        eligible = attention_mask.bool() & ~self.special[input_ids.clamp(max=len(self.special) - 1)]
        if self.whole_word_mask:
            # a word starts at every eligible non-"##" token; "##" tokens join the word to their left
            is_cont = self.continuation[input_ids.clamp(max=len(self.continuation) - 1)] & eligible
            word_index = torch.cumsum((~is_cont).long(), dim=1) - 1  # (B, T) index of the word of each token
            selected = hash_uniform(self.seed, self.epoch, ids, word_index, stream=0) < self.mlm_probability
        else:
            selected = hash_uniform(self.seed, self.epoch, ids, positions, stream=0) < self.mlm_probability
        selected &= eligible
        labels = torch.where(selected, input_ids, torch.full_like(input_ids, -100))
        action = hash_uniform(self.seed, self.epoch, ids, positions, stream=1)  # (B, T)
        to_mask = selected & (action < self.mask_replace_prob)
        to_random = selected & (action >= self.mask_replace_prob)
        to_random &= action < self.mask_replace_prob + self.random_replace_prob
        pick = hash_uniform(self.seed, self.epoch, ids, positions, stream=2)
        random_ids = self.replacement_ids[(pick * len(self.replacement_ids)).long()]
        out = torch.where(to_mask, torch.full_like(input_ids, self.mask_token_id), input_ids)
        out = torch.where(to_random, random_ids, out)
        return out, labels


# ----------------------------------------------------------------------------------------------------------------
# NSP / SOP sentence pairs


def build_sentence_pairs(documents, max_num_tokens: int, objective: str = "nsp", seed: int = 0, short_seq_prob=0.1):
    """Build (segment A, segment B, label) training pairs from a document-aware corpus (BERT section A.2 / ALBERT).

    Args:
        documents: list of documents, each a list of sentences, each a list of token ids (no special tokens).
        max_num_tokens: token budget of A + B (the model length minus 3 for [CLS] A [SEP] B [SEP]).
        objective: "nsp" (B is the true continuation with label 0, or, half the time, a span from another random
            document with label 1) or "sop" (A and B are consecutive; half the time they are swapped, label 1).
        seed: seed of a private `random.Random` (the pairs are a pure function of the arguments).
        short_seq_prob: probability of a shorter target length, as in BERT, to reduce train/test length mismatch.

    Returns:
        list of (a_ids, b_ids, label) with len(a_ids) + len(b_ids) <= max_num_tokens.
    """
    if objective not in ("nsp", "sop"):
        raise ValueError("objective must be 'nsp' or 'sop'")
    rng = random.Random(seed)
    pairs = []
    for doc_index, document in enumerate(documents):
        target = max_num_tokens if rng.random() >= short_seq_prob else rng.randint(2, max_num_tokens)
        chunk, length, i = [], 0, 0
        while i < len(document):
            chunk.append(document[i])
            length += len(document[i])
            if i == len(document) - 1 or length >= target:
                if len(chunk) >= 2 or (objective == "nsp" and chunk):
                    a_end = rng.randint(1, len(chunk) - 1) if len(chunk) >= 2 else 1
                    a = [t for s in chunk[:a_end] for t in s]
                    b, label = [], 0
                    if objective == "nsp" and (len(chunk) == 1 or rng.random() < 0.5) and len(documents) > 1:
                        label = 1
                        other = rng.randrange(len(documents) - 1)
                        other += other >= doc_index  # any document but this one
                        other_doc = documents[other]
                        start = rng.randrange(len(other_doc)) if other_doc else 0
                        for s in other_doc[start:]:
                            b.extend(s)
                            if len(b) >= max_num_tokens - len(a):
                                break
                        i -= len(chunk) - a_end  # the unused sentences go back to the pool
                    else:
                        b = [t for s in chunk[a_end:] for t in s]
                        if objective == "sop" and rng.random() < 0.5:
                            a, b, label = b, a, 1
                    a, b = _truncate_pair(a, b, max_num_tokens, rng)
                    if a and b:
                        pairs.append((a, b, label))
                chunk, length = [], 0
            i += 1
    return pairs


def _truncate_pair(a, b, max_num_tokens, rng):
    """Trim the longer segment, from the front or the back at random, until the pair fits (as BERT does)."""
    a, b = list(a), list(b)
    while len(a) + len(b) > max_num_tokens:
        longer = a if len(a) > len(b) else b
        if rng.random() < 0.5:
            del longer[0]
        else:
            longer.pop()
    return a, b


def pair_to_features(a_ids, b_ids, label, cls_token_id: int, sep_token_id: int) -> dict:
    """[CLS] A [SEP] B [SEP] with segment ids 0/1 and `next_sentence_label`."""
    input_ids = [cls_token_id, *a_ids, sep_token_id, *b_ids, sep_token_id]
    token_type_ids = [0] * (len(a_ids) + 2) + [1] * (len(b_ids) + 1)
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "next_sentence_label": label}
