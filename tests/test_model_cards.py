"""Model cards per task, written by the real recipes on tiny runs: Hub-valid metadata (parsed with
`huggingface_hub.ModelCard`), a usage snippet that matches the saved class and task, and that snippet executed in a
process where `toolkit` cannot be imported. Also: the run header, the end-of-run summary and `log_history.json`
of every recipe, and `--label_names` for integer-labelled files."""

import json
import os
import re

import pytest
import torch
from huggingface_hub import ModelCard

from tests.conftest import load_recipe, run_without_toolkit

TINY_BERT = [
    "--dataset_name", "demo", "--dataset_config_name", "corpus", "--max_train_samples", "200",
    "--max_eval_samples", "30", "--vocab_size", "300", "--hidden_size", "32", "--num_hidden_layers", "1",
    "--num_attention_heads", "2", "--intermediate_size", "64", "--max_seq_length", "32",
    "--per_device_train_batch_size", "8", "--max_steps", "4", "--logging_steps", "2", "--eval_steps", "0",
    "--save_steps", "0",
]  # fmt: skip
TINY_ELMO = [
    "--dataset_name", "demo", "--dataset_config_name", "corpus", "--max_train_samples", "200",
    "--max_eval_samples", "30", "--vocab_size", "300", "--min_frequency", "1", "--char_embedding_dim", "8",
    "--char_cnn_widths", "1", "2", "--char_cnn_num_filters", "8", "8", "--num_highway_layers", "1",
    "--cell_size", "32", "--projection_dim", "16", "--window_length", "10", "--eval_window_length", "10",
    "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4", "--max_steps", "4",
    "--logging_steps", "2", "--eval_steps", "0", "--save_steps", "0",
]  # fmt: skip
TINY_SEQ2SEQ = [
    "--dataset_name", "demo", "--dataset_config_name", "summarization", "--d_model", "32", "--encoder_layers", "1",
    "--decoder_layers", "1", "--attention_heads", "4", "--ffn_dim", "64", "--vocab_size", "300",
    "--max_train_samples", "48", "--max_eval_samples", "4", "--max_source_length", "32", "--max_target_length", "12",
    "--max_steps", "4", "--per_device_train_batch_size", "12", "--logging_steps", "2", "--eval_steps", "0",
    "--save_steps", "0", "--max_new_tokens", "6", "--num_beams", "3", "--length_penalty", "0.8",
]  # fmt: skip


def _classification_files(root):
    root.mkdir(parents=True, exist_ok=True)
    words = {0: ["bad", "dull", "awful"], 1: ["good", "great", "superb"]}
    for name, n in (("train", 40), ("dev", 10), ("test", 10)):
        with open(root / f"{name}.tsv", "w", encoding="utf-8") as f:
            f.write("sentence\tlabel\n")
            for i in range(n):
                f.write(f"the film was {words[i % 2][i % 3]} really\t{i % 2}\n")
    return {k: str(root / f"{v}.tsv") for k, v in (("train", "train"), ("validation", "dev"), ("test", "test"))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One tiny run of every recipe: {task: (output_dir, results, stdout)}."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cards")
    files = _classification_files(root / "data")
    argv = {
        "fill-mask": ("pretrain_bert", TINY_BERT),
        "feature-extraction": ("pretrain_elmo", TINY_ELMO),
        "summarization": ("finetune_seq2seq", TINY_SEQ2SEQ),
        "text-classification": ("finetune_classification", [
            "--train_file", files["train"], "--validation_file", files["validation"], "--test_file", files["test"],
            "--text_column", "sentence", "--label_names", "negative,positive", "--max_eval_samples", "6",
            "--scratch_embedding_size", "8", "--scratch_hidden_size", "8", "--max_steps", "4", "--eval_steps", "0",
            "--save_steps", "0", "--logging_steps", "2",
        ]),
    }  # fmt: skip
    out = {}
    import contextlib
    import io

    for task, (recipe_name, args) in argv.items():
        recipe = load_recipe(recipe_name)
        output_dir = root / task
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            results = recipe.main(*recipe.parse_args([*args, "--output_dir", str(output_dir)]))
        out[task] = (str(output_dir), results, buffer.getvalue())
    torch.set_num_threads(threads)
    return out


TASKS = ["fill-mask", "feature-extraction", "summarization", "text-classification"]


