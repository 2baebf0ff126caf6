"""Every bad input a user reported (issue 14) and its neighbours, run as a user runs them (`python recipes/X.py ...`):
one line on stderr naming the file or key and what was expected, exit 2, no traceback, nothing written to output_dir
(so each is found before tokenizer training, data mapping and model building)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

DEMO_CORPUS = ["--dataset_name", "demo", "--dataset_config_name", "corpus", "--max_train_samples", "50"]
DEMO_CLS = ["--dataset_name", "demo", "--dataset_config_name", "classification", "--max_train_samples", "50"]


def _files(tmp):
    """The inputs the cases refer to, as {name: path}."""
    paths = {}

    def write(name, data: bytes):
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        paths[name] = path

    write("syntax.yaml", b"learning_rate: [1e-3,\nmax_steps: 3\n")
    write("list.yaml", b"- learning_rate\n- max_steps\n")
    write("unknown.yaml", b"learnig_rate: 0.001\n")
    write("late_bad_byte.txt", b"plain ascii text line\n" * 60_000 + b"caf\xe9\n")  # > 1 MiB, then Latin-1
    write("a_file", b"not a folder\n")
    write("para.de", b"hallo welt\nguten tag\n")
    write("para.en", b"hello world\ngood day\n")
    write("empty.de", b"")
    write("empty.en", b"")
    model = os.path.join(tmp, "short_model")
    os.makedirs(model)
    with open(os.path.join(model, "config.json"), "w") as f:
        f.write('{"model_type": "toolkit_bert", "max_position_embeddings": 32}')
    paths["short_model"] = model
    paths["para"] = os.path.join(tmp, "para")
    paths["empty"] = os.path.join(tmp, "empty")
    return paths


# (id, recipe, arguments with {placeholders}, what the line must say)
CASES = [
    ("yaml-syntax", "pretrain_bert", ["--config", "{syntax.yaml}"], "is not valid YAML"),
    ("yaml-not-mapping", "pretrain_bert", ["--config", "{list.yaml}"], "must hold a mapping"),
    ("yaml-unknown-key", "pretrain_bert", ["--config", "{unknown.yaml}"], "did you mean 'learning_rate'"),
    ("yaml-missing", "pretrain_bert", ["--config", "{tmp}/nope.yaml"], "does not exist"),
    ("batch-size-0", "pretrain_bert", [*DEMO_CORPUS, "--per_device_train_batch_size", "0"], "per_device_train_batch_size must be >= 1"),
    ("eval-batch-size-neg", "finetune_classification", [*DEMO_CLS, "--per_device_eval_batch_size", "-1"], "per_device_eval_batch_size must be >= 1"),
    ("accumulation-0", "pretrain_elmo", [*DEMO_CORPUS, "--gradient_accumulation_steps", "0"], "gradient_accumulation_steps must be >= 1"),
    ("layers-negative", "pretrain_bert", [*DEMO_CORPUS, "--num_hidden_layers", "-1"], "num_hidden_layers must be >= 1, got -1"),
    ("heads-0", "pretrain_bert", [*DEMO_CORPUS, "--num_attention_heads", "0"], "num_attention_heads must be >= 1, got 0"),
    ("init-range-0", "pretrain_bert", [*DEMO_CORPUS, "--initializer_range", "0"], "initializer_range must be > 0, got 0.0"),
    ("elmo-layers-0", "pretrain_elmo", [*DEMO_CORPUS, "--num_layers", "0"], "num_layers must be >= 1, got 0"),
    ("max-steps-0", "pretrain_bert", [*DEMO_CORPUS, "--max_steps", "0"], "max_steps must be > 0"),
    ("epochs-0", "finetune_classification", [*DEMO_CLS, "--num_train_epochs", "0"], "num_train_epochs must be > 0"),
    ("warmup-neg", "pretrain_elmo", [*DEMO_CORPUS, "--warmup_steps", "-1"], "warmup_steps must be >= 0"),
    ("time-budget-0", "pretrain_bert", [*DEMO_CORPUS, "--max_time_minutes", "0"], "max_time_minutes must be > 0"),
    ("scheduler", "finetune_seq2seq", ["--lr_scheduler_type", "cosin"], "lr_scheduler_type 'cosin' is not one of"),
    ("max-tokens-0", "finetune_seq2seq", ["--max_tokens", "0"], "max_tokens must be >= 1"),
    ("seq-beyond-positions", "pretrain_bert", [*DEMO_CORPUS, "--max_seq_length", "1024"], "max_seq_length 1024 exceeds the 512 positions"),
    ("cls-seq-beyond-positions", "finetune_classification", [*DEMO_CLS, "--model_name_or_path", "{short_model}", "--max_seq_length", "64"], "max_seq_length 64 exceeds the 32 positions"),
    ("unknown-model", "pretrain_bert", [*DEMO_CORPUS, "--model_name_or_path", "{tmp}/no_such_model"], "is neither a model folder nor a reachable Hub model"),
    ("output-dir-is-file", "pretrain_bert", [*DEMO_CORPUS, "--output_dir", "{a_file}"], "exists and is not a folder"),
    ("output-dir-under-file", "pretrain_elmo", [*DEMO_CORPUS, "--output_dir", "{a_file}/run"], "is a file, not a folder"),
    ("resume-missing", "pretrain_bert", [*DEMO_CORPUS, "--resume_from_checkpoint", "{tmp}/nope"], "is not a checkpoint folder"),
    ("late-non-utf8", "pretrain_bert", ["--train_file", "{late_bad_byte.txt}", "--validation_file", "{late_bad_byte.txt}"], "is not UTF-8 text (invalid byte at offset 1320003)"),
    ("parallel-prefix-missing", "finetune_seq2seq", ["--source_lang", "de", "--target_lang", "en", "--train_file", "{para}", "--validation_file", "{tmp}/valid"], "no such file or folder, and no parallel files"),
    ("parallel-empty", "finetune_seq2seq", ["--source_lang", "de", "--target_lang", "en", "--train_file", "{empty}"], "parallel file {empty}.de is empty"),
]  # fmt: skip


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("inputs"))
    return {"tmp": tmp, **_files(tmp)}


def _fill(value: str, inputs: dict) -> str:
    for name, path in inputs.items():
        value = value.replace("{" + name + "}", path)
    return value


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_nothing_written(case, inputs, tmp_path):
    _, recipe, args, expected = case
    out = str(tmp_path / "out")
    args = [_fill(a, inputs) for a in args]
    if "--output_dir" not in args:
        args += ["--output_dir", out]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, os.path.join("recipes", f"{recipe}.py"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and _fill(expected, inputs) in errors[0], proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1] == errors[0]
    assert not os.path.exists(out), os.listdir(out)
