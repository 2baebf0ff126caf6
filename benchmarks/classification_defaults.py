"""Flags-only classification vs the tuned config, per backbone, at small label budgets (SST-2 by default).

Runs `recipes/finetune_classification.py` in-process once per (setting, labels, seed) and appends one JSON line per
run to `--out` (runs already there are skipped, so an interrupted sweep continues):
- `defaults`: flags only (data, columns, `--max_train_samples`, `--seed`), i.e. the per-backbone defaults;
- `tuned`: the shipped YAML of the backbone (`sst2_scratch.yaml` / `sst2_minilm.yaml` / `sst2_elmo.yaml`) with the
  epochs and batch size measured best at small budgets (scratch: batch 32, 10 epochs; MiniLM: 5 epochs);
- `old`: flags only with the dataclass defaults the recipe used before (lr 5e-5, batch 8, 1 epoch, no warmup).

    OMP_NUM_THREADS=1 python benchmarks/classification_defaults.py --backbone scratch --labels 500 2000 \
        --seeds 1 2 3 --settings defaults tuned --data ../shared/data/sst2 --out /tmp/defaults.jsonl
    OMP_NUM_THREADS=1 python benchmarks/classification_defaults.py --backbone "$MINILM" --labels 2000 --seeds 1 \
        --settings defaults tuned --data ../shared/data/sst2 --out /tmp/defaults.jsonl

Extra arguments after `--` go to every run (e.g. `-- --elmo_word_embeddings false`).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import sys
import time

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)

OLD_DEFAULTS = [
    "--learning_rate", "5e-5", "--per_device_train_batch_size", "8", "--num_train_epochs", "1", "--warmup_steps", "0",
    "--max_grad_norm", "1.0", "--weight_decay", "0.0", "--group_by_length", "false", "--eval_steps", "500",
]  # fmt: skip
TUNED = {
    "scratch": ["--config", "recipes/configs/classification/sst2_scratch.yaml", "--per_device_train_batch_size", "32",
                "--num_train_epochs", "10", "--early_stopping_patience", "0"],
    "bert": ["--config", "recipes/configs/classification/sst2_minilm.yaml", "--num_train_epochs", "5",
             "--eval_steps", "100"],
    "elmo": ["--config", "recipes/configs/classification/sst2_elmo.yaml", "--num_train_epochs", "10"],
}  # fmt: skip


def backbone_kind(name: str) -> str:
    if name == "scratch":
        return "scratch"
    with open(os.path.join(name, "config.json"), encoding="utf-8") as f:
        return "elmo" if json.load(f).get("model_type") == "toolkit_elmo" else "bert"


def main() -> None:
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", required=True, help="'scratch' or a model folder (toolkit or HF BERT, ELMo).")
    parser.add_argument("--labels", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--settings", nargs="+", default=["defaults", "tuned"], choices=["defaults", "tuned", "old"])
    parser.add_argument("--data", required=True, help="Folder with train.tsv, dev.tsv, test_labeled.tsv.")
    parser.add_argument("--tag", default="", help="Label stored with each run (e.g. 'no word channel').")
    parser.add_argument("--out", required=True, help="JSON-lines file the results are appended to.")
    parser.add_argument("--work_dir", default="/tmp/classification_defaults_runs")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    from tests.conftest import load_recipe

    recipe = load_recipe("finetune_classification")
    kind = backbone_kind(args.backbone)
    done = set()
    if os.path.isfile(args.out):
        for line in open(args.out, encoding="utf-8"):
            row = json.loads(line)
            done.add((row["backbone"], row["setting"], row["labels"], row["seed"], row.get("tag", "")))
    for labels in args.labels:
        for seed in args.seeds:
            for setting in args.settings:
                key = (args.backbone, setting, labels, seed, args.tag)
                if key in done:
                    continue
                out_dir = os.path.join(args.work_dir, f"{kind}_{setting}_{labels}_{seed}")
                data = [
                    "--train_file", os.path.join(args.data, "train.tsv"),
                    "--validation_file", os.path.join(args.data, "dev.tsv"),
                    "--test_file", os.path.join(args.data, "test_labeled.tsv"),
                    "--text_column", "sentence", "--label_column", "label",
                ]  # fmt: skip
                flags = (TUNED[kind] if setting == "tuned" else []) + data + [
                    "--model_name_or_path", args.backbone, "--max_train_samples", str(labels), "--seed", str(seed),
                    "--output_dir", out_dir, "--overwrite_output_dir", "true", "--save_steps", "0",
                ]  # fmt: skip
                flags += (OLD_DEFAULTS if setting == "old" else []) + extra
                start = time.perf_counter()
                log = io.StringIO()
                with contextlib.redirect_stdout(log):
                    results = recipe.main(*recipe.parse_args(flags))
                chosen = [line for line in log.getvalue().splitlines() if line.startswith("defaults for the")]
                run_config = json.load(open(os.path.join(out_dir, "run_config.json"), encoding="utf-8"))
                row = {
                    "backbone": args.backbone, "kind": kind, "setting": setting, "labels": labels, "seed": seed,
                    "tag": args.tag, "dev_accuracy": round(100 * results["validation_accuracy"], 2),
                    "test_accuracy": round(100 * results["test_accuracy"], 2), "steps": results["global_step"],
                    "seconds": round(time.perf_counter() - start, 1), "chosen": chosen[0] if chosen else "",
                    "learning_rate": run_config["learning_rate"],
                    "batch": run_config["per_device_train_batch_size"], "epochs": run_config["num_train_epochs"],
                }  # fmt: skip
                with open(args.out, "a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
                print(json.dumps(row), flush=True)
                shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
