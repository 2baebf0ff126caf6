"""Accuracy: the fraction of predictions equal to their reference label.

A self-contained `evaluate` metric module shipped with the toolkit and loaded by file path, so it works offline.
Inputs and output keys match the Hub's `accuracy` metric: `compute(predictions, references, normalize=True,
sample_weight=None) -> {"accuracy": float}`.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Accuracy = (number of correct predictions) / (number of predictions). With `normalize=False` the (weighted) count of
correct predictions is returned instead of the fraction.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted labels.
    references (`list` of `int`): gold labels.
    normalize (`bool`, defaults to `True`): return the fraction (True) or the number (False) of correct predictions.
    sample_weight (`list` of `float`, *optional*): per-example weights.
Returns:
    accuracy (`float` or `int`): in [0, 1] when normalized.
Examples:
    >>> metric = toolkit.evaluation.load_metric("accuracy")
    >>> metric.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'accuracy': 0.75}
"""

_CITATION = ""


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        predictions = np.asarray(predictions)
        references = np.asarray(references)
        weights = np.ones(len(predictions)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        correct = float(np.sum(weights * (predictions == references)))
        if normalize:
            return {"accuracy": correct / float(np.sum(weights)) if len(predictions) else 0.0}
        return {"accuracy": correct if sample_weight is not None else int(correct)}
