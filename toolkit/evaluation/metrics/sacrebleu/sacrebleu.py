"""Corpus BLEU computed by sacreBLEU (Post, 2018, "A Call for Clarity in Reporting BLEU Scores").

A self-contained `evaluate` metric module shipped with the toolkit and loaded by file path, so it works offline.
Inputs, keyword arguments and output keys match the Hub's `sacrebleu` metric; the score itself is
`sacrebleu.BLEU(...).corpus_score(...)`, so it is identical to running the sacrebleu command line on the same text.
"""

import datasets
import evaluate
import sacrebleu as scb

_DESCRIPTION = """
Corpus-level BLEU (Papineni et al., 2002) on detokenized text with sacreBLEU's standard tokenization (13a by
default), so that scores are comparable across papers. Each prediction may have several references; every
prediction must have the same number of references.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): system outputs, one per segment.
    references (`list` of `list` of `str`, or `list` of `str`): one or more references per segment.
    smooth_method (`str`, defaults to "exp"): "none", "floor", "add-k" or "exp".
    smooth_value (`float`, *optional*): the value for "floor" / "add-k" smoothing.
    force (`bool`, defaults to False): allow tokenized input without a warning.
    lowercase (`bool`, defaults to False): case-insensitive BLEU.
    tokenize (`str`, *optional*): sacreBLEU tokenizer ("13a" by default; "intl", "zh", "char", "none", ...).
    use_effective_order (`bool`, defaults to False): ignore n-gram orders with no match (sentence-level BLEU).
Returns:
    score (`float`, 0-100), counts, totals, precisions (`list`), bp (`float`), sys_len, ref_len (`int`).
Examples:
    >>> metric = toolkit.evaluation.load_metric("sacrebleu")
    >>> metric.compute(predictions=["hello there general kenobi"], references=[["hello there general kenobi"]])["score"]
    100.00000000000004
"""

_CITATION = """
@inproceedings{post-2018-call,
  title = "A Call for Clarity in Reporting {BLEU} Scores", author = "Post, Matt",
  booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers", year = "2018",
  url = "https://www.aclweb.org/anthology/W18-6319", pages = "186--191"}
"""


class Sacrebleu(evaluate.Metric):
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
        smooth_method="exp",
        smooth_value=None,
        force=False,
        lowercase=False,
        tokenize=None,
        use_effective_order=False,
    ):
        if references and isinstance(references[0], str):
            references = [[ref] for ref in references]
        num_refs = len(references[0]) if references else 1
        if any(len(refs) != num_refs for refs in references):
            raise ValueError("sacrebleu needs the same number of references for every prediction.")
        # sacrebleu wants one stream per reference position: (num_refs, num_segments).
        streams = [[refs[i] for refs in references] for i in range(num_refs)]
        bleu = scb.BLEU(
            lowercase=lowercase,
            force=force,
            tokenize=tokenize,
            smooth_method=smooth_method,
            smooth_value=smooth_value,
            effective_order=use_effective_order,
        )
        result = bleu.corpus_score(predictions, streams)
        return {
            "score": result.score,
            "counts": result.counts,
            "totals": result.totals,
            "precisions": result.precisions,
            "bp": result.bp,
            "sys_len": result.sys_len,
            "ref_len": result.ref_len,
        }
