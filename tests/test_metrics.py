"""Offline metric modules: they load with no network and give the reference libraries' values."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from toolkit.evaluation import (
    LOCAL_METRICS,
    classification_scores,
    confusion_matrix,
    load_metric,
    plot_confusion_matrix,
    summarization_scores,
    translation_scores,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

HYPOTHESES = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
REFERENCES_A = ["The dog bit the man.", "It was not unexpected.", "The man bit him first."]
REFERENCES_B = ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]

OFFLINE_SCRIPT = r"""
import json, socket, sys

def _no_network(*args, **kwargs):
    raise OSError("network access attempted during offline metric loading")

socket.socket.connect = _no_network
socket.create_connection = _no_network

from toolkit.evaluation import load_metric

hyps, refs_a, refs_b = json.loads(sys.argv[1])
refs = [[a, b] for a, b in zip(refs_a, refs_b)]
out = {
    "accuracy": load_metric("accuracy").compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0]),
    "f1": load_metric("f1").compute(predictions=[0, 1, 2, 0], references=[0, 1, 1, 2], average="macro"),
    "matthews_correlation": load_metric("matthews_correlation").compute(
        predictions=[1, 1, 0, 0], references=[1, 0, 0, 0]
    ),
    "sacrebleu": load_metric("sacrebleu").compute(predictions=hyps, references=refs),
    "chrf": load_metric("chrf").compute(predictions=hyps, references=refs),
    "rouge": load_metric("rouge").compute(predictions=["the cat sat"], references=["the cat sat on the mat"]),
}
print("RESULT" + json.dumps(out))
"""


@pytest.fixture(scope="module")
def offline_results(tmp_path_factory):
    """Load and run every shipped metric in a fresh process with no network, no Hub and an empty HF cache."""
    home = tmp_path_factory.mktemp("hf_home")
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
        HF_HOME=str(home),
        PYTHONPATH=os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]),
    )
    proc = subprocess.run(
        [sys.executable, "-c", OFFLINE_SCRIPT, json.dumps([HYPOTHESES, REFERENCES_A, REFERENCES_B])],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [line for line in proc.stdout.splitlines() if line.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT") :])


def test_every_metric_is_shipped():
    assert set(LOCAL_METRICS) == {"accuracy", "f1", "matthews_correlation", "sacrebleu", "chrf", "rouge"}
    for name, path in LOCAL_METRICS.items():
        assert path.is_file(), path
        assert path.name == f"{name}.py"


def test_offline_loading_gives_known_values(offline_results):
    import sacrebleu

    assert offline_results["accuracy"] == {"accuracy": 0.75}
    # per-class F1: 2/3, 2/3, 0 -> macro 4/9
    assert offline_results["f1"]["f1"] == pytest.approx(4 / 9)
    # binary MCC with tp=1, fp=1, tn=2, fn=0: (1*2 - 1*0) / sqrt(2 * 1 * 3 * 2) = 1/sqrt(3)
    assert offline_results["matthews_correlation"]["matthews_correlation"] == pytest.approx(1 / np.sqrt(3))

    expected_bleu = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES_A, REFERENCES_B])
    bleu = offline_results["sacrebleu"]
    assert bleu["score"] == pytest.approx(expected_bleu.score)
    assert bleu["counts"] == expected_bleu.counts and bleu["totals"] == expected_bleu.totals
    assert bleu["bp"] == pytest.approx(expected_bleu.bp)
    assert 0.0 < bleu["score"] < 100.0

    expected_chrf = sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES_A, REFERENCES_B])
    assert offline_results["chrf"]["score"] == pytest.approx(expected_chrf.score)

    # "the cat sat" vs "the cat sat on the mat": unigrams P=1, R=1/2; bigrams P=1, R=2/5; LCS = 3 words.
    rouge = offline_results["rouge"]
    assert rouge["rouge1"] == pytest.approx(2 / 3)
    assert rouge["rouge2"] == pytest.approx(2 * 0.4 / 1.4)
    assert rouge["rougeL"] == pytest.approx(2 / 3)
    assert rouge["rougeLsum"] == pytest.approx(2 / 3)


def test_bleu_hand_example():
    # 4-gram precisions 4/4, 3/3, 2/2, 1/1 and equal lengths: BLEU 100; one wrong word of 4 changes everything.
    metric = load_metric("sacrebleu")
    assert metric.compute(predictions=["a b c d"], references=[["a b c d"]])["score"] == pytest.approx(100.0)
    result = metric.compute(predictions=["a b c x"], references=["a b c d"], smooth_method="none")
    assert result["precisions"] == pytest.approx([75.0, 200 / 3, 50.0, 0.0])
    assert result["score"] == 0.0


@pytest.mark.parametrize("average", ["macro", "micro", "weighted"])
def test_f1_matches_sklearn(average):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    refs = rng.integers(0, 4, size=200)
    preds = np.where(rng.random(200) < 0.6, refs, rng.integers(0, 4, size=200))
    ours = load_metric("f1").compute(predictions=preds, references=refs, average=average)["f1"]
    assert ours == pytest.approx(sklearn_metrics.f1_score(refs, preds, average=average))


def test_binary_f1_and_mcc_match_sklearn():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    refs = rng.integers(0, 2, size=101)
    preds = np.where(rng.random(101) < 0.7, refs, 1 - refs)
    f1 = load_metric("f1").compute(predictions=preds, references=refs)["f1"]
    assert f1 == pytest.approx(sklearn_metrics.f1_score(refs, preds))
    mcc = load_metric("matthews_correlation")
    assert mcc.compute(predictions=preds, references=refs)["matthews_correlation"] == pytest.approx(
        sklearn_metrics.matthews_corrcoef(refs, preds)
    )
    refs3 = rng.integers(0, 3, size=150)
    preds3 = np.where(rng.random(150) < 0.5, refs3, rng.integers(0, 3, size=150))
    assert mcc.compute(predictions=preds3, references=refs3)["matthews_correlation"] == pytest.approx(
        sklearn_metrics.matthews_corrcoef(refs3, preds3)
    )
    # undefined (constant prediction) -> 0, like sklearn
    assert mcc.compute(predictions=[1, 1, 1], references=[0, 1, 1])["matthews_correlation"] == 0.0


def test_binary_f1_refuses_three_classes():
    with pytest.raises(ValueError, match="average='binary'"):
        load_metric("f1").compute(predictions=[0, 1, 2], references=[0, 1, 2])


def test_rouge_matches_rouge_score_per_example():
    from rouge_score import rouge_scorer

    preds = ["a cat was found under the bed", "the quick brown fox\njumps over"]
    refs = ["the cat was under the bed", "a quick brown fox\njumped over the dog"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    expected = [scorer.score(r, p) for p, r in zip(preds, refs)]
    ours = load_metric("rouge").compute(predictions=preds, references=refs, use_stemmer=True, use_aggregator=False)
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum"):
        assert ours[key] == pytest.approx([e[key].fmeasure for e in expected])
    # rougeLsum splits on newlines, rougeL does not: they differ on the two-line example
    assert ours["rougeLsum"][1] != pytest.approx(ours["rougeL"][1])


def test_task_scores():
    scores = classification_scores([0, 1, 1, 0], [0, 1, 0, 0])
    assert scores["accuracy"] == 0.75
    assert scores["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)
    assert scores["matthews_correlation"] == pytest.approx(1 / np.sqrt(3))
    assert translation_scores(["a b c d"], ["a b c d"])["bleu"] == pytest.approx(100.0)
    assert summarization_scores(["the cat sat"], ["the cat sat on the mat"])["rouge1"] == pytest.approx(200 / 3)


def test_unknown_metric_gives_one_line_error(monkeypatch):
    import evaluate

    def fail(*args, **kwargs):
        raise FileNotFoundError("Couldn't find a module script at bertscore.py.\nsecond line")

    monkeypatch.setattr(evaluate, "load", fail)
    with pytest.raises(RuntimeError) as info:
        load_metric("bertscore")
    message = str(info.value)
    assert "\n" not in message and "bertscore" in message and "not shipped" in message


def test_confusion_matrix_plot(tmp_path):
    preds, refs = [0, 1, 1, 2, 2, 2], [0, 1, 2, 2, 2, 1]
    expected = np.array([[1, 0, 0], [0, 1, 1], [0, 1, 2]])
    np.testing.assert_array_equal(confusion_matrix(preds, refs, 3), expected)
    path = tmp_path / "plots" / "confusion.png"
    counts = plot_confusion_matrix(preds, refs, ["negative", "neutral", "positive"], path)
    np.testing.assert_array_equal(counts, expected)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 5000
