"""recipes/pretrain_elmo.py end to end on a tiny slice of the embedded demo corpus: held-out perplexity falls, a
mid-epoch resume (with LSTM states carried across windows) reproduces the uninterrupted run exactly, the saved folder
loads with trust_remote_code where the toolkit cannot be imported, and the shipped configs have the published
ELMo parameter counts."""

import glob
import json
import os
import shutil
import textwrap

import pytest
import torch

from tests.conftest import REPO, load_recipe, run_without_toolkit


def _recipe():
    return load_recipe("pretrain_elmo")


TINY = [
    "--dataset_name", "demo",
    "--dataset_config_name", "corpus",
    "--max_train_samples", "300",
    "--max_eval_samples", "60",
    "--vocab_size", "300",
    "--min_frequency", "1",
    "--char_embedding_dim", "8",
    "--char_cnn_widths", "1", "2", "3",
    "--char_cnn_num_filters", "16", "16", "32",
    "--num_highway_layers", "1",
    "--cell_size", "64",
    "--projection_dim", "32",
    "--cell_clip", "3.0",
    "--proj_clip", "3.0",
    "--dropout", "0.1",
    "--window_length", "10",
    "--eval_window_length", "20",
    "--carry_state", "true",
    "--per_device_train_batch_size", "8",
    "--per_device_eval_batch_size", "8",
    "--learning_rate", "1e-2",
    "--warmup_steps", "2",
    "--max_steps", "16",
    "--logging_steps", "1",
    "--eval_steps", "8",
    "--save_steps", "8",
    "--save_total_limit", "3",
    "--seed", "3",
]  # fmt: skip


def _history(output_dir):
    with open(os.path.join(output_dir, "log_history.json")) as f:
        history = json.load(f)
    train = {h["step"]: h["loss"] for h in history if "loss" in h}
    evals = [(h["step"], h["eval_perplexity"]) for h in history if "eval_perplexity" in h]
    return train, evals


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: threads only fight over a shared CPU
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    recipe = _recipe()
    out = str(tmp_path_factory.mktemp("elmo") / "run")
    metrics = recipe.main(*recipe.parse_args([*TINY, "--output_dir", out]))
    return recipe, out, metrics


def test_tiny_run_lowers_heldout_perplexity_and_saves(tiny_run):
    _, out, metrics = tiny_run
    train, evals = _history(out)
    assert sorted(train) == list(range(1, 17))
    assert evals[0][0] == 0 and evals[-1][0] == 16
    assert evals[0][1] > 200  # about uniform over the 300 words at the start
    assert evals[-1][1] < 0.6 * evals[0][1], evals  # held-out perplexity falls
    assert metrics["eval_forward_perplexity"] > 1 and metrics["eval_backward_perplexity"] > 1
    assert 0.0 < metrics["eval_oov_rate"] < 1.0
    for name in ("config.json", "model.safetensors", "modeling_elmo.py", "configuration_elmo.py",
                 "tokenization_elmo.py", "tokenizer.json", "README.md"):  # fmt: skip
        assert os.path.isfile(os.path.join(out, name)), name


