import importlib.util
import os
import socket
import subprocess
import sys
import textwrap

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


_HIDE_TOOLKIT = """\
try:
    import toolkit
except ImportError as error:
    if "toolkit hidden" not in str(error):
        raise
else:
    raise SystemExit("toolkit is importable: this check would not prove that the saved model stands alone")
"""


def run_without_toolkit(tmp_path, code: str, *args: str | os.PathLike, timeout: int = 300) -> str:
    """Run `code` (dedented, `args` as its sys.argv[1:]) in a fresh interpreter where `import toolkit` fails, from a
    working directory outside the repository, offline and with a fresh remote-code cache; return its stdout.

    A saved model must load with `trust_remote_code=True` from the files saved beside it alone, but in the test
    interpreter the toolkit is importable, so such a load could quietly use it: a package `toolkit` that raises
    ImportError shadows the real one, and the script first checks that it does.
    """
    root = tmp_path / "without_toolkit"
    hidden = root / "hidden"
    (hidden / "toolkit").mkdir(parents=True, exist_ok=True)
    (hidden / "toolkit" / "__init__.py").write_text('raise ImportError("toolkit hidden")\n')
    script = root / "script.py"
    script.write_text(_HIDE_TOOLKIT + textwrap.dedent(code))
    workdir = root / "cwd"
    workdir.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": str(hidden),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_MODULES_CACHE": str(root / "hf_modules"),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    result = subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


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
