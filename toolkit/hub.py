"""Model cards (architecture, data, training settings, metrics as `model-index`) and uploading a finished run."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from huggingface_hub import EvalResult, HfApi, ModelCard, ModelCardData

from toolkit.errors import UserError

# What never goes to the Hub from an output folder: resumable checkpoints and tracker logs.
UPLOAD_IGNORE = [
    "checkpoints/**",  # resumable training state
    "runs/**",  # tracker logs
    "best_model/**",  # classification: already copied to the top level
    "converted_backbone/**",  # classification: the HF BERT converted before fine-tuning
    "scratch_tokenizer/**",
    "**/*.tmp",
]


@dataclass
class CardMetric:
    """One result for `model-index`: e.g. CardMetric("fill-mask", "accuracy", 0.42, "wikitext", "test")."""

    task_type: str
    metric_type: str
    value: float
    dataset_name: str
    dataset_split: str = "validation"
    dataset_type: str | None = None
    metric_name: str | None = None


@dataclass
class CardInfo:
    title: str
    summary: str
    datasets: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    pipeline_tag: str | None = None
    base_model: str | None = None
    language: str | list[str] | None = "en"
    license: str | None = None


def _architecture_table(config) -> str:
    if config is None:
        return ""
    values = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    skip = {"auto_map", "architectures", "id2label", "label2id", "transformers_version", "torch_dtype", "dtype"}
    rows = [
        f"| `{k}` | `{json.dumps(v)}` |" for k, v in sorted(values.items()) if k not in skip and not k.startswith("_")
    ]
    return "| setting | value |\n|---|---|\n" + "\n".join(rows)


def write_model_card(
    output_dir: str,
    info: CardInfo,
    config=None,
    run_config: dict | None = None,
    metrics: list[CardMetric] | None = None,
) -> str:
    """Write `output_dir/README.md` and return its path. The card parses with `huggingface_hub.ModelCard`."""
    metrics = metrics or []
    eval_results = [
        EvalResult(
            task_type=m.task_type,
            dataset_type=m.dataset_type or m.dataset_name,
            dataset_name=m.dataset_name,
            dataset_split=m.dataset_split,
            metric_type=m.metric_type,
            metric_name=m.metric_name or m.metric_type,
            metric_value=float(m.value),
        )
        for m in metrics
    ]
    data = ModelCardData(
        language=info.language,
        license=info.license,
        library_name="transformers",
        tags=["toolkit", *info.tags],
        datasets=info.datasets or None,
        pipeline_tag=info.pipeline_tag,
        base_model=info.base_model,
        model_name=info.title,
        eval_results=eval_results or None,
    )
    results = "\n".join(
        f"| {m.dataset_name} ({m.dataset_split}) | {m.metric_name or m.metric_type} | {m.value:.4g} |" for m in metrics
    )
    settings = "\n".join(
        f"| `{k}` | `{v}` |" for k, v in sorted((run_config or {}).items()) if v not in (None, "", [])
    )
    content = f"""---
{data.to_yaml()}
---

# {info.title}

{info.summary}

This checkpoint carries its modelling code: load it with the toolkit installed (`import toolkit`), or anywhere with
`trust_remote_code=True`:

```python
from transformers import AutoConfig, AutoModel
model = AutoModel.from_pretrained("<this folder or repo>", trust_remote_code=True)
```

## Results

| data | metric | value |
|---|---|---|
{results or "| - | - | - |"}

## Architecture

{_architecture_table(config)}

## Training settings

| option | value |
|---|---|
{settings or "| - | - |"}
"""
    path = os.path.join(output_dir, "README.md")
    os.makedirs(output_dir, exist_ok=True)
    ModelCard(content).save(path)
    return path


def push_folder(output_dir: str, hub_model_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload a finished run (weights, code, tokenizer, card, metrics; not checkpoints) to the Hub."""
    if not os.path.isfile(os.path.join(output_dir, "config.json")):
        raise UserError(f"{output_dir} is not a finished run (no config.json): nothing to push")
    if not os.path.isfile(os.path.join(output_dir, "README.md")):
        raise UserError(f"{output_dir} has no model card (README.md); rerun the recipe's final save first")
    api = HfApi(token=token)
    repo = api.create_repo(hub_model_id, private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo.repo_id,
        folder_path=output_dir,
        ignore_patterns=UPLOAD_IGNORE,
        commit_message="Upload with toolkit",
    )
    return repo.repo_id


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "push", help="Upload a finished run folder (weights, code, tokenizer, card) to the Hub."
    )
    parser.add_argument("output_dir")
    parser.add_argument("--hub_model_id", required=True, help="e.g. user/my-model")
    parser.add_argument("--private", action="store_true")
    parser.set_defaults(func=lambda a: print(f"pushed to {push_folder(a.output_dir, a.hub_model_id, a.private)}"))
