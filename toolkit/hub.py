"""Model cards (architecture, data, training settings, metrics as `model-index`) and uploading a finished run."""

from __future__ import annotations

import json
import os
import re
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
    """One result for `model-index`: e.g. CardMetric("fill-mask", "accuracy", 0.42, "wikitext", "test").

    `num_samples` (how many examples were scored) is named on the card; `subset=True` (e.g. `--max_eval_samples`)
    writes the split as `validation[:N]`, so a result on part of a split is never labelled as the whole split.
    """

    task_type: str
    metric_type: str
    value: float
    dataset_name: str
    dataset_split: str = "validation"
    dataset_type: str | None = None
    metric_name: str | None = None
    num_samples: int | None = None
    subset: bool = False
    dataset_config: str | None = None

    @property
    def split_label(self) -> str:
        return f"{self.dataset_split}[:{self.num_samples}]" if self.subset and self.num_samples else self.dataset_split


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


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_FILE_SUFFIXES = (".txt", ".tsv", ".csv", ".json", ".jsonl", ".parquet", ".gz", ".raw", ".tokens")


def is_hub_id(name) -> bool:
    """True for what can name a Hub repository ("glue", "bentrevett/multi30k"); False for local paths, files and
    the embedded "demo" data."""
    if not isinstance(name, str) or name in ("demo", "scratch", "") or os.path.exists(name):
        return False
    return bool(_HUB_ID.match(name)) and not name.lower().endswith(_FILE_SUFFIXES) and name.count("/") <= 1


def hub_datasets(data_args) -> list[str]:
    """The Hub dataset a run trained on, for the card's `datasets:`; none when local files replaced it."""
    name = getattr(data_args, "dataset_name", None)
    return [name] if is_hub_id(name) and not getattr(data_args, "train_file", None) else []


def data_label(data_args) -> str:
    """A short name of a run's data for the results table: the Hub id, or the folder / file of the local data."""
    if hub_datasets(data_args):
        return data_args.dataset_name
    if getattr(data_args, "dataset_name", None) == "demo" and not getattr(data_args, "train_file", None):
        return f"demo ({data_args.dataset_config_name or 'corpus'})"
    path = getattr(data_args, "train_file", None) or ""
    if path and os.path.isdir(path):  # a folder of files: its own name
        return os.path.basename(os.path.normpath(path))
    folder = os.path.basename(os.path.dirname(os.path.normpath(path))) if path else ""
    return folder or os.path.basename(path) or "local data"


def pretraining_data_names(data_args) -> tuple[str, str]:
    """(what a pretrained model was trained on, what it was evaluated on), for its card; the task text of
    --extra_text_file is named with its column."""
    trained_on = data_label(data_args)
    if getattr(data_args, "extra_text_file", None):
        column = data_args.extra_text_column or "text"
        trained_on = f"{trained_on} + {os.path.basename(data_args.extra_text_file)} ({column} column)"
    validation = getattr(data_args, "validation_file", None)
    return trained_on, os.path.basename(os.path.normpath(validation)) if validation else trained_on


def results_metrics(task_type: str, results: dict, metric_names, data_args, splits=("validation", "test")):
    """`CardMetric`s for every `{split}_{metric}` in `results`, with `{split}_samples` as the count scored and
    `--max_eval_samples` marking a subset."""
    name = data_label(data_args)
    dataset_type = hub_datasets(data_args)[0] if hub_datasets(data_args) else name
    limit = getattr(data_args, "max_eval_samples", None)
    metrics = []
    for split in splits:
        count = results.get(f"{split}_samples")
        for metric in metric_names:
            if f"{split}_{metric}" in results:
                metrics.append(
                    CardMetric(
                        task_type, metric, results[f"{split}_{metric}"], name, split, dataset_type=dataset_type,
                        num_samples=count, subset=bool(limit and count and count >= limit),
                        dataset_config=getattr(data_args, "dataset_config_name", None) if hub_datasets(data_args) else None,
                    )
                )  # fmt: skip
    return metrics