def test_mid_epoch_resume_is_exact(tiny_run, tmp_path):
    recipe, out, _ = tiny_run
    resumed = str(tmp_path / "resumed")
    # an interrupted run: only the step-8 checkpoint (mid-epoch) and the vocabulary
    os.makedirs(os.path.join(resumed, "checkpoints"))
    shutil.copytree(
        os.path.join(out, "checkpoints", "step-00000008"), os.path.join(resumed, "checkpoints", "step-00000008")
    )
    shutil.copytree(os.path.join(out, "tokenizer"), os.path.join(resumed, "tokenizer"))
    with open(os.path.join(resumed, "checkpoints", "step-00000008", "trainer_state.json")) as f:
        state = json.load(f)
    assert state["epoch"] == 0 and state["batch_in_epoch"] == 8
    recipe.main(*recipe.parse_args([*TINY, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]))
    full, full_evals = _history(out)
    again, again_evals = _history(resumed)
    assert [again[s] for s in range(9, 17)] == [full[s] for s in range(9, 17)]
    assert again_evals[-1] == full_evals[-1]
    from safetensors.torch import load_file

    a, b = load_file(os.path.join(out, "model.safetensors")), load_file(os.path.join(resumed, "model.safetensors"))
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_resume_without_carried_states_would_differ(tiny_run, tmp_path):
    """The carried LSTM states are part of the checkpoint: dropping them changes the continuation (so the exact
    resume above really depends on them)."""
    recipe, out, _ = tiny_run
    resumed = str(tmp_path / "resumed")
    os.makedirs(os.path.join(resumed, "checkpoints"))
    ckpt = os.path.join(resumed, "checkpoints", "step-00000008")
    shutil.copytree(os.path.join(out, "checkpoints", "step-00000008"), ckpt)
    shutil.copytree(os.path.join(out, "tokenizer"), os.path.join(resumed, "tokenizer"))
    from safetensors.torch import load_file

    tensors_file, plain_file = (os.path.join(ckpt, "extra_state_0" + ext) for ext in (".safetensors", ".json"))
    saved = load_file(tensors_file)
    assert saved["carried.h"].abs().sum() > 0
    with open(plain_file) as f:
        plain = json.load(f)
    plain["carried"] = {"h": None, "c": None}  # the checkpoint without its carried states
    with open(plain_file, "w") as f:
        json.dump(plain, f)
    os.remove(tensors_file)  # the scheduler's state is all JSON
    recipe.main(*recipe.parse_args([*TINY, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]))
    full, _ = _history(out)
    again, _ = _history(resumed)
    assert again[9] != full[9]


_REMOTE = textwrap.dedent(
    """
    import sys, torch
    from transformers import AutoModel, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(sys.argv[1], trust_remote_code=True)
    model = AutoModel.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    batch = tok(["Return the length of a zyxwvut object.", "a list"], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch)
    torch.save({"batch": dict(batch), "layers": out.stacked_hidden_states, "tok": type(tok).__name__}, sys.argv[2])
    """
)


def test_saved_model_loads_without_toolkit(tiny_run, tmp_path):
    _, out, _ = tiny_run
    run_without_toolkit(tmp_path, _REMOTE, out, tmp_path / "out.pt")
    remote = torch.load(tmp_path / "out.pt")
    assert remote["tok"] == "ElmoTokenizerFast"
    from toolkit.models.elmo import ElmoModel, ElmoTokenizerFast

    tokenizer = ElmoTokenizerFast.from_pretrained(out)
    local_batch = tokenizer(["Return the length of a zyxwvut object.", "a list"], padding=True, return_tensors="pt")
    for key in local_batch:
        assert torch.equal(local_batch[key], remote["batch"][key]), key
    model = ElmoModel.from_pretrained(out).eval()
    with torch.no_grad():
        local = model(**remote["batch"]).stacked_hidden_states
    torch.testing.assert_close(remote["layers"], local)


PUBLISHED = {"small.yaml": 13.6e6, "medium.yaml": 28.0e6, "original.yaml": 93.6e6}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_configs_have_published_parameter_counts(name):
    recipe = _recipe()
    model_args, *_ = recipe.parse_args(["--config", os.path.join(REPO, "recipes", "configs", "elmo", name)])
    tokenizer = type("Vocab", (), {"__len__": lambda self: 1000, "max_characters_per_token": 50, "pad_token_id": 0,
                                   "bos_token_id": 2, "eos_token_id": 3})()  # fmt: skip
    from toolkit.models.elmo import ElmoModel

    with torch.device("meta"):
        model = ElmoModel(model_args.elmo_config(tokenizer))
    count = sum(p.numel() for p in model.parameters())
    assert abs(count - PUBLISHED[name]) / PUBLISHED[name] < 0.02, count


def test_every_elmo_config_parses_and_names_its_command():
    recipe = _recipe()
    for path in sorted(glob.glob(os.path.join(REPO, "recipes", "configs", "elmo", "*.yaml"))):
        with open(path) as f:
            first = f.readline()
        assert first.startswith("# accelerate launch") and "recipes/pretrain_elmo.py" in first, path
        assert f"recipes/configs/elmo/{os.path.basename(path)}" in first, path
        recipe.parse_args(["--config", path])


