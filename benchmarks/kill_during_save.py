"""Kill -9 a training run at random moments while it checkpoints every step, then check that every checkpoint left
on disk resumes (no corrupt `latest`). Prints one JSON line with the counts.

    python benchmarks/kill_during_save.py --kills 10
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from toolkit.training import list_checkpoints  # noqa: E402

SCRIPT = os.path.join(REPO, "tests", "helpers", "tiny_train.py")
ARGS = [
    "--per_device_train_batch_size",
    "8",
    "--num_train_epochs",
    "50",
    "--save_steps",
    "1",
    "--save_total_limit",
    "2",
]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()
    rng = random.Random(opts.seed)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    in_save = corrupt = 0
    for _ in range(opts.kills):
        out = tempfile.mkdtemp(prefix="kill_during_save_")
        proc = subprocess.Popen([sys.executable, SCRIPT, "--output_dir", out, *ARGS], stdout=subprocess.PIPE, env=env)
        for line in proc.stdout:  # let it save a few checkpoints, then kill at a random moment
            if line.startswith(b'{"step": 5'):
                break
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        root = os.path.join(out, "checkpoints")
        in_save += any(name.endswith(".tmp") for name in os.listdir(root))
        resumed = subprocess.run(
            [sys.executable, SCRIPT, "--output_dir", out, *ARGS, "--resume_from_checkpoint", "latest",
             "--stop_after_steps", str(int(os.path.basename(list_checkpoints(out)[-1]).split("-")[1]) + 1)],
            capture_output=True, env=env,
        )  # fmt: skip
        corrupt += resumed.returncode != 0
        shutil.rmtree(out, ignore_errors=True)
    print(json.dumps({"kills": opts.kills, "killed_during_a_save": in_save, "corrupt_latest": corrupt}))


if __name__ == "__main__":
    main()
