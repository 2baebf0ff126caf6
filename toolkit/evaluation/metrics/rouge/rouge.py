"""ROUGE-1/2/L/Lsum (Lin, 2004, "ROUGE: A Package for Automatic Evaluation of Summaries") via Google's
`rouge_score` package.

A self-contained `evaluate` metric module shipped with the toolkit and loaded by file path, so it works offline.
Inputs, keyword arguments and output keys match the Hub's `rouge` metric. Aggregation is the plain mean of the
per-example F-measures (deterministic; the Hub module's bootstrap "mid" value is a resampled estimate of the same
mean). `rougeLsum` treats "\\n" as the sentence separator: put each sentence of a summary on its own line.
"""

import datasets
import evaluate
import numpy as np
from rouge_score import rouge_scorer

_DESCRIPTION = """
ROUGE-N counts overlapping n-grams between prediction and reference; ROUGE-L uses their longest common subsequence;
ROUGE-Lsum is the summary-level LCS over newline-separated sentences. Each value is an F-measure in [0, 1].
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): system summaries.
    references (`list` of `str`, or `list` of `list` of `str`): reference summaries; with several references per
        example the best-scoring one counts (rouge_score's `score_multi`).
    rouge_types (`list` of `str`, defaults to ["rouge1", "rouge2", "rougeL", "rougeLsum"]).
    use_aggregator (`bool`, defaults to True): return corpus means instead of per-example lists.
    use_stemmer (`bool`, defaults to False): Porter-stem words before matching.
    tokenizer (*optional*): an object with a `tokenize(text) -> list[str]` method (rouge_score's default keeps only
        ASCII letters and digits, so pass one for other scripts).
Returns:
    one entry per rouge type: a `float` (aggregated) or a `list` of `float` (per example).
Examples:
    >>> metric = toolkit.evaluation.load_metric("rouge")
    >>> metric.compute(predictions=["the cat sat"], references=["the cat sat on the mat"])["rouge1"]
    0.6666666666666666
"""

_CITATION = """
@inproceedings{lin-2004-rouge,
  title = "{ROUGE}: A Package for Automatic Evaluation of Summaries", author = "Lin, Chin-Yew",
  booktitle = "Text Summarization Branches Out", year = "2004", pages = "74--81"}
"""


class Rouge(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            homepage="https://github.com/google-research/google-research/tree/master/rouge",
            features=[
                datasets.Features(
                    {
                        "predictions": datasets.Value("string"),
                        "references": datasets.Sequence(datasets.Value("string")),
                    }
                ),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
        )

    def _compute(
        self, predictions, references, rouge_types=None, use_aggregator=True, use_stemmer=False, tokenizer=None
    ):
        if rouge_types is None:
            rouge_types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
        scorer = rouge_scorer.RougeScorer(rouge_types=rouge_types, use_stemmer=use_stemmer, tokenizer=tokenizer)
        multi_ref = bool(references) and not isinstance(references[0], str)
        per_example = {rouge_type: [] for rouge_type in rouge_types}
        for prediction, reference in zip(predictions, references):
            if multi_ref:
                scores = scorer.score_multi(reference, prediction)
            else:
                scores = scorer.score(reference, prediction)
            for rouge_type in rouge_types:
                per_example[rouge_type].append(scores[rouge_type].fmeasure)
        if use_aggregator:
            return {k: float(np.mean(v)) if v else 0.0 for k, v in per_example.items()}
        return per_example
