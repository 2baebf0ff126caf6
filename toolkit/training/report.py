"""What a run tells its user: a short header before training and, at the end, where everything was written.

One helper pair for all recipes, so that every run reads the same:

- `run_header`: data sizes per split, labels (classifiers), model class and parameters (trainable too), total
  optimizer steps and epochs, the effective batch (per device x processes x accumulation), the output folder and,
  when resuming, the step it continues from.
- `finish_run`: the end of every run, which owns the output folder's layout: the final model (weights + code,
  `config.json`), its tokenizer and `run_config.json`, the recipe's own outputs (predictions, ...), `all_results.json`
  (written once), `log_history.json`, the model card `README.md`, the upload when `--push_to_hub` is set, a summary
  of where everything is, and `accelerator.end_training()`.
"""

from __future__ import annotations

import glob
import json
import os

from toolkit.training.loop import save_final_model, write_json


def _count(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 100_000 else f"{n:,}"


def run_header(
    accelerator,
    recipe: str,
    training_args,
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
    processes, accumulation = accelerator.num_processes, training_args.gradient_accumulation_steps
    if per_device_batch is None:
        batch = training_args.per_device_train_batch_size * processes * accumulation
        effective = f"{batch:,} ({training_args.per_device_train_batch_size} per device"
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
        f"output_dir: {training_args.output_dir}",
    ]
    if start_step:
        lines.append(f"resuming:   from step {start_step:,}")
    text = "\n".join([f"--- {recipe} " + "-" * max(0, 60 - len(recipe)), *lines])
    accelerator.print(text)
    return text


def _existing(output_dir: str, names) -> list[str]:
    return [n for n in names if os.path.exists(os.path.join(output_dir, n))]


def finish_run(
    accelerator,
    training_args,
    model,
    tokenizer,
    *,
    results: dict,
    log_history: list[dict],
    run_config: dict,
    card,
    card_metrics: list,
    write_outputs=None,
) -> dict:
    """Collective. Save the final model and finish the run's output folder (see the module docstring).

    `card` is the `toolkit.hub.CardInfo` of the model card and `card_metrics` its `CardMetric`s; `write_outputs(model)`
    (main process, after the weights are saved, before the card and the upload) writes what only this recipe writes,
    e.g. predictions. Returns `results`."""
    output_dir = training_args.output_dir
    unwrapped = save_final_model(accelerator, model, tokenizer, output_dir, run_config)
    if accelerator.is_main_process:
        from toolkit.hub import write_model_card

        if write_outputs is not None:
            write_outputs(unwrapped)
        write_json(os.path.join(output_dir, "all_results.json"), results)
        write_json(os.path.join(output_dir, "log_history.json"), log_history)
        write_model_card(output_dir, card, config=unwrapped.config, run_config=run_config, metrics=card_metrics)
        _summary(accelerator, training_args, results)
    accelerator.end_training()
    return results


def _summary(accelerator, training_args, results: dict) -> str:
    """Print the results and where the run's files are; push to the Hub if asked. Returns the summary."""
    from toolkit.hub import push_folder

    output_dir = training_args.output_dir
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
    if training_args.push_to_hub:
        where.append(f"pushed to:  {push_folder(output_dir, training_args.hub_model_id, training_args.hub_private)}")
    text = "\n".join([json.dumps(results, indent=2, default=str), *where])
    accelerator.print(text)
    return text
