"""toolkit/data/elmo_streaming.py without a training loop: each batch row (lane) continues its own text window after
window, the backward LM gets a segment's windows in reverse, the lanes of N ranks x K workers read disjoint shards,
and a resume at batch 10 or batch 200 gives the same next batches while re-tokenizing the same bounded amount."""

import json

import pytest

from toolkit.data.elmo_streaming import LANE_ROWS_PER_READ, LaneDataset, WindowPacker, take_rows
from toolkit.data.streaming import TextStream
from toolkit.models.elmo import ElmoTokenizerFast

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()
L, B, S = 6, 3, 4  # window length, lanes per stream, windows per backward segment


def _texts(n: int):
    return [f"row {i} " + " ".join(WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(3 + i % 11)) for i in range(n)]


@pytest.fixture(scope="module")
def tokenizer():
    return ElmoTokenizerFast.train_from_iterator([_texts(400)], vocab_size=100, min_frequency=1)


@pytest.fixture()
def source(tmp_path):
    with open(tmp_path / "a.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in _texts(1200))
    stream = TextStream([str(tmp_path / "a.jsonl")], "--train_file", "text", True, 2500)
    assert len(stream.shards) >= 2 * 2 * B
    return stream


class Recorder:
    """A collator that keeps the windows each batch row got."""

    def pairs(self, forward, backward):
        return {"forward": [w["words"] for w in forward], "backward": [w["words"] for w in backward]}


def _batches(dataset, logical, position, n):
    run = dataset.iterate(logical, position)
    return [next(run) for _ in range(n)]


def _lanes(tokenizer, source, rank=0, world=1, workers=1, shuffle=False):
    packer = WindowPacker(tokenizer, L)
    return LaneDataset(source, packer, Recorder(), B, S, 7, shuffle, rank, world, workers)


def test_each_row_continues_its_own_text(tokenizer, source):
    dataset = _lanes(tokenizer, source)
    batches = _batches(dataset, 0, None, 40)
    packer = WindowPacker(tokenizer, L)
    for r in range(B):
        windows = [batch["forward"][r] for batch, _ in batches]
        assert windows[0][0] is None  # nothing before a lane's first word
        for prev, window in zip(windows, windows[1:]):
            assert window[0] == prev[-2] and window[1] == prev[-1]  # the word before / after at the seam
        # the lane's words are its first shard's rows, in order, as `<s> words </s>`
        shard = dataset.lanes(0)[r].shards_of_pass(0)[0]
        reader = source.reader(shard)
        want = packer.words(reader.read(400)[0])
        got = [w for window in windows for w in window[1:-1]]
        assert got == want[: len(got)]
        # the backward LM reads a segment's windows from its end: batch i gets window S - 1 - i of the segment
        for seg in range(40 // S):
            for i in range(S):
                assert batches[seg * S + i][0]["backward"][r] == windows[seg * S + S - 1 - i]
    assert [meta["segment_start"] for _, meta in batches[:8]] == [True, False, False, False] * 2


def test_lanes_of_all_ranks_and_workers_read_disjoint_shards(tokenizer, source):
    shards = []
    for rank in range(2):
        for logical in range(2):
            lanes = _lanes(tokenizer, source, rank, 2, 2, shuffle=True).lanes(logical)
            shards.extend(set(lane.shards_of_pass(0)) for lane in lanes)
    assert all(shards)
    assert sum(len(s) for s in shards) == len(set().union(*shards)) == len(source.shards)


def test_resume_at_batch_10_and_200_is_exact_and_equally_cheap(tokenizer, source, monkeypatch):
    dataset = _lanes(tokenizer, source, shuffle=True)
    uninterrupted = _batches(dataset, 0, None, 230)
    rows = {"n": 0}
    original = WindowPacker.words

    def counting(self, texts):
        rows["n"] += len(texts)
        return original(self, texts)

    monkeypatch.setattr(WindowPacker, "words", counting)
    cost = {}
    for k in (10, 200):  # mid-segment (k % S == 2)
        position = json.loads(json.dumps(uninterrupted[k - 1][1]["position"]))  # as stored in a checkpoint
        rows["n"] = 0
        resumed = _batches(_lanes(tokenizer, source, shuffle=True), 0, position, 1)
        cost[k] = rows["n"]
        resumed += _batches(_lanes(tokenizer, source, shuffle=True), 0, position, 30)[1:]
        assert [b for b, _ in resumed] == [b for b, _ in uninterrupted[k : k + 30]]
    # at most one read of rows per lane, whatever the position
    assert cost[10] <= B * LANE_ROWS_PER_READ and cost[200] <= B * LANE_ROWS_PER_READ, cost


def test_validation_rows_are_held_out(source):
    everything = [t for batch in source.iter(batch_size=100) for t in batch["text"]]
    held = take_rows(source, 50, hold_out=True)
    assert held == everything[:50]
    rest = [t for batch in source.iter(batch_size=100) for t in batch["text"]]
    assert rest == everything[50:]


def test_collated_batches_match_the_recipes_collator(tokenizer, source):
    """The character-CNN plan made from sorted row bytes equals `character_cnn_plan` (torch.unique), and the batch
    holds what the in-memory recipe's windows hold."""
    import torch

    from tests.conftest import load_recipe
    from toolkit.data.elmo_streaming import WindowCollator
    from toolkit.models.elmo import ElmoConfig, ElmoForLanguageModeling, character_cnn_plan

    recipe = load_recipe("pretrain_elmo")
    config = ElmoConfig(
        vocab_size=len(tokenizer), char_cnn_filters=[[1, 4], [3, 4]], num_highway_layers=1, cell_size=16,
        projection_dim=8, max_characters_per_token=tokenizer.max_characters_per_token,
    )  # fmt: skip
    plan_collator = recipe.PlanCollator(ElmoForLanguageModeling(config))
    collator = WindowCollator(tokenizer, True, plan_collator)
    dataset = LaneDataset(source, WindowPacker(tokenizer, L), collator, B, S, 7, True, 0, 1, 1)
    for batch, _ in _batches(dataset, 0, None, 12):
        for prefix in ("", "backward_"):
            want = character_cnn_plan(batch[f"{prefix}char_ids"], config)
            got = batch[f"{prefix}char_plan"]
            assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        assert batch["input_ids"].shape == (B, L) and batch["char_ids"].shape[:2] == (B, L)
        for r in range(B):  # a forward target is the next input word (except <s>, never predicted)
            labels, inputs = batch["forward_labels"][r, :-1], batch["input_ids"][r, 1:]
            keep = labels >= 0
            assert keep.any() and torch.equal(labels[keep], inputs[keep])
            assert (inputs[~keep] == tokenizer.bos_token_id).all()
