"""Stop signals (SIGTERM / SIGINT / SIGUSR1): checkpoint at the signal's step, 0 steps lost, resume reproduces the
uninterrupted run; a second signal exits at once; SIGTERM to a single-process `accelerate launch` leaves no trainer
behind. Runs tests/helpers/tiny_train.py (the shared helpers without a model), steps slowed down by
TOOLKIT_TEST_STEP_DELAY so the signal lands mid-run."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import REPO, free_port
from tests.test_training import SCRIPT, parse, run_tiny
from toolkit.training import EXIT_PREEMPTED, list_checkpoints

ARGS = ["--per_device_train_batch_size", "8", "--num_train_epochs", "3", "--learning_rate", "0.01", "--dropout", "0.1"]
ARGS += ["--save_steps", "0"]  # no periodic checkpoint: whatever resumes comes from the signal


def _env(delay="0.15"):
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOOLKIT_TEST_STEP_DELAY": delay, "PYTHONUNBUFFERED": "1"}


def _start(cmd, env=None, **kwargs):
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env or _env(), **kwargs
    )


def _signal_at_step(proc, step: int, send) -> tuple[str, str]:
    """Read stdout until `step` is printed, call `send()`, return (stdout, stderr) after the process ends."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("{") and json.loads(line).get("step") == step:
            send()
            break
    out, err = proc.communicate(timeout=300)
    return "".join(lines) + out, err


def _stopped_step(stderr: str) -> int:
    (line,) = [x for x in stderr.splitlines() if x.startswith("stopped by")]
    assert "--resume_from_checkpoint latest" in line and f"exit code {EXIT_PREEMPTED}" in line
    return int(line.split("after step ")[1].split(":")[0])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT])
def test_signal_checkpoints_at_its_step_and_resume_is_exact(sig, tmp_path):
    full, full_final = run_tiny(["--output_dir", str(tmp_path / "full"), *ARGS])
    cut = str(tmp_path / "cut")
    proc = _start([sys.executable, SCRIPT, "--output_dir", cut, *ARGS])
    stdout, stderr = _signal_at_step(proc, 5, lambda: proc.send_signal(sig))
    assert proc.returncode == EXIT_PREEMPTED, stderr[-2000:]
    assert "Traceback" not in stderr
    stopped = _stopped_step(stderr)
    before, _ = parse(stdout + '{"final_weight_sum": 0}\n')
    assert stopped >= 5 and max(before) == stopped  # the step in flight was finished, nothing after it ran
    assert [os.path.basename(p) for p in list_checkpoints(cut)] == [f"step-{stopped:08d}"]
    resumed, resumed_final = run_tiny(["--output_dir", cut, *ARGS, "--resume_from_checkpoint", "latest"])
    assert min(resumed) == stopped + 1 and max(resumed) == max(full)  # 0 steps lost, none repeated
    assert {s: resumed[s] for s in resumed} == {s: full[s] for s in resumed}
    assert resumed_final == full_final


def test_second_ctrl_c_exits_at_once(tmp_path):
    proc = _start([sys.executable, SCRIPT, "--output_dir", str(tmp_path), *ARGS])

    def twice():
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
        proc.send_signal(signal.SIGINT)

    _, stderr = _signal_at_step(proc, 3, twice)
    assert proc.returncode == 128 + signal.SIGINT, stderr[-2000:]
    assert "second signal (SIGINT): exiting now" in stderr and "Traceback" not in stderr
    assert not list_checkpoints(str(tmp_path))


def _launch_cmd(nproc: int) -> list[str]:
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--num_machines", "1", "--mixed_precision", "no"]
    cmd += ["--dynamo_backend", "no", "--main_process_port", str(free_port())]
    cmd += ["--multi_gpu", "--num_processes", str(nproc)] if nproc > 1 else ["--cpu", "--num_processes", "1"]
    return cmd


