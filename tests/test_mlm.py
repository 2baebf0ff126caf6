"""Tests for toolkit.data.mlm: masking rates, specials, whole-word masking, determinism, batch-split invariance,
and NSP/SOP pair construction."""

import pytest
import torch
from transformers import BertTokenizerFast

from toolkit.data.mlm import DataCollatorForMLM, build_sentence_pairs, hash_uniform, pair_to_features

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(60)]
PIECES = [f"##p{i}" for i in range(30)]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.txt").write_text("\n".join(SPECIALS + WORDS + PIECES) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(str(folder))
    assert len(tokenizer) == len(SPECIALS + WORDS + PIECES)
    return tokenizer


def random_features(tokenizer, n=64, min_len=20, max_len=120, seed=0, pieces=False):
    g = torch.Generator().manual_seed(seed)
    word_ids = tokenizer.convert_tokens_to_ids(WORDS)
    piece_ids = tokenizer.convert_tokens_to_ids(PIECES)
    feats = []
    for i in range(n):
        length = int(torch.randint(min_len, max_len, (1,), generator=g))
        body = []
        while len(body) < length:
            body.append(word_ids[int(torch.randint(len(word_ids), (1,), generator=g))])
            if pieces:
                for _ in range(int(torch.randint(0, 3, (1,), generator=g))):
                    body.append(piece_ids[int(torch.randint(len(piece_ids), (1,), generator=g))])
        ids = [tokenizer.cls_token_id, *body, tokenizer.sep_token_id]
        feats.append({"input_ids": ids, "example_id": i})
    return feats


def test_rates(tokenizer):
    collator = DataCollatorForMLM(tokenizer, mlm_probability=0.15, seed=1)
    feats = random_features(tokenizer, n=300)
    batch = collator(feats)
    original = collator([{"input_ids": f["input_ids"]} for f in feats])  # only for shapes
    assert batch["input_ids"].shape == original["input_ids"].shape
    clean = torch.full_like(batch["input_ids"], tokenizer.pad_token_id)
    for i, f in enumerate(feats):
        clean[i, : len(f["input_ids"])] = torch.tensor(f["input_ids"])
    eligible = batch["attention_mask"].bool() & (clean != tokenizer.cls_token_id) & (clean != tokenizer.sep_token_id)
    selected = batch["labels"] != -100
    rate = selected.sum() / eligible.sum()
    assert abs(rate - 0.15) < 0.01, rate
    n = selected.sum()
    masked = (batch["input_ids"] == tokenizer.mask_token_id) & selected
    kept = (batch["input_ids"] == clean) & selected
    randomized = selected & ~masked & ~kept
    assert abs(masked.sum() / n - 0.8) < 0.03
    assert abs((kept.sum() + randomized.sum()) / n - 0.2) < 0.03
    assert randomized.sum() / n > 0.07  # random replacements happen (a few coincide with the original)
    torch.testing.assert_close(batch["labels"][selected], clean[selected])
    # random replacements are never special tokens
    assert not torch.isin(batch["input_ids"][randomized], torch.tensor(tokenizer.all_special_ids)).any()
    # higher probability, higher rate
    batch = DataCollatorForMLM(tokenizer, mlm_probability=0.4, seed=1)(feats)
    assert abs((batch["labels"] != -100).sum() / eligible.sum() - 0.4) < 0.015


def test_specials_and_padding_never_masked(tokenizer):
    collator = DataCollatorForMLM(tokenizer, mlm_probability=0.9, seed=0, pad_to_multiple_of=16)
    feats = random_features(tokenizer, n=40, min_len=3, max_len=30)
    batch = collator(feats)
    assert batch["input_ids"].shape[1] % 16 == 0
    for i, f in enumerate(feats):
        n = len(f["input_ids"])
        assert batch["labels"][i, 0] == -100 and batch["input_ids"][i, 0] == tokenizer.cls_token_id
        assert batch["labels"][i, n - 1] == -100 and batch["input_ids"][i, n - 1] == tokenizer.sep_token_id
        assert torch.all(batch["labels"][i, n:] == -100)
        assert torch.all(batch["input_ids"][i, n:] == tokenizer.pad_token_id)
        assert torch.all(batch["attention_mask"][i, n:] == 0) and torch.all(batch["attention_mask"][i, :n] == 1)


