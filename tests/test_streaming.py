"""toolkit/data/streaming.py without a training loop: every input format gives the same rows, the streams of N ranks x
K workers partition each pass, a position saved mid-window resumes with the same examples, and a resume
re-tokenizes at most one shuffle window whatever the position."""

import gzip
import json
import shutil

import pytest

from toolkit.data import train_wordpiece
from toolkit.data.streaming import PackedStream, Packer, PairPacker, TextStream, fresh_position, take_examples
from toolkit.errors import UserError

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau".split()


def _rows(n: int, seed: int = 0):
    rows = []
    for i in range(n):
        words = [WORDS[(i * 7 + j * (seed + 3)) % len(WORDS)] for j in range(5 + i % 23)]
        rows.append({"text": f"row {i} " + " ".join(words), "doc_id": i // 10})
    return rows


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece([r["text"] for r in _rows(200)], vocab_size=120)


def _write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def _texts(stream: TextStream):
    return [t for batch in stream.iter(batch_size=37) for t in batch["text"]]


def test_jsonl_gzip_and_parquet_give_the_same_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _rows(500)
    _write_jsonl(tmp_path / "a.jsonl", rows)
    with open(tmp_path / "a.jsonl", "rb") as src, gzip.open(tmp_path / "b.jsonl.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "c.parquet", row_group_size=64)
    want = [r["text"] for r in rows]
    plain = TextStream([str(tmp_path / "a.jsonl")], "--train_file", "text", True, 2000)
    assert len(plain.shards) > 5  # byte ranges cut at line ends
    assert _texts(plain) == want
    gz = TextStream([str(tmp_path / "b.jsonl.gz")], "--train_file", "text", True, 2000)
    assert len(gz.shards) == 1 and _texts(gz) == want
    parquet = TextStream([str(tmp_path / "c.parquet")], "--train_file", "text", True, 2000)
    assert len(parquet.shards) == 8 and _texts(parquet) == want  # one shard per row group


def test_txt_paragraphs_without_the_gutenberg_licence(tmp_path):
    body = "\n\n".join(f"Paragraph {i} first line\nand its second line." for i in range(300))
    text = f"Project header\n*** START OF THE BOOK ***\n\n{body}\n\nEnd of the Project Gutenberg EBook\n*** END OF IT\nlicence"
    (tmp_path / "book.txt").write_text(text, encoding="utf-8")
    with gzip.open(tmp_path / "book.txt.gz", "wt", encoding="utf-8") as f:
        f.write(text)
    want = [f"Paragraph {i} first line and its second line." for i in range(300)]
    for name, shards in (("book.txt", 10), ("book.txt.gz", 1)):
        stream = TextStream([str(tmp_path / name)], "--train_file", "text", True, 1000)
        assert len(stream.shards) >= shards
        assert _texts(stream) == want, name


def test_bad_inputs_are_one_line_errors(tmp_path):
    (tmp_path / "x.jsonl").write_text('{"body": "no text column"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="column 'text' not found"):
        TextStream([str(tmp_path / "x.jsonl")], "--train_file", "text", True, 1000)
    (tmp_path / "y.csv").write_text("text\nhello\n", encoding="utf-8")
    with pytest.raises(UserError, match="txt, jsonl and parquet"):
        TextStream([str(tmp_path / "y.csv")], "--train_file", "text", True, 1000)


def _first_pass(stream: PackedStream):
    out = []
    for example, position in stream.iterate(fresh_position()):
        out.append(example)
        if position["pass"] > 0:  # the position after the pass's last example is the next pass's start
            break
    return out


def test_streams_of_all_ranks_and_workers_partition_each_pass(tmp_path, tokenizer):
    _write_jsonl(tmp_path / "a.jsonl", _rows(800))
    _write_jsonl(tmp_path / "b.jsonl", _rows(600, seed=1))
    source = TextStream([str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")], "--train_file", "text", True, 3000)
    assert len(source.shards) >= 8
    packer = Packer(tokenizer, 32)
    single = _first_pass(PackedStream(source, packer, 5, 16, 0, 1))
    parts = [_first_pass(PackedStream(source, packer, 5, 16, g, 4)) for g in range(4)]  # 2 ranks x 2 workers
    ids = [[e["example_id"] for e in part] for part in parts]
    assert all(ids), "every stream gets data"
    flat = [i for part in ids for i in part]
    assert len(flat) == len(set(flat)), "no example is read twice"
    assert sorted(flat) == sorted(e["example_id"] for e in single), "together: exactly the one-stream pass"
    by_id = {e["example_id"]: e["input_ids"] for e in single}
    assert all(by_id[e["example_id"]] == e["input_ids"] for part in parts for e in part), "same ids, same blocks"
    assert all(len(e["input_ids"]) <= 32 for e in single)
    # a shuffled window: not the file order, and the next pass visits the shards in another order
    assert [e["example_id"] for e in single[:16]] != sorted(e["example_id"] for e in single[:16])
    stream = PackedStream(source, packer, 5, 16, 0, 1)
    assert stream.shards_of_pass(0) != stream.shards_of_pass(1)


def test_resume_from_a_mid_window_position_and_its_cost(tmp_path, tokenizer, monkeypatch):
    _write_jsonl(tmp_path / "a.jsonl", _rows(250))
    source = TextStream([str(tmp_path / "a.jsonl")], "--train_file", "text", True, 4000)
    packer = Packer(tokenizer, 24)
    stream = PackedStream(source, packer, 1, 20, 0, 1)
    run = stream.iterate(fresh_position())
    uninterrupted = [next(run) for _ in range(600)]
    rows = {"n": 0}
    original = Packer.rows

    def counting(self, texts, *a):
        rows["n"] += len(texts)
        return original(self, texts, *a)

    monkeypatch.setattr(Packer, "rows", counting)
    for k in (10, 200, 450):  # positions mid-window, in later passes too (the file holds fewer blocks than 600)
        position = json.loads(json.dumps(uninterrupted[k - 1][1]))  # as stored in a checkpoint
        rows["n"] = 0
        resumed = PackedStream(source, packer, 1, 20, 0, 1).iterate(position)
        first = next(resumed)
        assert rows["n"] <= 256 + 20 * 24, (k, rows["n"])  # one read batch + one window, not the k examples before
        got = [first] + [next(resumed) for _ in range(599 - k)]
        assert [e["example_id"] for e, _ in got] == [e["example_id"] for e, _ in uninterrupted[k:]]
        assert [e["input_ids"] for e, _ in got] == [e["input_ids"] for e, _ in uninterrupted[k:]]
    assert uninterrupted[-1][1]["pass"] >= 1


def test_validation_is_held_out_of_the_training_stream(tmp_path, tokenizer):
    _write_jsonl(tmp_path / "a.jsonl", _rows(900))
    source = TextStream([str(tmp_path / "a.jsonl")], "--train_file", "text", True, 4000)
    packer = Packer(tokenizer, 32)
    held = take_examples(source, packer, 50, hold_out=True)
    assert len(held) == 50 and [e["example_id"] for e in held] == list(range(50))
    assert held == take_examples(
        TextStream([str(tmp_path / "a.jsonl")], "--train_file", "text", True, 4000), packer, 50
    )
    trained = []  # the rows the training stream reads: every shard from its (possibly moved) start
    for shard in range(len(source.shards)):
        reader = source.reader(shard)
        while texts := reader.read(100)[0]:
            trained.extend(texts)
    everything = [r["text"] for r in _rows(900)]
    assert 0 < len(trained) < len(everything) and trained == everything[len(everything) - len(trained) :]


@pytest.mark.parametrize("objective", ["nsp", "sop"])
def test_sentence_pairs_are_document_aware_and_resume_exactly(objective, tmp_path, tokenizer):
    """NSP / SOP pairs made in the stream: A and B are consecutive text of one document, except NSP's label-1 pairs,
    whose B is another document's; a position saved mid-window resumes with the same pairs."""
    rows = _rows(600)
    _write_jsonl(tmp_path / "a.jsonl", rows)
    source = TextStream([str(tmp_path / "a.jsonl")], "--train_file", "text", True, 6000)
    packer = PairPacker(tokenizer, 48, objective, 0.1, 3)
    stream = PackedStream(source, packer, 1, 20, 0, 1)
    run = stream.iterate(fresh_position())
    pairs = [next(run) for _ in range(150)]
    doc_of_row = {str(i): r["doc_id"] for i, r in enumerate(rows)}
    labels, checked = [], 0
    for example, _ in pairs:
        ids, types = example["input_ids"], example["token_type_ids"]
        assert len(ids) <= 48 and ids[0] == tokenizer.cls_token_id and ids.count(tokenizer.sep_token_id) == 2
        assert types == sorted(types) and len(types) == len(ids)
        a = tokenizer.decode(ids[1 : types.index(1) - 1]).split()
        b = tokenizer.decode([t for t, s in zip(ids, types) if s][:-1]).split()
        row_docs = [{doc_of_row[x] for w, x in zip(seg, seg[1:]) if w == "row" and x in doc_of_row} for seg in (a, b)]
        if all(row_docs):  # both segments name a row: same document unless an NSP negative
            same = row_docs[0] == row_docs[1]
            assert same == (example["next_sentence_label"] == 0 or objective == "sop"), (a, b)
            checked += 1
        labels.append(example["next_sentence_label"])
    assert checked > 50
    assert 0.2 < sum(labels) / len(labels) < 0.8, labels  # about half the pairs are negatives / swapped
    for k in (7, 90):  # mid-window positions, as stored in a checkpoint
        position = json.loads(json.dumps(pairs[k - 1][1]))
        resumed = PackedStream(source, packer, 1, 20, 0, 1).iterate(position)
        again = [next(resumed)[0] for _ in range(150 - k)]
        assert again == [e for e, _ in pairs[k:]]


def test_local_files_replace_the_dataset_a_config_names(tmp_path):
    # a config naming the demo corpus, run with --train_file: every split comes from the local files (as without
    # --streaming), none from the demo corpus, and the model card names the local data
    from toolkit.data import PretrainingDataArguments
    from toolkit.data.streaming import open_text_streams
    from toolkit.hub import data_label

    _write_jsonl(tmp_path / "a.jsonl", _rows(50))
    args = PretrainingDataArguments(
        dataset_name="demo", dataset_config_name="corpus", train_file=str(tmp_path / "a.jsonl"), streaming=True
    )
    streams = open_text_streams(args)
    assert set(streams) == {"train"} and [f["path"] for f in streams["train"].files] == [str(tmp_path / "a.jsonl")]
    assert "demo" not in data_label(args)
