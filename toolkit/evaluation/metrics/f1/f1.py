"""F1 score (harmonic mean of precision and recall), binary or averaged over classes.

A self-contained `evaluate` metric module shipped with the toolkit and loaded by file path, so it works offline.
Inputs and defaults match the Hub's `f1` metric (`average="binary"`, `pos_label=1`); the toolkit reports macro-F1
with `average="macro"`. Plain numpy, no scikit-learn needed. Classes with no predicted and no gold example get
F1 = 0 (like scikit-learn's `zero_division=0`) only when named in `labels`; otherwise the class set is the union of
labels seen in predictions and references.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
F1 = 2 * precision * recall / (precision + recall), per class. `average` combines the per-class values:
"binary" (only `pos_label`), "micro" (from the pooled counts), "macro" (unweighted mean), "weighted" (mean weighted
by support) or None (the per-class array).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted labels.
    references (`list` of `int`): gold labels.
    labels (`list` of `int`, *optional*): the classes to score (and their order for `average=None`).
    pos_label (`int`, defaults to 1): the positive class when `average="binary"`.
    average (`str` or `None`, defaults to `"binary"`): "binary", "micro", "macro", "weighted" or None.
    sample_weight (`list` of `float`, *optional*): per-example weights.
Returns:
    f1 (`float`, or `list` of `float` when `average=None`).
Examples:
    >>> metric = toolkit.evaluation.load_metric("f1")
    >>> metric.compute(predictions=[0, 1, 2, 0], references=[0, 1, 1, 2], average="macro")
    {'f1': 0.4444444444444444}
"""

_CITATION = ""


def _per_class_counts(predictions, references, labels, weights):
    tp = np.array([np.sum(weights * ((predictions == c) & (references == c))) for c in labels], dtype=np.float64)
    pred_count = np.array([np.sum(weights * (predictions == c)) for c in labels], dtype=np.float64)
    true_count = np.array([np.sum(weights * (references == c)) for c in labels], dtype=np.float64)
    return tp, pred_count, true_count


def _f1(tp, pred_count, true_count):
    # F1 = 2 tp / (2 tp + fp + fn) = 2 tp / (pred_count + true_count); 0 where the class never occurs.
    denominator = pred_count + true_count
    return np.divide(2.0 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)


class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references, labels=None, pos_label=1, average="binary", sample_weight=None):
        predictions = np.asarray(predictions)
        references = np.asarray(references)
        weights = np.ones(len(predictions)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        present = np.union1d(predictions, references)
        if average == "binary":
            if len(present) > 2:
                raise ValueError(
                    f"average='binary' needs at most 2 classes but got {len(present)}; "
                    "choose average='macro', 'micro' or 'weighted'."
                )
            labels = [pos_label]
        elif labels is None:
            labels = present.tolist()
        tp, pred_count, true_count = _per_class_counts(predictions, references, labels, weights)
        if average == "micro":
            score = _f1(tp.sum(keepdims=True), pred_count.sum(keepdims=True), true_count.sum(keepdims=True))[0]
        elif average in ("binary", "macro"):
            score = _f1(tp, pred_count, true_count).mean() if len(labels) else 0.0
        elif average == "weighted":
            support = true_count.sum()
            score = float(np.sum(_f1(tp, pred_count, true_count) * true_count) / support) if support > 0 else 0.0
        elif average is None:
            return {"f1": _f1(tp, pred_count, true_count).tolist()}
        else:
            raise ValueError(f"Unknown average={average!r}; use 'binary', 'micro', 'macro', 'weighted' or None.")
        return {"f1": float(score)}
