"""Inference and its outputs, shared by the fine-tuning recipes (evaluation during training, final predictions)
and the `toolkit evaluate` command (`toolkit.evaluation.evaluate_model`).

- `label_key` / `label_ids`: label values as the canonical strings and ids of a model's `label2id`.
- `classification_collator` + `predict_classification` (`predict_in_order`: in dataset order): a classifier over a
  prepared loader, every example once.
- `generate_texts`: a seq2seq model's outputs for a list of sources, data-parallel, in source order.
- `write_classification_outputs`: `<prefix>_predictions.tsv`, confusion matrix and results of a split.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import torch

from toolkit.data.batching import ListDataset
from toolkit.errors import UserError


def label_key(value) -> str:
    """Canonical string form of a label value (1, "1" and 1.0 all become "1")."""
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def label_ids(values: Sequence, label2id: dict[str, int], source: str) -> list[int]:
    """Map label values (ints or strings) to the model's ids; a label the model never saw is a one-line error."""
    ids, unknown = [], []
    # A model whose labels have names ("negative", "positive") also accepts the ids themselves ("0", "1").
    by_id = {} if any(k.lstrip("-").isdigit() for k in label2id) else {str(i): i for i in label2id.values()}
    for value in values:
        key = label_key(value)
        if key in label2id:
            ids.append(int(label2id[key]))
        elif key in by_id:
            ids.append(by_id[key])
        else:
            unknown.append(key)
    if unknown:
        unseen = sorted(set(unknown))
        raise UserError(
            f"{source} has label(s) the model was not trained on: {', '.join(unseen[:10])}"
            f"{' ...' if len(unseen) > 10 else ''} (known labels: {', '.join(sorted(label2id))})"
        )
    return ids


# --- inference -------------------------------------------------------------------------------------------------------


def classification_collator(tokenizer, max_length: int | None = None, pair_separator: str | None = None):
    """Collate `{"text", "text_pair"?, "label"?}` items: tokenize the batch with padding, keep labels as a tensor.

    `pair_separator` (e.g. "[SEP]") joins pairs into one sequence "a [SEP] b" for models without a pair template.
    """

    def collate(items):
        texts = [item["text"] for item in items]
        pairs = [item.get("text_pair") for item in items]
        kwargs = dict(padding=True, truncation=max_length is not None, max_length=max_length, return_tensors="pt")
        if any(pair is not None for pair in pairs):
            if pair_separator is not None:
                texts = [f"{a} {pair_separator} {b}" for a, b in zip(texts, pairs)]
                batch = tokenizer(texts, **kwargs)
            else:
                batch = tokenizer(texts, [pair or "" for pair in pairs], **kwargs)
        else:
            batch = tokenizer(texts, **kwargs)
        batch = {k: v for k, v in batch.items() if k in _model_input_names(tokenizer)}
        if "label" in items[0]:
            batch["labels"] = torch.tensor([item["label"] for item in items], dtype=torch.long)
        batch["index"] = torch.tensor([item["index"] for item in items], dtype=torch.long)
        return batch

    return collate


