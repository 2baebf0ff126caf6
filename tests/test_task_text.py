"""Task-adaptive pretraining text (--extra_text_file / --extra_text_column): the task's text column joins the
pretraining corpus with its labels dropped, the tokenizer learns its words, and mistakes are one-line errors."""

import os

import datasets
import pytest
from transformers import AutoTokenizer

from tests.conftest import load_recipe
from toolkit.data.task_text import add_task_text
from toolkit.errors import UserError

WORD = "zorblaxian"  # a word only the task text contains


def _task_file(tmp_path, rows=40):
    path = tmp_path / "train.tsv"
    lines = ["sentence\tlabel"] + [f"a {WORD} film , truly {WORD} number {i}\t{i % 2}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_rows_are_appended_without_labels(tmp_path):
    train = datasets.Dataset.from_dict({"text": ["one paragraph", "another"], "doc_id": [0, 3]})
    merged = add_task_text(train, _task_file(tmp_path, rows=5), "sentence")
    assert merged.column_names == ["text", "doc_id"]
    assert len(merged) == 7 and merged["text"][2].startswith(f"a {WORD}")
    assert set(merged["doc_id"][2:]) == {4}  # one new document after the corpus's own
    plain = datasets.Dataset.from_dict({"text": ["x"], "label": [1]})  # no doc_id, other columns are dropped
    assert add_task_text(plain, _task_file(tmp_path, rows=2), "sentence").column_names == ["text"]


def test_one_line_errors(tmp_path):
    train = datasets.Dataset.from_dict({"text": ["a"]})
    with pytest.raises(
        UserError, match=r"column 'review' not found in --extra_text_file .*train.tsv.*sentence, label"
    ):
        add_task_text(train, _task_file(tmp_path), "review")
    with pytest.raises(UserError, match="--extra_text_file .*missing.tsv does not exist"):
        add_task_text(train, str(tmp_path / "missing.tsv"), "sentence")


def test_pretrain_bert_sees_the_task_text(tmp_path, capsys):
    recipe = load_recipe("pretrain_bert")
    out = str(tmp_path / "run")
    base = [
        "--dataset_name", "demo", "--max_train_samples", "100", "--max_eval_samples", "20", "--vocab_size", "400",
        "--hidden_size", "32", "--num_hidden_layers", "1", "--num_attention_heads", "2", "--intermediate_size", "64",
        "--max_seq_length", "32", "--per_device_train_batch_size", "8", "--max_steps", "2", "--eval_steps", "0",
        "--save_steps", "0", "--output_dir", out, "--extra_text_file", _task_file(tmp_path),
    ]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        recipe.main(*recipe.parse_args([*base, "--extra_text_column", "review"]))
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "column 'review' not found in --extra_text_file" in errors[0]
    recipe.main(*recipe.parse_args([*base, "--extra_text_column", "sentence"]))
    vocab = AutoTokenizer.from_pretrained(os.path.join(out, "tokenizer")).get_vocab()
    assert WORD in vocab  # the tokenizer was trained on the task text too
    with open(os.path.join(out, "README.md"), encoding="utf-8") as f:
        assert "train.tsv (sentence column)" in f.read()  # the card says which text the model saw


def test_pretrain_elmo_sees_the_task_text(tmp_path):
    from tests.recipes.test_pretrain_elmo import TINY as ELMO_TINY

    recipe = load_recipe("pretrain_elmo")
    out = str(tmp_path / "elmo")
    argv = [*ELMO_TINY, "--max_steps", "2", "--eval_steps", "0", "--save_steps", "0", "--output_dir", out]
    recipe.main(
        *recipe.parse_args([*argv, "--extra_text_file", _task_file(tmp_path), "--extra_text_column", "sentence"])
    )
    assert WORD in AutoTokenizer.from_pretrained(out).get_vocab()  # the word vocabulary includes the task text


def test_validation_text_column(tmp_path):
    """Training on a tsv's 'sentence' column while evaluating on a text file's 'text': one flag, else one line."""
    from toolkit.data.arguments import PretrainingDataArguments
    from toolkit.data.streaming import open_text_streams
    from toolkit.data.task_text import load_pretraining_text

    class _Accelerator:
        from contextlib import nullcontext as main_process_first

    held_out = tmp_path / "held_out.jsonl"
    held_out.write_text("".join(f'{{"text": "held out {i}"}}\n' for i in range(5)), encoding="utf-8")
    args = dict(train_file=_task_file(tmp_path), validation_file=str(held_out), text_column="sentence")
    with pytest.raises(UserError, match=r"column 'sentence' not found in the validation data \(set --validation_text"):
        load_pretraining_text(_Accelerator(), PretrainingDataArguments(**args), seed=0)
    raw = load_pretraining_text(_Accelerator(), PretrainingDataArguments(**args, validation_text_column="text"), 0)
    assert raw["validation"]["sentence"][0] == "held out 0" and WORD in raw["train"]["sentence"][0]
    (tmp_path / "train.jsonl").write_text(f'{{"sentence": "a {WORD}"}}\n', encoding="utf-8")  # streams: no tsv
    args["train_file"] = str(tmp_path / "train.jsonl")
    streams = open_text_streams(PretrainingDataArguments(**args, validation_text_column="text", streaming=True))
    assert next(streams["validation"].iter()) == {"sentence": [f"held out {i}" for i in range(5)]}
    assert "sentence" in streams["validation"].column_names
