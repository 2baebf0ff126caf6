"""recipes/pretrain_bert.py --streaming end to end: trains and saves from a folder of txt + gzipped txt, resumes a run
stopped mid-stream with identical losses and weights (2 DataLoader workers), also with NSP / SOP sentence pairs,
refuses what it cannot do in one line,
and with 2 processes each rank trains on its own, disjoint part of the stream while only rank 0 writes."""

import gzip
import json
import os
import shutil

import pytest
import torch

from tests.conftest import load_recipe, run_launch
from toolkit.data.demo import demo_data_files

TINY = [
    "--streaming",
    "--max_eval_samples", "40",
    "--vocab_size", "300",
    "--tokenizer_train_samples", "3000",
    "--hidden_size", "32",
    "--num_hidden_layers", "2",
    "--num_attention_heads", "2",
    "--intermediate_size", "64",
    "--max_seq_length", "64",
    "--per_device_train_batch_size", "8",
    "--per_device_eval_batch_size", "16",
    "--learning_rate", "3e-3",
    "--warmup_steps", "2",
    "--max_steps", "16",
    "--logging_steps", "1",
    "--eval_steps", "8",
    "--save_steps", "6",
    "--save_total_limit", "5",
    "--shuffle_buffer_size", "64",
    "--stream_shard_bytes", "150000",
    "--seed", "3",
]  # fmt: skip
DEMO = ["--dataset_name", "demo", "--dataset_config_name", "corpus"]