@pytest.mark.slow
def test_independent_windows_mode_resumes_exactly(tmp_path):
    """`--carry_state false`: shuffled independent windows through `accelerator.prepare`; resume is exact too."""
    recipe = _recipe()
    args = [*TINY, "--carry_state", "false", "--max_steps", "6", "--save_steps", "3", "--eval_steps", "0"]
    out, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    recipe.main(*recipe.parse_args([*args, "--output_dir", out]))
    os.makedirs(os.path.join(resumed, "checkpoints"))
    shutil.copytree(
        os.path.join(out, "checkpoints", "step-00000003"), os.path.join(resumed, "checkpoints", "step-00000003")
    )
    shutil.copytree(os.path.join(out, "tokenizer"), os.path.join(resumed, "tokenizer"))
    recipe.main(*recipe.parse_args([*args, "--output_dir", resumed, "--resume_from_checkpoint", "latest"]))
    full, _ = _history(out)
    again, _ = _history(resumed)
    assert [again[s] for s in range(4, 7)] == [full[s] for s in range(4, 7)]


@pytest.mark.distributed
def test_two_processes_match_one_process(tmp_path):
    """2 gloo processes x 4 windows give the per-step losses of 1 process x 8 (independent windows, no dropout)."""
    from tests.conftest import run_launch

    script = os.path.join(REPO, "recipes", "pretrain_elmo.py")
    common = [*TINY, "--carry_state", "false", "--dropout", "0", "--max_steps", "5", "--eval_steps", "0"]
    common += ["--save_steps", "0"]
    one = run_launch([script, *common, "--output_dir", str(tmp_path / "one")], nproc=1)
    assert one.returncode == 0, one.stderr[-3000:]
    per_device = ["--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4"]
    two = run_launch([script, *common, *per_device, "--output_dir", str(tmp_path / "two")], nproc=2)
    assert two.returncode == 0, two.stderr[-3000:]
    a, _ = _history(str(tmp_path / "one"))
    b, _ = _history(str(tmp_path / "two"))
    assert sorted(a) == sorted(b) == list(range(1, 6))
    assert b[1] == a[1]  # the same first global batch
    for (
        step
    ) in a:  # all-reduced gradients differ from one big batch by float rounding, which Adam at lr 1e-2 amplifies
        assert b[step] == pytest.approx(a[step], rel=1e-3), (step, a, b)


def test_adaptive_cutoffs_beyond_the_vocabulary_are_a_one_line_error(tmp_path, capsys):
    recipe = _recipe()
    args = [*TINY, "--softmax_type", "adaptive", "--adaptive_cutoffs", "100", "5000", "--output_dir", str(tmp_path)]
    with pytest.raises(SystemExit) as info:
        recipe.main(*recipe.parse_args(args))
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: adaptive_cutoffs [100, 5000] must increase and stay below the vocabulary size")


@pytest.mark.distributed
def test_two_process_carried_states_resume_exactly(tmp_path):
    """--carry_state with 2 processes: each rank carries the states of its own rows, the checkpoint holds both, and
    a resumed run continues with the per-step losses of the uninterrupted one (rank 1 used to restart from rank 0's
    states)."""
    from tests.conftest import run_launch

    script = os.path.join(REPO, "recipes", "pretrain_elmo.py")
    args = [script, *TINY, "--max_steps", "6", "--save_steps", "3", "--eval_steps", "0"]
    args += ["--per_device_train_batch_size", "4"]
    out, resumed = str(tmp_path / "full"), str(tmp_path / "resumed")
    full = run_launch([*args, "--output_dir", out], nproc=2)
    assert full.returncode == 0, full.stderr[-3000:]
    os.makedirs(os.path.join(resumed, "checkpoints"))
    shutil.copytree(
        os.path.join(out, "checkpoints", "step-00000003"), os.path.join(resumed, "checkpoints", "step-00000003")
    )
    shutil.copytree(os.path.join(out, "tokenizer"), os.path.join(resumed, "tokenizer"))
    again = run_launch([*args, "--output_dir", resumed, "--resume_from_checkpoint", "latest"], nproc=2)
    assert again.returncode == 0, again.stderr[-3000:]
    a, _ = _history(out)
    b, _ = _history(resumed)
    assert [b[s] for s in range(4, 7)] == [a[s] for s in range(4, 7)], (a, b)