def _model_input_names(tokenizer) -> set[str]:
    return set(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"])) | {"token_type_ids"}


@torch.no_grad()
def predict_classification(model, dataloader, accelerator) -> dict[str, torch.Tensor]:
    """Run a prepared classifier over a prepared dataloader; gather every example exactly once on every process.

    Returns CPU tensors: `index` (position in the dataset), `predictions`, `probabilities` (B, num_labels),
    and, when the batches have labels, `labels` and the mean cross-entropy `loss` (a float).
    """
    model.eval()
    indices, predictions, probabilities, labels, losses = [], [], [], [], []
    for batch in dataloader:
        index = batch.pop("index")
        batch_labels = batch.pop("labels", None)
        logits = model(**batch).logits.float()  # (B, num_labels)
        probs = torch.softmax(logits, dim=-1)
        gathered = accelerator.gather_for_metrics((index, probs.argmax(-1), probs))
        indices.append(gathered[0].cpu())
        predictions.append(gathered[1].cpu())
        probabilities.append(gathered[2].cpu())
        if batch_labels is not None:
            # per-example cross-entropy, so that duplicated padding examples are dropped like the predictions
            nll = torch.nn.functional.cross_entropy(logits, batch_labels, reduction="none")  # (B,)
            gathered_labels, gathered_nll = accelerator.gather_for_metrics((batch_labels, nll))
            labels.append(gathered_labels.cpu())
            losses.append(gathered_nll.cpu())
    result = {
        "index": torch.cat(indices),
        "predictions": torch.cat(predictions),
        "probabilities": torch.cat(probabilities),
    }
    if labels:
        result["labels"] = torch.cat(labels)
        result["loss"] = float(torch.cat(losses).mean())
    return result


def predict_in_order(model, dataloader, accelerator, num_examples: int) -> dict[str, torch.Tensor]:
    """`predict_classification` with every output in dataset order, checked to hold each of the `num_examples`
    examples exactly once."""
    result = predict_classification(model, dataloader, accelerator)
    order = torch.argsort(result["index"])
    result = {k: v[order] if isinstance(v, torch.Tensor) else v for k, v in result.items()}
    if result["index"].tolist() != list(range(num_examples)):
        raise RuntimeError("inference did not score every example exactly once")
    return result


@torch.no_grad()
def generate_texts(
    model,
    tokenizer,
    sources: Sequence[str],
    accelerator,
    batch_size: int = 32,
    max_source_length: int | None = None,
    target_tokenizer=None,
    **generate_kwargs,
) -> list[str]:
    """Generate one output per source with a (prepared) seq2seq model, data-parallel; returns the texts in source
    order. Batches hold sources of similar length (little padding); `tokenizer` encodes the sources and
    `target_tokenizer` (default: the same) decodes the outputs. The model's train/eval mode is restored."""
    target_tokenizer = target_tokenizer or tokenizer
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))
    items = [{"text": sources[i], "index": i} for i in order]

    def collate(batch_items):
        batch = tokenizer(
            [item["text"] for item in batch_items],
            padding=True,
            truncation=max_source_length is not None,
            max_length=max_source_length,
            return_tensors="pt",
        )
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "index": torch.tensor([item["index"] for item in batch_items]),
        }

    dataloader = torch.utils.data.DataLoader(ListDataset(items), batch_size=batch_size, collate_fn=collate)
    dataloader = accelerator.prepare(dataloader)
    unwrapped = accelerator.unwrap_model(model)
    was_training = unwrapped.training
    unwrapped.eval()
    pad_id = target_tokenizer.pad_token_id if target_tokenizer.pad_token_id is not None else 0
    outputs: dict[int, str] = {}
    for batch in dataloader:
        index = batch.pop("index")
        generated = unwrapped.generate(**batch, **generate_kwargs)  # (B, T_out)
        generated = accelerator.pad_across_processes(generated, dim=1, pad_index=pad_id)
        index, generated = accelerator.gather_for_metrics((index, generated))
        texts = target_tokenizer.batch_decode(generated, skip_special_tokens=True)
        for i, text in zip(index.tolist(), texts):
            outputs[i] = text.strip()
    unwrapped.train(was_training)
    return [outputs[i] for i in range(len(sources))]


# --- outputs ---------------------------------------------------------------------------------------------------------


def write_classification_outputs(
    output_dir: str,
    prefix: str,
    texts: Sequence[str],
    gold: Sequence[int] | None,
    predictions: Sequence[int],
    probabilities: torch.Tensor,
    id2label: dict[int, str],
    metrics: dict | None = None,
) -> dict[str, str]:
    """Write `<prefix>_predictions.tsv`, `<prefix>_confusion_matrix.png` (with gold labels) and
    `<prefix>_results.json` (when metrics are given). Returns the written paths by kind."""
    from .plots import plot_confusion_matrix

    os.makedirs(output_dir, exist_ok=True)
    paths = {"predictions": os.path.join(output_dir, f"{prefix}_predictions.tsv")}
    with open(paths["predictions"], "w", encoding="utf-8") as f:
        # plain TSV without quoting (read it back with csv.QUOTE_NONE); tabs/newlines inside a text become spaces
        f.write("text\tgold\tpredicted\tprobability\n")
        for row, (text, pred) in enumerate(zip(texts, predictions)):
            gold_name = id2label[int(gold[row])] if gold is not None else ""
            text = " ".join(str(text).replace("\t", " ").splitlines())
            f.write(f"{text}\t{gold_name}\t{id2label[int(pred)]}\t{float(probabilities[row, int(pred)]):.4f}\n")
    if gold is not None:
        paths["confusion_matrix"] = os.path.join(output_dir, f"{prefix}_confusion_matrix.png")
        names = [id2label[i] for i in range(len(id2label))]
        plot_confusion_matrix(predictions, gold, names, paths["confusion_matrix"], title=None)
    if metrics is not None:
        paths["results"] = os.path.join(output_dir, f"{prefix}_results.json")
        with open(paths["results"], "w", encoding="utf-8") as f:
            json.dump(metrics, f, indent=2)
            f.write("\n")
    return paths