def _history(output_dir):
    with open(os.path.join(output_dir, "log_history.json")) as f:
        history = json.load(f)
    return {h["step"]: h["loss"] for h in history if "loss" in h}, [h for h in history if "eval_loss" in h]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A folder of 3 txt files (one gzipped), paragraphs separated by blank lines, from the demo corpus."""
    folder = tmp_path_factory.mktemp("corpus")
    with open(demo_data_files("corpus")["train"], encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f][:3000]
    for i in range(3):
        body = "\n\n".join(texts[i::3])
        if i == 2:
            with gzip.open(folder / f"part{i}.txt.gz", "wt", encoding="utf-8") as g:
                g.write(body)
        else:
            (folder / f"part{i}.txt").write_text(body, encoding="utf-8")
    return str(folder)


def test_streaming_from_txt_and_gzip_trains_and_saves(corpus, tmp_path):
    recipe = load_recipe("pretrain_bert")
    out = str(tmp_path / "run")
    metrics = recipe.main(*recipe.parse_args([*TINY, "--train_file", corpus, "--output_dir", out]))
    train, evals = _history(out)
    assert sorted(train) == list(range(1, 17))
    assert evals[0]["step"] == 0 and evals[-1]["eval_loss"] < evals[0]["eval_loss"] - 0.2, evals
    assert sum(train[s] for s in range(13, 17)) < sum(train[s] for s in range(1, 5)) - 0.4, train
    assert 0.0 <= metrics["data_wait_fraction"] <= 1.0
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert os.path.isfile(os.path.join(out, name)), name


def test_streaming_resume_mid_stream_is_exact(tmp_path):
    recipe = load_recipe("pretrain_bert")
    args = [*TINY, *DEMO, "--dataloader_num_workers", "2"]
    out, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    recipe.main(*recipe.parse_args([*args, "--output_dir", out]))
    # an interrupted run: only the step-6 checkpoint (7 batches into the 2 worker streams' windows) and the tokenizer
    step = os.path.join("checkpoints", "step-00000006")
    shutil.copytree(os.path.join(out, step), os.path.join(resumed, step))
    shutil.copytree(os.path.join(out, "tokenizer"), os.path.join(resumed, "tokenizer"))
    recipe.main(*recipe.parse_args([*args, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]))
    (full, full_evals), (again, again_evals) = _history(out), _history(resumed)
    assert [again[s] for s in range(7, 17)] == [full[s] for s in range(7, 17)]
    assert again_evals[-1] == full_evals[-1]
    from safetensors.torch import load_file

    a, b = load_file(os.path.join(out, "model.safetensors")), load_file(os.path.join(resumed, "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(os.path.join(out, step, "extra_state_0.json")) as f:  # the stream state, saved as JSON (no pickle)
        saved = json.load(f)["train_stream"]
    assert len(saved["ranks"]) == 1
    # a resume with other stream settings cannot be exact: refused in one line
    with pytest.raises(SystemExit) as exit_info:
        other = ["--output_dir", str(tmp_path / "other"), "--resume_from_checkpoint", os.path.join(out, step)]
        recipe.main(*recipe.parse_args([*TINY, *DEMO, *other]))
    assert exit_info.value.code == 2


@pytest.mark.parametrize("objective", ["nsp", "sop"])
def test_streaming_sentence_pairs_train_and_resume_exactly(objective, tmp_path):
    """NSP / SOP under --streaming: document-aware pairs made on the fly (`PairPacker`), evaluated on held-out pairs,
    and a resume mid-stream is exact."""
    recipe = load_recipe("pretrain_bert")
    args = [*TINY, *DEMO, "--sentence_objective", objective, "--max_steps", "10", "--eval_steps", "10"]
    out, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    metrics = recipe.main(*recipe.parse_args([*args, "--output_dir", out]))
    assert 0.0 <= metrics["eval_sentence_accuracy"] <= 1.0
    step = os.path.join("checkpoints", "step-00000006")
    shutil.copytree(os.path.join(out, step), os.path.join(resumed, step))
    shutil.copytree(os.path.join(out, "tokenizer"), os.path.join(resumed, "tokenizer"))
    again = recipe.main(*recipe.parse_args([*args, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]))
    (full, _), (resumed_losses, _) = _history(out), _history(resumed)
    assert [resumed_losses[s] for s in range(7, 11)] == [full[s] for s in range(7, 11)]
    assert again["eval_loss"] == metrics["eval_loss"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max_steps", "-1", "--num_train_epochs", "1"], "--streaming needs --max_steps"),
        (["--max_train_samples", "10"], "--max_train_samples does not apply"),
        (["--dataloader_num_workers", "4", "--stream_shard_bytes", "10000000"], "need at least 4"),
    ],
)
def test_streaming_one_line_errors(extra, message, tmp_path, capsys):
    recipe = load_recipe("pretrain_bert")
    with pytest.raises(SystemExit) as exit_info:
        recipe.main(*recipe.parse_args([*TINY, *DEMO, *extra, "--output_dir", str(tmp_path / "x")]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("error: ")


@pytest.mark.parametrize("name", ["finetune_classification", "finetune_seq2seq"])
def test_recipes_that_load_whole_refuse_streaming(name, tmp_path, capsys):
    recipe = load_recipe(name)
    args = ["--dataset_name", "demo", "--streaming", "--output_dir", str(tmp_path / "x")]
    with pytest.raises(SystemExit) as exit_info:
        recipe.main(*recipe.parse_args(args))
    assert exit_info.value.code == 2
    assert f"--streaming is not supported by {name}.py" in capsys.readouterr().err


@pytest.mark.distributed
def test_two_processes_read_disjoint_parts_and_rank0_writes(tmp_path):
    out, trace = tmp_path / "run", tmp_path / "trace"
    trace.mkdir()
    os.environ["TOOLKIT_STREAM_TRACE_DIR"] = str(trace)
    try:
        args = [*TINY, *DEMO, "--max_steps", "12", "--stream_shard_bytes", "100000", "--output_dir", str(out)]
        result = run_launch(["recipes/pretrain_bert.py", *args], nproc=2)
    finally:
        del os.environ["TOOLKIT_STREAM_TRACE_DIR"]
    assert result.returncode == 0, result.stderr[-3000:]
    ids = [[int(i) for line in open(trace / f"stream_ids_rank{r}.txt") for i in line.split()] for r in (0, 1)]
    assert len(ids[0]) == len(ids[1]) == 12 * 8
    assert not set(ids[0]) & set(ids[1]), "the ranks trained on disjoint examples"
    assert os.path.isfile(out / "model.safetensors") and len(list((out / "checkpoints").iterdir())) == 2
    with open(out / "checkpoints" / "step-00000012" / "trainer_state.json") as f:
        assert json.load(f)["global_step"] == 12
    assert result.stdout.count(f"model:      {out}/ (config.json") == 1  # the end-of-run summary: rank 0 only


def test_streaming_a_datasets_dataset_resumes_exactly(tmp_path):
    """`--dataset_name` (here a local folder, read by `datasets.load_dataset(..., streaming=True)` as a Hub dataset
    would be): positions are `datasets`' own state dicts, and a resume is exact."""
    folder = tmp_path / "hub"
    folder.mkdir()
    for split in ("train", "validation"):
        shutil.copy(demo_data_files("corpus")[split], folder / f"{split}.jsonl")
    recipe = load_recipe("pretrain_bert")
    args = [*TINY, "--dataset_name", str(folder), "--max_steps", "50", "--save_steps", "45", "--eval_steps", "50"]
    out, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    recipe.main(*recipe.parse_args([*args, "--output_dir", out]))
    step = os.path.join("checkpoints", "step-00000045")
    with open(os.path.join(out, step, "extra_state_0.json")) as f:  # JSON, no pickle
        saved = json.load(f)["train_stream"]
    assert isinstance(saved["ranks"][0]["positions"][0]["pos"], dict)  # inside the shard: a `datasets` state dict
    shutil.copytree(os.path.join(out, step), os.path.join(resumed, step))
    shutil.copytree(os.path.join(out, "tokenizer"), os.path.join(resumed, "tokenizer"))
    recipe.main(*recipe.parse_args([*args, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]))
    (full, _), (again, _) = _history(out), _history(resumed)
    assert [again[s] for s in range(46, 51)] == [full[s] for s in range(46, 51)]