def usage_snippet(config, output_dir: str | None = None, repo: str = "<this folder or repo>") -> str:
    """Python that uses the saved model for its task, chosen from the saved class (`config.architectures`)."""
    architecture = (getattr(config, "architectures", None) or [""])[0]
    model_type = getattr(config, "model_type", "")
    subfolder = output_dir is not None and os.path.isdir(os.path.join(output_dir, "source_tokenizer"))
    if architecture.endswith("ForSequenceClassification"):
        labels = list((getattr(config, "id2label", None) or {}).values())
        return f"""```python
from transformers import pipeline

classify = pipeline("text-classification", model="{repo}", trust_remote_code=True)
print(classify("A text to classify."))  # labels: {", ".join(map(str, labels[:10]))}
```"""
    if architecture.endswith("ForConditionalGeneration"):
        generation = {}
        if output_dir and os.path.isfile(os.path.join(output_dir, "generation_config.json")):
            with open(os.path.join(output_dir, "generation_config.json"), encoding="utf-8") as f:
                saved = json.load(f)
            keys = ("num_beams", "length_penalty", "no_repeat_ngram_size", "max_new_tokens")
            generation = {k: saved[k] for k in keys if k in saved}
        settings = ", ".join(f"{k}={v!r}" for k, v in generation.items())
        source = f'"{repo}", subfolder="source_tokenizer"' if subfolder else f'"{repo}"'
        target = "target_tokenizer" if subfolder else "tokenizer"
        lines = [
            "```python",
            "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer",
            "",
            f"tokenizer = AutoTokenizer.from_pretrained({source}, trust_remote_code=True)",
        ]
        if subfolder:
            lines.append(f'target_tokenizer = AutoTokenizer.from_pretrained("{repo}", trust_remote_code=True)')
        lines += [
            f'model = AutoModelForSeq2SeqLM.from_pretrained("{repo}", trust_remote_code=True).eval()',
            'inputs = tokenizer(["A source sentence."], return_tensors="pt")',
            f"outputs = model.generate(**inputs{', ' + settings if settings else ''})  # this run's beam settings",
            f"print({target}.batch_decode(outputs, skip_special_tokens=True))",
            "```",
        ]
        return "\n".join(lines)
    if model_type == "toolkit_elmo":
        return f"""```python
from transformers import AutoModel, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{repo}", trust_remote_code=True)
elmo = AutoModel.from_pretrained("{repo}", trust_remote_code=True).eval()
batch = tokenizer(["He sat on the bank of the river .", "She paid money into the bank ."], return_tensors="pt",
                  padding=True)
out = elmo(**batch)
layers = out.hidden_states  # the context-independent token layer, then each biLSTM layer: (batch, tokens, dim) each
vectors = out.stacked_hidden_states.mean(1)  # the scalar mix with equal weights: context-dependent word vectors
```
Positions 0 and -1 of every row are the sentence markers `<s>` / `</s>`.
With the toolkit installed: `toolkit embed --model <folder> --text "He sat on the bank of the river ."`."""
    if architecture.endswith("ForReplacedTokenDetection"):
        return f"""```python
from transformers import AutoModelForSequenceClassification, AutoModelForPreTraining, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{repo}", trust_remote_code=True)
# fine-tuning starts from the encoder (the generator and the detection head are left out)
classifier = AutoModelForSequenceClassification.from_pretrained("{repo}", num_labels=2, trust_remote_code=True)
# the pretraining model itself: a score per token, > 0 where the token looks replaced
detector = AutoModelForPreTraining.from_pretrained("{repo}", trust_remote_code=True).eval()
print(detector(**tokenizer(["the cat sat on the bank"], return_tensors="pt")).logits)
```"""
    if architecture.endswith(("ForMaskedLM", "ForPreTraining")) or model_type == "toolkit_bert":
        return f"""```python
from transformers import pipeline

fill = pipeline("fill-mask", model="{repo}", trust_remote_code=True)
print(fill(f"The capital of France is {{fill.tokenizer.mask_token}}."))
```"""
    return f"""```python
from transformers import AutoModel

model = AutoModel.from_pretrained("{repo}", trust_remote_code=True)
```"""


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

    def metric_name(m: CardMetric) -> str:
        count = f", {m.num_samples:,} examples" if m.num_samples else ""
        return f"{m.metric_name or m.metric_type} ({m.split_label}{count})"

    eval_results = [
        EvalResult(
            task_type=m.task_type,
            dataset_type=m.dataset_type or m.dataset_name,
            dataset_name=m.dataset_name,
            dataset_split=m.split_label,
            dataset_config=m.dataset_config,
            metric_type=m.metric_type,
            metric_name=metric_name(m),
            metric_value=float(m.value),
        )
        for m in metrics
    ]
    datasets = [d for d in info.datasets if is_hub_id(d)]  # the Hub rejects local paths and "demo"
    base_model = info.base_model if is_hub_id(info.base_model) else None
    data = ModelCardData(
        language=info.language,
        license=info.license,
        library_name="transformers",
        tags=["toolkit", *info.tags],
        datasets=datasets or None,
        pipeline_tag=info.pipeline_tag,
        base_model=base_model,
        model_name=info.title,
        eval_results=eval_results or None,
    )
    results = "\n".join(
        f"| {m.dataset_name} ({m.split_label}) | {m.metric_name or m.metric_type} | {m.num_samples or '-'} | "
        f"{m.value:.4g} |"
        for m in metrics
    )
    settings = "\n".join(
        f"| `{k}` | `{v}` |" for k, v in sorted((run_config or {}).items()) if v not in (None, "", [])
    )
    content = f"""---
{data.to_yaml()}
---

# {info.title}

{info.summary}

## Usage

This checkpoint carries its modelling code, so it loads where the toolkit is not installed with
`trust_remote_code=True` (with the toolkit installed, `import toolkit` registers the classes instead):

{usage_snippet(config, output_dir)}

## Results

| data (split) | metric | examples | value |
|---|---|---|---|
{results or "| - | - | - | - |"}

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
    try:
        repo = api.create_repo(hub_model_id, private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo.repo_id,
            folder_path=output_dir,
            ignore_patterns=UPLOAD_IGNORE,
            commit_message="Upload with toolkit",
        )
    except Exception as err:  # no network, offline mode, no token, no permission: one line, not a traceback
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise UserError(
            f"could not push {output_dir} to the Hub as {hub_model_id} ({type(err).__name__}: {reason}); the run "
            f"is saved locally: retry with `toolkit push {output_dir} --hub_model_id {hub_model_id}`"
        ) from None
    return repo.repo_id


def add_cli(subparsers) -> None:
    parser = subparsers.add_parser(
        "push", help="Upload a finished run folder (weights, code, tokenizer, card) to the Hub."
    )
    parser.add_argument("output_dir")
    parser.add_argument("--hub_model_id", required=True, help="e.g. user/my-model")
    parser.add_argument("--private", action="store_true")
    parser.set_defaults(func=lambda a: print(f"pushed to {push_folder(a.output_dir, a.hub_model_id, a.private)}"))