def _session_processes(sid: int) -> list[int]:
    alive = []
    for pid in psutil.pids():
        try:
            if os.getsid(pid) == sid and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            pass
    return alive


def test_sigterm_to_single_process_launcher_leaves_no_trainer(tmp_path):
    proc = _start([*_launch_cmd(1), SCRIPT, "--output_dir", str(tmp_path), *ARGS], start_new_session=True)
    try:
        _signal_at_step(proc, 3, lambda: proc.send_signal(signal.SIGTERM))
        deadline = time.time() + 60
        while _session_processes(proc.pid) and time.time() < deadline:
            time.sleep(0.5)
        assert not _session_processes(proc.pid), "the trainer outlived its launcher"
        # the trainer got SIGTERM from the launcher (accelerate >= 1.16) or when its parent died (PR_SET_PDEATHSIG):
        # it checkpointed rather than being cut
        assert len(list_checkpoints(str(tmp_path))) == 1
    finally:
        for pid in _session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.distributed
def test_two_processes_agree_on_the_step_when_only_one_is_signalled(tmp_path):
    def run(out, *extra, signal_rank1_at=None):
        proc = _start(
            [*_launch_cmd(2), SCRIPT, "--output_dir", out, *ARGS, "--per_device_train_batch_size", "4", *extra]
        )
        if signal_rank1_at is None:
            stdout, stderr = proc.communicate(timeout=600)
            assert proc.returncode == 0, stderr[-3000:]
            return parse(stdout), stderr

        def term_rank1():
            for child in psutil.Process(proc.pid).children(recursive=True):
                if child.environ().get("RANK") == "1":
                    child.send_signal(signal.SIGTERM)
                    return
            raise AssertionError("rank 1 not found")

        return _signal_at_step(proc, signal_rank1_at, term_rank1), proc.returncode

    (full, full_final), _ = run(str(tmp_path / "full"))
    cut = str(tmp_path / "cut")
    (stdout, stderr), rc = run(cut, signal_rank1_at=4)
    assert rc != 0
    stopped = _stopped_step(stderr)  # printed by rank 0, which was not signalled
    assert stopped >= 4
    assert [os.path.basename(p) for p in list_checkpoints(cut)] == [f"step-{stopped:08d}"]
    (resumed, resumed_final), _ = run(cut, "--resume_from_checkpoint", "latest")
    assert min(resumed) == stopped + 1 and max(resumed) == max(full)
    assert {s: resumed[s] for s in resumed} == {s: full[s] for s in resumed}
    assert resumed_final == full_final


