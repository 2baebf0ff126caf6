"""The metric sets the toolkit reports per task, computed with the offline metric modules.

- classification: accuracy, macro-F1, Matthews correlation.
- translation: sacreBLEU and chrF.
- summarization: ROUGE-1/2/L/Lsum (F-measure, x100 like most papers report it).
"""

from collections.abc import Sequence

from .loading import load_metric

TASK_METRICS = {
    "classification": ("accuracy", "macro_f1", "matthews_correlation"),
    "translation": ("bleu", "chrf"),
    "summarization": ("rouge1", "rouge2", "rougeL", "rougeLsum"),
}


def classification_scores(predictions: Sequence[int], references: Sequence[int]) -> dict[str, float]:
    """Accuracy, macro-F1 and MCC of integer label predictions."""
    predictions, references = [int(p) for p in predictions], [int(r) for r in references]
    return {
        "accuracy": load_metric("accuracy").compute(predictions=predictions, references=references)["accuracy"],
        "macro_f1": load_metric("f1").compute(predictions=predictions, references=references, average="macro")["f1"],
        "matthews_correlation": load_metric("matthews_correlation").compute(
            predictions=predictions, references=references
        )["matthews_correlation"],
    }


def translation_scores(predictions: Sequence[str], references: Sequence[str], **bleu_kwargs) -> dict[str, float]:
    """Corpus sacreBLEU and chrF of detokenized predictions against one reference each."""
    predictions, references = list(predictions), [[r] for r in references]
    bleu = load_metric("sacrebleu").compute(predictions=predictions, references=references, **bleu_kwargs)
    chrf = load_metric("chrf").compute(predictions=predictions, references=references)
    return {"bleu": bleu["score"], "chrf": chrf["score"]}


def summarization_scores(predictions: Sequence[str], references: Sequence[str], use_stemmer: bool = True) -> dict:
    """Mean ROUGE F-measures x100. Sentences are expected on separate lines for rougeLsum."""
    scores = load_metric("rouge").compute(
        predictions=list(predictions), references=list(references), use_stemmer=use_stemmer
    )
    return {name: 100.0 * value for name, value in scores.items()}


def task_scores(task: str, predictions, references) -> dict[str, float]:
    """Dispatch to the metric set of `task` ("classification", "translation" or "summarization")."""
    if task == "classification":
        return classification_scores(predictions, references)
    if task == "translation":
        return translation_scores(predictions, references)
    if task == "summarization":
        return summarization_scores(predictions, references)
    raise ValueError(f"Unknown task {task!r}; expected one of {sorted(TASK_METRICS)}.")
