"""recipes/pretrain_elmo.py --streaming end to end: trains and saves from a folder of txt.gz + parquet + jsonl, resumes
a run stopped mid-segment with identical losses, carried states and weights (2 DataLoader workers), refuses what it
cannot do in one line, and with 2 processes each rank trains on its own, disjoint windows while only rank 0 writes.
The lanes themselves (each batch row continues its own text) are checked in tests/test_elmo_streaming.py."""

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
    "--max_eval_samples", "60",
    "--vocab_size", "300",
    "--min_frequency", "1",
    "--tokenizer_train_samples", "2000",
    "--char_embedding_dim", "8",
    "--char_cnn_widths", "1", "2", "3",
    "--char_cnn_num_filters", "16", "16", "32",
    "--num_highway_layers", "1",
    "--cell_size", "64",
    "--projection_dim", "32",
    "--window_length", "10",
    "--eval_window_length", "20",
    "--per_device_train_batch_size", "4",
    "--per_device_eval_batch_size", "4",
    "--learning_rate", "1e-2",
    "--warmup_steps", "2",
    "--max_steps", "16",
    "--logging_steps", "1",
    "--eval_steps", "8",
    "--save_steps", "6",
    "--save_total_limit", "5",
    "--stream_segment_windows", "4",
    "--stream_shard_bytes", "100000",
    "--seed", "3",
]  # fmt: skip
DEMO = ["--dataset_name", "demo", "--dataset_config_name", "corpus"]


def _history(output_dir):
    with open(os.path.join(output_dir, "log_history.json")) as f:
        history = json.load(f)
    return {h["step"]: h["loss"] for h in history if "loss" in h}, [h for h in history if "eval_loss" in h]


def _texts(n=3000):
    with open(demo_data_files("corpus")["train"], encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f][:n]


