import importlib.util
import os
import socket
import subprocess
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")


def load_recipe(name: str):
    """Import `recipes/<name>.py` (recipes are scripts, not a package) as module `<name>`."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "recipes", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve postponed annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_launch(args: list[str], nproc: int = 1, timeout: int = 600, extra_launch: list[str] | None = None):
    """Run a script under `accelerate launch` (nproc > 1: real gloo processes on CPU). Returns CompletedProcess."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if nproc > 1:
        cmd += ["--multi_gpu", "--num_processes", str(nproc)]
    else:
        cmd += ["--num_processes", "1", "--cpu"]
    cmd += [
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
    ]
    cmd += extra_launch or []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd + args, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


@pytest.fixture
def shared_data():
    if not os.path.isdir(SHARED_DATA):
        pytest.skip("../shared/data not present")
    return SHARED_DATA


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (in-process recipe runs then match the one-thread subprocess runs)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
