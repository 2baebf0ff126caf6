"""What a run tells its user: a short header before training and, at the end, where everything was written.

One helper pair for all recipes, so that every run reads the same:

- `run_header`: data sizes per split, labels (classifiers), model class and parameters (trainable too), total
  optimizer steps and epochs, the effective batch (per device x processes x accumulation), the output folder and,
  when resuming, the step it continues from.
- `finish_run`: writes `all_results.json` and `log_history.json`, prints the results and where the model, tokenizer,
  metrics, curve, predictions and model card are, and uploads the folder when `--push_to_hub` is set.
"""

from __future__ import annotations

import glob
import json
import os

from toolkit.training.loop import write_json


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 100_000 else f"{n:,}"


def run_header(
    accelerator,
    recipe: str,
    train_args,
    *,
    data_sizes: dict[str, int | str],
    model,
    total_steps: int,
    num_epochs: float | int,
    labels: dict | None = None,
    per_device_batch: str | None = None,
    start_step: int = 0,
    unit: str = "examples",
) -> str:
    """Print (main process) and return the header of a run; `per_device_batch` describes a batch that is not
    `per_device_train_batch_size` sequences (e.g. "8192 tokens")."""
    model = accelerator.unwrap_model(model)
    # ZeRO-3 partitions parameters: ds_numel is the full size
    sizes = [(getattr(p, "ds_numel", None) or p.numel(), p.requires_grad) for p in model.parameters()]
    total, trainable = sum(n for n, _ in sizes), sum(n for n, grad in sizes if grad)
    processes, accumulation = accelerator.num_processes, train_args.gradient_accumulation_steps
    if per_device_batch is None:
        batch = train_args.per_device_train_batch_size * processes * accumulation
        effective = f"{batch:,} ({train_args.per_device_train_batch_size} per device"
    else:
        effective = f"{per_device_batch} x {processes * accumulation} ({per_device_batch} per device"
    effective += f" x {processes} process{'es' if processes > 1 else ''} x {accumulation} accumulation)"
    lines = [
        f"data:       {' | '.join(f'{split} {n:,}' if isinstance(n, int) else f'{split} {n}' for split, n in data_sizes.items())} {unit}",
    ]
    if labels:
        names = [str(v) for v in labels.values()]
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        lines.append(f"labels:     {len(names)} ({shown})")
    lines += [
        f"model:      {type(model).__name__}, {_count(total)} parameters ({_count(trainable)} trainable)",
        f"training:   {total_steps:,} optimizer steps, {num_epochs:g} epoch{'s' if num_epochs != 1 else ''} at most; "
        f"effective batch {effective}",
        f"output_dir: {train_args.output_dir}",
    ]
    if start_step:
        lines.append(f"resuming:   from step {start_step:,}")
    text = "\n".join([f"--- {recipe} " + "-" * max(0, 60 - len(recipe)), *lines])
    accelerator.print(text)
    return text


def _existing(output_dir: str, names) -> list[str]:
    return [n for n in names if os.path.exists(os.path.join(output_dir, n))]


def finish_run(accelerator, train_args, results: dict, log_history: list[dict]) -> str:
    """Main process: write `all_results.json` + `log_history.json`, print the results and where the run's files
    are, push to the Hub if asked. Call it after the model, tokenizer and card are saved. Returns the summary."""
    if not accelerator.is_main_process:
        return ""
    from toolkit.hub import push_folder

    output_dir = train_args.output_dir
    write_json(os.path.join(output_dir, "all_results.json"), results)
    write_json(os.path.join(output_dir, "log_history.json"), log_history)
    weights = _existing(output_dir, ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"])
    tokenizer = _existing(output_dir, ["tokenizer.json", "vocab.txt", "tokenizer_config.json"])[:1]
    extra = sorted(
        os.path.basename(p)
        for pattern in ("*_predictions.*", "*_confusion_matrix.png")
        for p in glob.glob(os.path.join(output_dir, pattern))
    )
    where = [
        f"model:      {output_dir}/ ({', '.join(['config.json', *weights, *tokenizer])})",
        f"metrics:    {os.path.join(output_dir, 'all_results.json')}, curve: {os.path.join(output_dir, 'log_history.json')}",
    ]
    if extra:
        where.append(f"outputs:    {', '.join(os.path.join(output_dir, e) for e in extra)}")
    if os.path.isfile(os.path.join(output_dir, "README.md")):
        where.append(f"model card: {os.path.join(output_dir, 'README.md')}")
    if train_args.push_to_hub:
        where.append(f"pushed to:  {push_folder(output_dir, train_args.hub_model_id, train_args.hub_private)}")
    text = "\n".join([json.dumps(results, indent=2, default=str), *where])
    accelerator.print(text)
    return text