def test_streaming_gzip_parquet_jsonl_trains_and_saves(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "corpus"
    folder.mkdir()
    texts = _texts()
    with gzip.open(folder / "part0.txt.gz", "wt", encoding="utf-8") as g:  # one shard: a .gz is read whole
        g.write("\n\n".join(texts[0::3]))
    pq.write_table(
        pa.Table.from_pylist([{"text": t} for t in texts[1::3]]), folder / "part1.parquet", row_group_size=50
    )
    with open(folder / "part2.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in texts[2::3])
    recipe = load_recipe("pretrain_elmo")
    out = str(tmp_path / "run")
    args = [*TINY, "--train_file", str(folder), "--max_steps", "24", "--eval_steps", "12", "--output_dir", out]
    metrics = recipe.main(*recipe.parse_args(args))
    train, evals = _history(out)
    assert sorted(train) == list(range(1, 25))
    assert evals[0]["step"] == 0 and evals[-1]["eval_loss"] < evals[0]["eval_loss"] - 0.3, evals
    assert 0.0 <= metrics["data_wait_fraction"] <= 1.0
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        assert os.path.isfile(os.path.join(out, name)), name


def test_streaming_resume_mid_segment_is_exact(tmp_path):
    recipe = load_recipe("pretrain_elmo")
    args = [*TINY, *DEMO, "--dataloader_num_workers", "2"]
    out, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    recipe.main(*recipe.parse_args([*args, "--output_dir", out]))
    # step 6 = batch 3 of each worker stream: inside its first 4-window segment
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
    with open(os.path.join(out, step, "extra_state_0.json")) as f:  # positions as JSON (no pickle) ...
        saved = json.load(f)["train_stream"]
    assert [r["positions"][0]["batch"] for r in saved["ranks"]] == [3]
    states = load_file(os.path.join(out, step, "extra_state_0.safetensors"))  # ... LSTM states of both streams
    assert {k for k in states if k.startswith("train_stream.")} == {
        f"train_stream.states.0.{s}.{x}" for s in (0, 1) for x in "hc"
    }
    # a resume with another segment length cannot be exact: refused in one line
    with pytest.raises(SystemExit) as exit_info:
        other = ["--output_dir", str(tmp_path / "other"), "--resume_from_checkpoint", os.path.join(out, step)]
        recipe.main(*recipe.parse_args([*args, "--stream_segment_windows", "5", *other]))
    assert exit_info.value.code == 2


def test_streaming_without_carried_states_resumes_exactly(tmp_path):
    """--carry_state false: independent windows, shuffled in a window of --shuffle_buffer_size."""
    recipe = load_recipe("pretrain_elmo")
    args = [*TINY, *DEMO, "--carry_state", "false", "--shuffle_buffer_size", "200", "--max_steps", "10"]
    out, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    recipe.main(*recipe.parse_args([*args, "--output_dir", out]))
    step = os.path.join("checkpoints", "step-00000006")
    shutil.copytree(os.path.join(out, step), os.path.join(resumed, step))
    shutil.copytree(os.path.join(out, "tokenizer"), os.path.join(resumed, "tokenizer"))
    recipe.main(*recipe.parse_args([*args, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]))
    (full, _), (again, _) = _history(out), _history(resumed)
    assert [again[s] for s in range(7, 11)] == [full[s] for s in range(7, 11)]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--max_steps", "-1", "--num_train_epochs", "1"], "--streaming needs --max_steps"),
        (["--max_train_samples", "10"], "--max_train_samples does not apply"),
        (["--stream_shard_bytes", "10000000"], "x 4 rows (each batch row reads its own shards"),
        (["--stream_segment_windows", "0"], "--stream_segment_windows must be >= 1"),
        (["--extra_text_file", "{demo}"], "--extra_text_file does not work with --streaming"),
    ],
)
def test_streaming_one_line_errors(extra, message, tmp_path, capsys):
    recipe = load_recipe("pretrain_elmo")
    extra = [x.format(demo=demo_data_files("corpus")["train"]) for x in extra]
    with pytest.raises(SystemExit) as exit_info:
        recipe.main(*recipe.parse_args([*TINY, *DEMO, *extra, "--output_dir", str(tmp_path / "x")]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("error: ")


@pytest.mark.slow  # about 20 s; make test keeps the unit-level check (tests/test_elmo_streaming.py) and BERT's launch
@pytest.mark.distributed
def test_two_processes_read_disjoint_lanes_and_rank0_writes(tmp_path):
    out, trace = tmp_path / "run", tmp_path / "trace"
    trace.mkdir()
    os.environ["TOOLKIT_STREAM_TRACE_DIR"] = str(trace)
    try:
        args = [*TINY, *DEMO, "--max_steps", "12", "--output_dir", str(out)]
        result = run_launch(["recipes/pretrain_elmo.py", *args], nproc=2)
    finally:
        del os.environ["TOOLKIT_STREAM_TRACE_DIR"]
    assert result.returncode == 0, result.stderr[-3000:]
    ids = [[int(i) for line in open(trace / f"stream_ids_rank{r}.txt") for i in line.split()] for r in (0, 1)]
    assert len(ids[0]) == len(ids[1]) == 12 * 4
    assert not set(ids[0]) & set(ids[1]), "the ranks trained on disjoint windows"
    assert os.path.isfile(out / "model.safetensors") and len(list((out / "checkpoints").iterdir())) == 2
    assert result.stdout.count(f"model:      {out}/ (config.json") == 1  # the end-of-run summary: rank 0 only


@pytest.mark.slow
@pytest.mark.distributed
def test_two_processes_resume_mid_segment_exactly(tmp_path):
    """Every rank's lane positions and carried LSTM states are gathered into rank 0's checkpoint and each rank takes
    its own back: a 2-process run resumed at step 6 logs the losses of the uninterrupted one."""
    out, resumed = tmp_path / "full", tmp_path / "resumed"
    args = [*TINY, *DEMO, "--max_steps", "12", "--eval_steps", "12"]
    result = run_launch(["recipes/pretrain_elmo.py", *args, "--output_dir", str(out)], nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    step = os.path.join("checkpoints", "step-00000006")
    shutil.copytree(out / step, resumed / step)
    shutil.copytree(out / "tokenizer", resumed / "tokenizer")
    again = ["--output_dir", str(resumed), "--resume_from_checkpoint", "latest"]
    result = run_launch(["recipes/pretrain_elmo.py", *args, *again], nproc=2)
    assert result.returncode == 0, result.stderr[-3000:]
    (full, full_evals), (after, after_evals) = _history(out), _history(resumed)
    assert [after[s] for s in range(7, 13)] == [full[s] for s in range(7, 13)]
    assert after_evals[-1] == full_evals[-1]


def test_streaming_a_datasets_dataset_resumes_exactly(tmp_path):
    """`--dataset_name` (a local folder read by `datasets.load_dataset(..., streaming=True)`, as a Hub dataset would
    be): its data files are the shards, one per lane here, and a lane's position is `datasets`' own state dict."""
    folder = tmp_path / "hub"
    folder.mkdir()
    words = " ".join(_texts(2200)).split()
    texts = [" ".join(words[i : i + 3]) for i in range(0, len(words), 3)]  # short rows: a lane reads 64 at a time
    for name, part in (("train-0", texts[0:6000:2]), ("train-1", texts[1:6000:2]), ("validation", texts[6000:])):
        with open(folder / f"{name}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps({"text": t}) + "\n" for t in part)
    recipe = load_recipe("pretrain_elmo")
    args = [*TINY, "--dataset_name", str(folder), "--per_device_train_batch_size", "2", "--max_steps", "56"]
    args += ["--save_steps", "50", "--eval_steps", "56"]
    out, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    recipe.main(*recipe.parse_args([*args, "--output_dir", out]))
    step = os.path.join("checkpoints", "step-00000050")  # past each lane's first read of 64 rows, mid-segment
    with open(os.path.join(out, step, "extra_state_0.json")) as f:
        saved = json.load(f)["train_stream"]
    assert all(isinstance(lane["pos"], dict) for lane in saved["ranks"][0]["positions"][0]["lanes"])
    shutil.copytree(os.path.join(out, step), os.path.join(resumed, step))
    shutil.copytree(os.path.join(out, "tokenizer"), os.path.join(resumed, "tokenizer"))
    recipe.main(*recipe.parse_args([*args, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]))
    (full, _), (again, _) = _history(out), _history(resumed)
    assert [again[s] for s in range(51, 57)] == [full[s] for s in range(51, 57)]