def test_recipe_stopped_between_logging_steps_logs_what_the_uninterrupted_run_logs(tmp_path):
    """pretrain_bert, logging every 4 steps, stopped mid-window: the checkpoint carries the partial window, so the
    resumed run's logged losses (means over 4 steps) and final weights equal the uninterrupted run's."""
    from safetensors.torch import load_file

    from tests.recipes.test_pretrain_bert import TINY

    recipe = os.path.join("recipes", "pretrain_bert.py")
    args = [*TINY, "--logging_steps", "4", "--save_steps", "0", "--eval_steps", "0"]

    def history(out):
        with open(os.path.join(out, "log_history.json")) as f:
            return {h["step"]: h["loss"] for h in json.load(f) if "loss" in h}

    full = str(tmp_path / "full")
    same_threads = {**os.environ, "OMP_NUM_THREADS": "1"}  # as the cut run: other thread counts round differently
    done = subprocess.run(
        [sys.executable, recipe, *args, "--output_dir", full],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=same_threads,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    cut = str(tmp_path / "cut")
    proc = _start([sys.executable, recipe, *args, "--output_dir", cut], env=_env("0.3"))

    def later():
        time.sleep(0.45)  # into step 5: between logging steps
        proc.send_signal(signal.SIGTERM)

    _, stderr = _signal_at_step(proc, 4, later)
    assert proc.returncode == EXIT_PREEMPTED, stderr[-3000:]
    stopped = _stopped_step(stderr)
    resumed = subprocess.run(
        [sys.executable, recipe, *args, "--output_dir", cut, "--resume_from_checkpoint", "latest"],
        capture_output=True, text=True, cwd=REPO, env=same_threads,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected = {s: v for s, v in history(full).items() if s > stopped}
    assert {s: v for s, v in history(cut).items() if s > stopped} == expected, f"stopped at {stopped}"
    a, b = load_file(os.path.join(full, "model.safetensors")), load_file(os.path.join(cut, "model.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)


def test_ctrl_c_to_a_single_process_launch_still_checkpoints(tmp_path):
    """Ctrl-C in a terminal reaches the launcher and the trainer (one process group): the launcher exits, and its
    death is not taken for a second Ctrl-C, so the trainer still finishes its step and checkpoints."""
    proc = _start([*_launch_cmd(1), SCRIPT, "--output_dir", str(tmp_path), *ARGS], start_new_session=True)
    try:
        _signal_at_step(proc, 3, lambda: os.killpg(proc.pid, signal.SIGINT))
        deadline = time.time() + 60
        while _session_processes(proc.pid) and time.time() < deadline:
            time.sleep(0.5)
        assert not _session_processes(proc.pid)
        assert len(list_checkpoints(str(tmp_path))) == 1
    finally:
        for pid in _session_processes(proc.pid):
            os.kill(pid, signal.SIGKILL)


def test_the_launchers_sigterm_after_ctrl_c_is_not_a_second_signal(tmp_path):
    """accelerate >= 1.16 answers a Ctrl-C with SIGTERM to its children, just after the trainer got the SIGINT
    itself: under `accelerate launch` that SIGTERM is the same request (the run checkpoints); a second Ctrl-C still
    exits at once."""
    env = {**_env(), "ACCELERATE_DYNAMO_BACKEND": "no"}  # what accelerate launch exports
    proc = _start([sys.executable, SCRIPT, "--output_dir", str(tmp_path / "relayed"), *ARGS], env=env)

    def ctrl_c_then(sig):
        def send():
            proc.send_signal(signal.SIGINT)
            time.sleep(0.02)
            proc.send_signal(sig)

        return send

    _, stderr = _signal_at_step(proc, 3, ctrl_c_then(signal.SIGTERM))
    assert proc.returncode == EXIT_PREEMPTED, stderr[-2000:]
    assert len(list_checkpoints(str(tmp_path / "relayed"))) == 1
    proc = _start([sys.executable, SCRIPT, "--output_dir", str(tmp_path / "twice"), *ARGS], env=env)
    _, stderr = _signal_at_step(proc, 3, ctrl_c_then(signal.SIGINT))
    assert proc.returncode == 128 + signal.SIGINT and "second signal (SIGINT)" in stderr, stderr[-2000:]


def test_nohup_run_outlives_the_shell_that_started_it(tmp_path):
    """`nohup python recipe ... &` from a shell that then exits: the run goes on (the parent-death stop is only for
    processes that `accelerate launch` started; it used to stop such a run before its first step)."""
    done = tmp_path / "done"
    child = (
        "import time, types; time.sleep(1.0)\n"  # the starting shell is gone by now: reparented
        "from toolkit.training import preemption\n"
        "preemption.install(types.SimpleNamespace(process_index=0, num_processes=1))\n"
        f"time.sleep(0.5); open({str(done)!r}, 'w').write('alive')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACCELERATE_")}
    env["PYTHONPATH"] = REPO
    script = tmp_path / "child.py"
    script.write_text(child, encoding="utf-8")
    subprocess.run(["bash", "-c", f"nohup {sys.executable} {script} > {tmp_path / 'log'} 2>&1 &"], env=env, check=True)
    deadline = time.time() + 60
    while not done.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert done.exists(), (tmp_path / "log").read_text()