@pytest.mark.parametrize("task", TASKS)
def test_every_recipe_prints_a_header_and_where_its_outputs_went(runs, task):
    output_dir, results, stdout = runs[task]
    for line in ("data:", "model:", "training:", "effective batch", "output_dir:"):
        assert line in stdout, (line, stdout[-2000:])
    header = stdout[stdout.index("data:") :]
    assert re.search(r"model:\s+\w+, [\d.,]+M? parameters \([\d.,]+M? trainable\)", header), header[:500]
    assert re.search(r"training:\s+4 optimizer steps", header), header[:500]
    assert f"model card: {os.path.join(output_dir, 'README.md')}" in stdout
    assert f"metrics:    {os.path.join(output_dir, 'all_results.json')}" in stdout
    with open(os.path.join(output_dir, "log_history.json"), encoding="utf-8") as f:
        history = json.load(f)
    assert any("loss" in entry for entry in history), history
    with open(os.path.join(output_dir, "all_results.json"), encoding="utf-8") as f:
        assert json.load(f) == json.loads(json.dumps(results, default=str))


def test_classification_header_lists_the_named_labels(runs):
    output_dir, _, stdout = runs["text-classification"]
    assert "labels:     2 (negative, positive)" in stdout
    with open(os.path.join(output_dir, "config.json"), encoding="utf-8") as f:
        config = json.load(f)
    assert config["id2label"] == {"0": "negative", "1": "positive"}


def test_label_names_must_match_the_labels(tmp_path):
    from toolkit.errors import UserError

    recipe = load_recipe("finetune_classification")
    with pytest.raises(UserError, match="gives 3 names but the training data has 2 labels"):
        recipe.named_labels({0: "0", 1: "1"}, "a,b,c")
    with pytest.raises(UserError, match="applies to integer labels"):
        recipe.named_labels({0: "neg", 1: "pos"}, "negative,positive")
    assert recipe.named_labels({0: "0", 1: "1"}, "negative, positive") == (
        {0: "negative", 1: "positive"},
        {"negative": 0, "positive": 1},
    )


@pytest.mark.parametrize("task", TASKS)
def test_card_metadata_is_valid_for_the_hub(runs, task):
    output_dir, results, _ = runs[task]
    card = ModelCard.load(os.path.join(output_dir, "README.md"))
    data = card.data
    assert data.pipeline_tag == task and data.library_name == "transformers"
    assert data.base_model is None  # never a local path
    assert not data.datasets  # demo data and local files are not Hub datasets
    assert data.eval_results, "model-index is missing"
    for result in data.eval_results:
        assert result.dataset_split and result.metric_value is not None
        assert "examples" in result.metric_name  # how many examples were scored is named
    if task == "text-classification":  # --max_eval_samples 6 of 10: a subset, labelled as one
        splits = {r.dataset_split for r in data.eval_results}
        assert splits == {"validation[:6]", "test[:6]"}, splits
    if task == "summarization":
        assert {r.dataset_split for r in data.eval_results} == {"validation[:4]", "test[:4]"}


def _snippet(output_dir: str) -> str:
    text = open(os.path.join(output_dir, "README.md"), encoding="utf-8").read()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1, blocks
    return blocks[0].replace("<this folder or repo>", output_dir)


def test_card_snippets_match_the_saved_class(runs):
    assert 'pipeline("fill-mask"' in _snippet(runs["fill-mask"][0])
    assert 'pipeline("text-classification"' in _snippet(runs["text-classification"][0])
    seq2seq = _snippet(runs["summarization"][0])
    assert "AutoModelForSeq2SeqLM" in seq2seq and "model.generate(" in seq2seq
    assert "num_beams=3" in seq2seq and "length_penalty=0.8" in seq2seq and "max_new_tokens=6" in seq2seq
    elmo = _snippet(runs["feature-extraction"][0])
    assert "hidden_states" in elmo and "AutoModel.from_pretrained" in elmo
    for task in TASKS:  # no unused imports
        code = _snippet(runs[task][0])
        for name in re.findall(r"^from \S+ import (.*)$", code, flags=re.M)[0].split(", "):
            assert code.count(name) >= 2, (task, name)


def test_card_snippets_run_where_the_toolkit_cannot_be_imported(runs, tmp_path):
    checks = {
        "fill-mask": "assert isinstance(fill.tokenizer.mask_token, str)",
        "text-classification": "assert classify('the film was great')[0]['label'] in ('negative', 'positive')",
        "summarization": "assert all(isinstance(t, str) and not t.startswith(' ') for t in "
        "tokenizer.batch_decode(outputs, skip_special_tokens=True))",
        "feature-extraction": "assert vectors.shape[:2] == batch['input_ids'].shape and len(layers) == elmo.config.num_layers + 1",
    }
    script = []
    for task in TASKS:
        body = _snippet(runs[task][0]) + "\n" + checks[task]
        script.append(
            f"def run_{task.replace('-', '_')}():\n" + "\n".join("    " + line for line in body.splitlines())
        )
        script.append(f"run_{task.replace('-', '_')}()\nprint('ok {task}')")
    stdout = run_without_toolkit(tmp_path, "\n".join(script) + "\n", timeout=600)
    for task in TASKS:
        assert f"ok {task}" in stdout
