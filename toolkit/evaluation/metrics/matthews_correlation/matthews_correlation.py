"""Matthews correlation coefficient (MCC), binary and multi-class.

A self-contained `evaluate` metric module shipped with the toolkit and loaded by file path, so it works offline.
Inputs and output key match the Hub's `matthews_correlation` metric. Plain numpy. The multi-class form is the
R_K statistic of Gorodkin (2004), "Comparing two K-category assignments by a K-category correlation coefficient",
computed from the confusion matrix; for two classes it equals Matthews (1975). Returns 0.0 when undefined
(a constant prediction or a constant reference), as scikit-learn does.
"""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
MCC = (c * s - sum_k p_k * t_k) / sqrt((s^2 - sum_k p_k^2) * (s^2 - sum_k t_k^2)) with c the (weighted) number of
correct predictions, s the total, p_k the number of predictions of class k and t_k the number of gold labels k.
Ranges from -1 to +1; 0 is chance level.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted labels.
    references (`list` of `int`): gold labels.
    sample_weight (`list` of `float`, *optional*): per-example weights.
Returns:
    matthews_correlation (`float`): in [-1, 1].
Examples:
    >>> metric = toolkit.evaluation.load_metric("matthews_correlation")
    >>> metric.compute(predictions=[1, 1, 0, 0], references=[1, 0, 0, 0])
    {'matthews_correlation': 0.5773502691896258}
"""

_CITATION = """
@article{matthews1975comparison,
  title={Comparison of the predicted and observed secondary structure of T4 phage lysozyme},
  author={Matthews, Brian W.}, journal={Biochimica et Biophysica Acta}, volume={405}, number={2}, year={1975}}
"""


class MatthewsCorrelation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
        )

    def _compute(self, predictions, references, sample_weight=None):
        predictions = np.asarray(predictions)
        references = np.asarray(references)
        weights = np.ones(len(predictions)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        classes = np.union1d(predictions, references)
        p = np.array([np.sum(weights * (predictions == k)) for k in classes], dtype=np.float64)
        t = np.array([np.sum(weights * (references == k)) for k in classes], dtype=np.float64)
        correct = float(np.sum(weights * (predictions == references)))
        total = float(np.sum(weights))
        covariance = correct * total - float(np.dot(p, t))
        variance = (total**2 - float(np.dot(p, p))) * (total**2 - float(np.dot(t, t)))
        if variance <= 0.0:
            return {"matthews_correlation": 0.0}
        return {"matthews_correlation": covariance / float(np.sqrt(variance))}