def test_masked_positions_and_omitted_attention_mask(tokenizer):
    # What lets the training step run without host-device synchronisation (tests/models/test_bert.py)
    plain = DataCollatorForMLM(tokenizer, seed=0)
    collator = DataCollatorForMLM(tokenizer, seed=0, return_masked_positions=True, omit_unpadded_attention_mask=True)
    padded = random_features(tokenizer, n=8, min_len=3, max_len=30)
    batch, reference = collator(padded), plain(padded)
    torch.testing.assert_close(batch["masked_positions"], (reference["labels"].view(-1) != -100).nonzero().view(-1))
    torch.testing.assert_close(batch["attention_mask"], reference["attention_mask"])  # padded: the mask stays
    packed = [{"input_ids": f["input_ids"][:4], "example_id": f["example_id"]} for f in padded]
    batch = collator(packed)
    assert "attention_mask" not in batch and "attention_mask" in plain(packed)
    assert torch.equal(batch["labels"], plain(packed)["labels"])


def test_whole_word_masking(tokenizer):
    collator = DataCollatorForMLM(tokenizer, mlm_probability=0.2, whole_word_mask=True, seed=3)
    feats = random_features(tokenizer, n=100, pieces=True)
    batch = collator(feats)
    piece_ids = set(tokenizer.convert_tokens_to_ids(PIECES))
    words_total = words_selected = partial = 0
    for i, f in enumerate(feats):
        ids = f["input_ids"][1:-1]
        sel = (batch["labels"][i, 1 : len(ids) + 1] != -100).tolist()
        words = []  # list of lists of selection flags
        for tok, s in zip(ids, sel):
            if tok in piece_ids:
                words[-1].append(s)
            else:
                words.append([s])
        for w in words:
            words_total += 1
            words_selected += all(w)
            partial += any(w) and not all(w)
    assert partial == 0
    assert abs(words_selected / words_total - 0.2) < 0.02
    # word-level masking differs from token-level masking of the same batch
    plain = DataCollatorForMLM(tokenizer, mlm_probability=0.2, seed=3)(feats)
    assert not torch.equal(plain["labels"], batch["labels"])


def test_determinism_epochs_and_global_rng(tokenizer):
    feats = random_features(tokenizer, n=16)
    a = DataCollatorForMLM(tokenizer, seed=5)
    state = torch.random.get_rng_state()
    torch.manual_seed(123)
    first = a(feats)
    torch.manual_seed(999)
    again = DataCollatorForMLM(tokenizer, seed=5)(feats)
    for k in first:
        assert torch.equal(first[k], again[k])
    a.set_epoch(1)
    epoch1 = a(feats)
    assert not torch.equal(epoch1["labels"], first["labels"])
    a.set_epoch(0)
    assert torch.equal(a(feats)["labels"], first["labels"])
    assert not torch.equal(DataCollatorForMLM(tokenizer, seed=6)(feats)["labels"], first["labels"])
    torch.random.set_rng_state(state)
    before = torch.random.get_rng_state()
    a(feats)
    assert torch.equal(before, torch.random.get_rng_state())  # the global RNG is not consumed


