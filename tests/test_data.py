"""Data layer: loading local files / folders / gzip / demo data, bad-input errors, tokenizers, packing."""

import gzip
import os

import pytest

from toolkit.data import (
    DataArguments,
    batch_iterator,
    check_columns,
    load_raw_datasets,
    pack_into_blocks,
    strip_gutenberg,
    tokenize_dataset,
    train_bpe,
    train_word_level,
    train_wordpiece,
)
from toolkit.data.demo import build_classification, build_summarization, demo_data_files
from toolkit.errors import UserError

TEXT = "The quick brown fox jumps over the lazy dog.\nIt was not amused.\n\nA second paragraph\nwrapped over lines.\n"


def load(**kwargs):
    return load_raw_datasets(DataArguments(**kwargs), need_validation=False)


def test_text_file_becomes_paragraph_rows(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text(TEXT)
    rows = load(train_file=str(path))["train"]
    assert rows["text"] == [
        "The quick brown fox jumps over the lazy dog. It was not amused.",
        "A second paragraph wrapped over lines.",
    ]
    assert rows["doc_id"] == [0, 0]


def test_gutenberg_header_and_licence_are_stripped(tmp_path):
    book = "Title page\n\nLicence blah\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\nCall me Ishmael.\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\n\nMore licence\n"
    assert strip_gutenberg(book).strip() == "Call me Ishmael."
    path = tmp_path / "book.txt"
    path.write_text(book)
    assert load(train_file=str(path))["train"]["text"] == ["Call me Ishmael."]


def test_folder_of_files_and_gzip(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_text("first file line\n")
    with gzip.open(tmp_path / "d" / "b.txt.gz", "wt") as f:
        f.write("second file line\n")
    rows = load(train_file=str(tmp_path / "d"))["train"]
    assert rows["text"] == ["first file line", "second file line"] and rows["doc_id"] == [0, 1]


def test_tsv_csv_jsonl(tmp_path):
    (tmp_path / "a.tsv").write_text('sentence\tlabel\nit\'s "great"\t1\nbad\t0\n')
    (tmp_path / "a.csv").write_text("text,label\nhello,pos\n")
    (tmp_path / "a.jsonl").write_text('{"text": "x", "label": 2}\n')
    tsv = load(train_file=str(tmp_path / "a.tsv"))["train"]
    assert tsv["sentence"] == ['it\'s "great"', "bad"] and tsv["label"] == [1, 0]
    assert load(train_file=str(tmp_path / "a.csv"))["train"]["label"] == ["pos"]
    assert load(train_file=str(tmp_path / "a.jsonl"))["train"]["label"] == [2]


def test_validation_split_held_out_when_absent(tmp_path):
    (tmp_path / "a.txt").write_text("\n".join(f"line {i}" for i in range(100)))
    splits = load_raw_datasets(DataArguments(train_file=str(tmp_path / "a.txt"), validation_split_percentage=10))
    assert len(splits["train"]) == 90 and len(splits["validation"]) == 10


@pytest.mark.parametrize(
    "setup, option, message",
    [
        (lambda d: None, "train_file", "--train_file {d}/missing.txt does not exist"),
        (lambda d: (d / "empty.txt").write_text("  \n"), "train_file", "{d}/empty.txt is empty"),
        (
            lambda d: (d / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1") * 10),
            "train_file",
            "{d}/latin1.txt is not UTF-8",
        ),
        (
            lambda d: (d / "a.docx").write_text("x"),
            "validation_file",
            "--validation_file {d}/a.docx: unsupported file type",
        ),
    ],
)
def test_bad_input_errors_name_the_file(tmp_path, setup, option, message):
    setup(tmp_path)
    name = {"train_file": "missing.txt", "validation_file": "a.docx"}[option]
    for candidate in ("empty.txt", "latin1.txt"):
        if (tmp_path / candidate).exists():
            name = candidate
    with pytest.raises(UserError, match=message.format(d=tmp_path).replace(".", r"\.")):
        load(**{option: str(tmp_path / name)})


def test_unknown_column_error(tmp_path):
    (tmp_path / "a.tsv").write_text("sentence\tlabel\nok\t1\n")
    rows = load(train_file=str(tmp_path / "a.tsv"))["train"]
    with pytest.raises(
        UserError, match=r"column 'text' not found in --train_file a.tsv; columns are: sentence, label"
    ):
        check_columns(rows, ["text"], "--train_file a.tsv")


def test_second_load_reuses_the_datasets_cache(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text(TEXT * 50)
    first = load(train_file=str(path))["train"]
    second = load(train_file=str(path))["train"]
    assert first.cache_files and first.cache_files == second.cache_files  # same arrow files, nothing re-processed
    tok = train_wordpiece(batch_iterator(first, "text"), vocab_size=200, min_frequency=1)
    a = tokenize_dataset(first, tok, add_special_tokens=False)
    b = tokenize_dataset(second, tok, add_special_tokens=False)
    assert a.cache_files == b.cache_files


def test_wordpiece_round_trip_and_pairs(tmp_path):
    texts = ["the quick brown fox jumps over the lazy dog"] * 20 + ["unbelievable things happen"] * 5
    tok = train_wordpiece([texts], vocab_size=120, min_frequency=1)
    enc = tok("the lazy fox", "brown dog")
    assert enc.input_ids[0] == tok.cls_token_id and enc.input_ids.count(tok.sep_token_id) == 2
    assert enc.token_type_ids[-1] == 1 and enc.token_type_ids[0] == 0
    assert tok.decode(tok("the lazy fox").input_ids, skip_special_tokens=True) == "the lazy fox"
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("the lazy fox").input_ids == enc.input_ids[:5] + [tok.sep_token_id] or again.mask_token == "[MASK]"
    assert again.mask_token == "[MASK]" and again.pad_token == "[PAD]"


def test_wordpiece_training_is_deterministic():
    # The plain `tokenizers` trainer gives different vocabularies from run to run on texts like these (count ties
    # broken by hash-map order, huggingface/tokenizers#1794); train_wordpiece must not.
    texts = ["Wel come to the Tok en izers libr ary.", "tokenizers are trained here and there"] * 3
    results = {
        tuple(sorted(train_wordpiece(texts, vocab_size=60, min_frequency=1).get_vocab().items())) for _ in range(12)
    }
    assert len(results) == 1
    vocab = dict(next(iter(results)))
    assert "##e" in vocab and vocab["[PAD]"] == 0
    tok = train_wordpiece(lambda: iter([texts]), vocab_size=60, min_frequency=1)  # a function giving fresh iterables
    assert dict(tok.get_vocab()) == vocab and tok.all_special_tokens.count("##e") == 0


def test_bpe_round_trip_and_word_level_cutoff():
    texts = ["ein kleines Mädchen klettert", "a little girl climbing"] * 30
    bpe = train_bpe([texts], vocab_size=300)
    ids = bpe("a little Mädchen").input_ids
    assert ids[-1] == bpe.eos_token_id
    assert bpe.decode(ids, skip_special_tokens=True).strip() == "a little Mädchen"
    words = train_word_level([["a a a b b c"]], max_size=100, min_frequency=2)
    assert words.convert_ids_to_tokens(words("a b c").input_ids) == ["a", "b", "<unk>"]


def test_empty_corpus_cannot_train_a_tokenizer():
    with pytest.raises(UserError, match="empty corpus"):
        train_wordpiece([[]], vocab_size=100)


def test_packing_into_blocks(tmp_path):
    from datasets import Dataset

    rows = Dataset.from_dict({"input_ids": [[1] * 5, [2] * 7, [3] * 3], "doc_id": [0, 0, 1]})
    packed = pack_into_blocks(rows, block_size=6, bos_token_id=100, eos_token_id=101)
    flat = [t for block in packed["input_ids"] for t in block if t < 100]
    assert flat == [1] * 5 + [2] * 7 + [3] * 3  # nothing lost, order kept
    assert all(len(b) == 6 and b[0] == 100 and b[-1] == 101 for b in packed["input_ids"][:-1])
    assert packed["example_id"] == list(range(len(packed)))
    by_doc = pack_into_blocks(rows, block_size=6, bos_token_id=100, eos_token_id=101, respect_documents=True)
    assert all(len({t for t in b if t < 100}) == 1 or 3 not in b for b in by_doc["input_ids"])
    assert any(b[1:-1] == [3, 3, 3] for b in by_doc["input_ids"])


def test_demo_data_is_deterministic_and_split(tmp_path):
    files = demo_data_files("classification", str(tmp_path / "c"))
    assert set(files) == {"train", "validation", "test"}
    first = build_classification()
    assert first == build_classification()
    labels = {row["label"] for row in first["train"]}
    assert "asyncio" in labels and len(labels) >= 5
    assert not {r["text"] for r in first["train"]} & {r["text"] for r in first["test"]}
    summ = build_summarization()
    assert len(summ["train"]) > 500 and all(r["summary"].endswith(".") for r in summ["test"])
    demo = load_raw_datasets(DataArguments(dataset_name="demo", dataset_config_name="corpus"))
    assert len(demo["train"]) > 5000 and set(demo["train"].column_names) == {"text", "doc_id"}


def test_unknown_demo_name():
    with pytest.raises(UserError, match="dataset_config_name 'poems' is not a demo dataset"):
        load(dataset_name="demo", dataset_config_name="poems")


def test_unknown_demo_name_and_unreachable_hub_dataset_streamed_or_not(monkeypatch):
    """One line each, the same from the in-memory and the streaming loaders (one helper each)."""
    from toolkit.data.arguments import PretrainingDataArguments
    from toolkit.data.streaming import open_text_streams

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="dataset_config_name 'poems' is not a demo dataset"):
        open_text_streams(PretrainingDataArguments(dataset_name="demo", dataset_config_name="poems", streaming=True))
    for streaming, verb in ((False, "loaded"), (True, "streamed")):
        args = PretrainingDataArguments(dataset_name="nobody/no-such-dataset", streaming=streaming)
        with pytest.raises(UserError, match=f"dataset_name nobody/no-such-dataset could not be {verb} .*--train_file"):
            (open_text_streams if streaming else load_raw_datasets)(args)


def test_real_gutenberg_book_is_stripped(shared_data):
    path = os.path.join(shared_data, "pretrain_corpus", "gutenberg", "pg11_alices_adventures_in_wonderland.txt")
    rows = load(train_file=path)["train"]["text"]
    assert not any("Project Gutenberg" in r for r in rows[:5]) and not any("Project Gutenberg" in r for r in rows[-5:])
    assert len(rows) > 500


def test_word_vocabulary_is_reproducible():
    # (The `tokenizers` WordPiece trainer breaks merge ties in a run-dependent order, so WordPiece vocabularies can
    # differ between runs; recipes save the tokenizer they trained and reuse it on resume.)
    texts = [f"word{i % 37} other{i % 11} tie{i % 5}" for i in range(400)]
    words = train_word_level([texts], max_size=60).get_vocab()
    assert all(train_word_level([texts], max_size=60).get_vocab() == words for _ in range(3))
