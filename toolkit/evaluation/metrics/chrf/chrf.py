"""chrF and chrF++ computed by sacreBLEU (Popovic, 2015 "chrF: character n-gram F-score for automatic MT
evaluation"; Popovic, 2017 "chrF++: words helping character n-grams").

A self-contained `evaluate` metric module shipped with the toolkit and loaded by file path, so it works offline.
Inputs, keyword arguments and output keys match the Hub's `chrf` metric; `word_order=2` gives chrF++.
"""

import datasets
import evaluate
import sacrebleu as scb

_DESCRIPTION = """
Corpus-level character n-gram F-beta score (beta=2 weighs recall twice as much as precision), from sacreBLEU.
Every prediction must have the same number of references.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): system outputs, one per segment.
    references (`list` of `list` of `str`, or `list` of `str`): one or more references per segment.
    char_order (`int`, defaults to 6): maximum character n-gram order.
    word_order (`int`, defaults to 0): maximum word n-gram order (2 gives chrF++).
    beta (`int`, defaults to 2): recall weight.
    lowercase (`bool`, defaults to False): case-insensitive chrF.
    whitespace (`bool`, defaults to False): keep whitespace in character n-grams.
    eps_smoothing (`bool`, defaults to False): sacreBLEU's epsilon smoothing instead of chrF++.py's effective order.
Returns:
    score (`float`, 0-100), char_order, word_order, beta.
Examples:
    >>> metric = toolkit.evaluation.load_metric("chrf")
    >>> metric.compute(predictions=["the cat sat"], references=[["the cat sat"]])["score"]
    100.0
"""

_CITATION = """
@inproceedings{popovic-2015-chrf,
  title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation", author = "Popovi{\\'c}, Maja",
  booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation", year = "2015",
  pages = "392--395"}
"""


class ChrF(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            homepage="https://github.com/mjpost/sacreBLEU",
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
        self,
        predictions,
        references,
        char_order=6,
        word_order=0,
        beta=2,
        lowercase=False,
        whitespace=False,
        eps_smoothing=False,
    ):
        if references and isinstance(references[0], str):
            references = [[ref] for ref in references]
        num_refs = len(references[0]) if references else 1
        if any(len(refs) != num_refs for refs in references):
            raise ValueError("chrf needs the same number of references for every prediction.")
        streams = [[refs[i] for refs in references] for i in range(num_refs)]  # (num_refs, num_segments)
        chrf = scb.CHRF(
            char_order=char_order,
            word_order=word_order,
            beta=beta,
            lowercase=lowercase,
            whitespace=whitespace,
            eps_smoothing=eps_smoothing,
        )
        result = chrf.corpus_score(predictions, streams)
        return {"score": result.score, "char_order": char_order, "word_order": word_order, "beta": beta}