@pytest.mark.parametrize("wwm", [False, True])
def test_batch_split_invariance(tokenizer, wwm):
    """An example is masked the same way whatever batch (size, order, padding length, process) it is in."""
    feats = random_features(tokenizer, n=12, pieces=True)
    collator = DataCollatorForMLM(tokenizer, whole_word_mask=wwm, seed=7, pad_to_multiple_of=8)
    collator.set_epoch(2)
    whole = collator(feats)
    # "two processes": even / odd rows, in reversed order, separate collator instances
    other = DataCollatorForMLM(tokenizer, whole_word_mask=wwm, seed=7)
    other.set_epoch(2)
    for part in (feats[0::2][::-1], feats[1::2]):
        sub = other(part)
        for j, f in enumerate(part):
            i, n = f["example_id"], len(f["input_ids"])
            assert torch.equal(sub["input_ids"][j, :n], whole["input_ids"][i, :n])
            assert torch.equal(sub["labels"][j, :n], whole["labels"][i, :n])
    # without example_id: content hash, still split-invariant
    bare = [{"input_ids": f["input_ids"]} for f in feats]
    x, y = collator(bare), collator(bare[5:6])
    n = len(bare[5]["input_ids"])
    assert torch.equal(x["labels"][5, :n], y["labels"][0, :n])


def test_hash_uniform_is_uniform_and_independent():
    ids = torch.arange(200)[:, None]
    pos = torch.arange(500)[None, :]
    u = hash_uniform(0, 0, ids, pos, stream=0)
    assert u.shape == (200, 500) and u.min() >= 0 and u.max() < 1
    hist = torch.histc(u.float(), bins=10, min=0, max=1) / u.numel()
    assert torch.all((hist - 0.1).abs() < 0.005), hist
    v = hash_uniform(0, 0, ids, pos, stream=1)
    corr = torch.corrcoef(torch.stack([u.flatten(), v.flatten()]))[0, 1]
    assert abs(corr) < 0.01
    neighbours = torch.corrcoef(torch.stack([u[:, :-1].flatten(), u[:, 1:].flatten()]))[0, 1]
    assert abs(neighbours) < 0.01


def _documents(n_docs=6, n_sents=12):
    # document d uses token ids in [1000 * (d + 1), 1000 * (d + 2)): the source of every token is known
    g = torch.Generator().manual_seed(0)
    docs = []
    for d in range(n_docs):
        sents, nxt = [], 1000 * (d + 1)
        for _ in range(n_sents):
            n = int(torch.randint(3, 9, (1,), generator=g))
            sents.append(list(range(nxt, nxt + n)))
            nxt += n
        docs.append(sents)
    return docs


def test_nsp_pairs():
    docs = _documents()
    pairs = build_sentence_pairs(docs, max_num_tokens=30, objective="nsp", seed=0)
    labels = [label for _, _, label in pairs]
    assert 0.3 < sum(labels) / len(labels) < 0.7
    for a, b, label in pairs:
        assert a and b and len(a) + len(b) <= 30
        same_doc = a[0] // 1000 == b[0] // 1000
        if label == 0:
            assert same_doc and a[-1] < b[0]  # B continues A in its document
        else:
            assert not same_doc
    assert pairs == build_sentence_pairs(docs, max_num_tokens=30, objective="nsp", seed=0)
    feat = pair_to_features(pairs[0][0], pairs[0][1], pairs[0][2], cls_token_id=2, sep_token_id=3)
    n_a = len(pairs[0][0])
    assert feat["input_ids"][0] == 2 and feat["input_ids"][n_a + 1] == 3 and feat["input_ids"][-1] == 3
    assert feat["token_type_ids"] == [0] * (n_a + 2) + [1] * (len(pairs[0][1]) + 1)


def test_sop_pairs():
    docs = _documents()
    pairs = build_sentence_pairs(docs, max_num_tokens=30, objective="sop", seed=1)
    labels = [label for _, _, label in pairs]
    assert 0.3 < sum(labels) / len(labels) < 0.7
    for a, b, label in pairs:
        assert a[0] // 1000 == b[0] // 1000  # always the same document
        assert (a[-1] < b[0]) == (label == 0)  # label 1 = swapped order
