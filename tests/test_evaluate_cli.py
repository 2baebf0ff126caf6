"""`toolkit evaluate`: metrics equal a direct computation, outputs are written, errors are one line, and
multi-process inference counts every example exactly once."""

import csv
import json
import random

import pytest
import torch

import toolkit  # noqa: F401  (registers the model families)
from tests.conftest import run_launch
from toolkit.errors import UserError
from toolkit.evaluation import classification_scores
from toolkit.evaluation.evaluate_model import label_ids, main, read_records
from toolkit.models.bilstm import BiLSTMConfig, BiLSTMForSequenceClassification, train_word_tokenizer

WORDS = "the a movie film plot actors story scene music ending".split()


def make_sentences(n, seed):
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = i % 2
        words = rng.sample(WORDS, 4) + [rng.choice(["good", "great"] if label else ["bad", "dull"])]
        rng.shuffle(words)
        rows.append((" ".join(words), label))
    return rows


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny BiLSTM trained for a few steps on a keyword rule, saved with its word tokenizer."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train = make_sentences(64, seed=0)
    tokenizer = train_word_tokenizer([text for text, _ in train], vocab_size=100)
    config = BiLSTMConfig(
        vocab_size=len(tokenizer),
        embedding_size=16,
        hidden_size=16,
        attention_size=8,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    model = BiLSTMForSequenceClassification(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = tokenizer([text for text, _ in train], padding=True, return_tensors="pt")
    labels = torch.tensor([label for _, label in train])
    for _ in range(15):  # partly trained: some test mistakes make the metrics informative
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    path = tmp_path_factory.mktemp("bilstm")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    torch.set_num_threads(threads)
    return path


@pytest.fixture(scope="module")
def test_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "test.tsv"
    rows = make_sentences(7, seed=1)  # odd: the last batch of 2 processes is padded with a duplicate
    rows[0] = ('he said "fine" , "ok"', 1)  # quotes must survive TSV reading
    with open(path, "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n")
        for text, label in rows:
            f.write(f"{text}\t{label}\n")
    return path


def direct_predictions(model_dir, texts):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    return logits.argmax(-1).tolist(), torch.softmax(logits, -1)


def test_read_records_keeps_quotes(test_file):
    records = read_records(str(test_file))
    assert len(records) == 7 and records[0]["sentence"] == 'he said "fine" , "ok"'


def test_label_mapping():
    label2id = {"negative": 0, "positive": 1}
    assert label_ids(["positive", "negative", 1, "0"], label2id, "f") == [1, 0, 1, 0]
    with pytest.raises(UserError, match="not trained on: 2, neutral"):
        label_ids(["neutral", 2, 1], label2id, "f")
    assert label_ids([1, "1", 1.0, 0], {"0": 0, "1": 1}, "f") == [1, 1, 1, 0]


def test_evaluate_classification(model_dir, test_file, tmp_path):
    out = tmp_path / "eval"
    metrics = main(
        ["--model", str(model_dir), "--task", "classification", "--test_file", str(test_file)]
        + ["--text_column", "sentence", "--output_dir", str(out), "--per_device_eval_batch_size", "2"]
    )
    records = read_records(str(test_file))
    texts, gold = [r["sentence"] for r in records], [int(r["label"]) for r in records]
    predictions, probabilities = direct_predictions(model_dir, texts)
    expected = classification_scores(predictions, gold)
    assert metrics["num_examples"] == 7
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value)
    nll = torch.nn.functional.cross_entropy(torch.log(probabilities), torch.tensor(gold)).item()
    assert metrics["loss"] == pytest.approx(nll, rel=1e-4)

    saved = json.loads((out / "test_results.json").read_text())
    assert saved["accuracy"] == pytest.approx(expected["accuracy"])
    with open(out / "test_predictions.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert [r["text"] for r in rows] == texts
    assert [r["predicted"] for r in rows] == [["negative", "positive"][p] for p in predictions]
    assert [r["gold"] for r in rows] == [["negative", "positive"][g] for g in gold]
    assert float(rows[0]["probability"]) == pytest.approx(probabilities[0].max().item(), abs=1e-4)
    assert (out / "test_confusion_matrix.png").stat().st_size > 1000


def test_missing_column_and_unseen_label_are_one_line_errors(model_dir, test_file, tmp_path, capsys):
    base = ["--model", str(model_dir), "--task", "classification", "--output_dir", str(tmp_path)]
    with pytest.raises(SystemExit) as info:
        main(base + ["--test_file", str(test_file), "--text_column", "sentence", "--label_column", "gold"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: column 'gold' not found in {test_file}; columns are: sentence, label"

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "good film", "label": "neutral"}\n{"text": "bad", "label": 1}\n')
    with pytest.raises(SystemExit):
        main(base + ["--test_file", str(bad)])
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "neutral" in err and "\n" not in err


@pytest.mark.distributed
def test_two_processes_count_every_example_once(model_dir, test_file, tmp_path):
    out = tmp_path / "eval2"
    args = ["-m", "toolkit.evaluation.evaluate_model", "--model", str(model_dir), "--task", "classification"]
    args += ["--test_file", str(test_file), "--text_column", "sentence", "--output_dir", str(out)]
    proc = run_launch(args + ["--per_device_eval_batch_size", "2"], nproc=2, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    metrics = json.loads((out / "test_results.json").read_text())
    single = main(
        ["--model", str(model_dir), "--task", "classification", "--test_file", str(test_file)]
        + ["--text_column", "sentence", "--output_dir", str(tmp_path / "eval1")]
    )
    assert metrics["num_examples"] == 7 and metrics["num_processes"] == 2 and single["num_processes"] == 1
    for key in ("accuracy", "macro_f1", "matthews_correlation", "loss"):
        assert metrics[key] == pytest.approx(single[key], abs=1e-5)
    with open(out / "test_predictions.tsv", encoding="utf-8") as f:
        assert len(f.read().strip().splitlines()) == 1 + 7


def test_evaluate_translation_matches_direct_generation(tmp_path):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from toolkit.evaluation import translation_scores
    from toolkit.models.transformer import TransformerSeq2SeqConfig, TransformerSeq2SeqForConditionalGeneration

    torch.manual_seed(0)
    sources = [" ".join(random.Random(i).sample(WORDS, 5)) for i in range(5)]
    references = [" ".join(reversed(s.split())) for s in sources]
    tokenizer = train_word_tokenizer(sources, vocab_size=50)
    config = TransformerSeq2SeqConfig(
        vocab_size=len(tokenizer),
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=1,
    )
    model_dir = tmp_path / "mt"
    TransformerSeq2SeqForConditionalGeneration(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    (tmp_path / "test.src").write_text("\n".join(sources) + "\n")
    (tmp_path / "test.ref").write_text("\n".join(references) + "\n")

    metrics = main(
        ["--model", str(model_dir), "--task", "translation", "--test_file", str(tmp_path / "test.src")]
        + ["--reference_file", str(tmp_path / "test.ref"), "--output_dir", str(tmp_path / "out")]
        + ["--num_beams", "2", "--max_new_tokens", "8", "--per_device_eval_batch_size", "2"]
    )
    model = AutoModelForSeq2SeqLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    with torch.no_grad():
        generated = model.generate(**tok(sources, padding=True, return_tensors="pt"), num_beams=2, max_new_tokens=8)
    hypotheses = [t.strip() for t in tok.batch_decode(generated, skip_special_tokens=True)]
    expected = translation_scores(hypotheses, references)
    assert metrics["bleu"] == pytest.approx(expected["bleu"]) and metrics["chrf"] == pytest.approx(expected["chrf"])
    lines = (tmp_path / "out" / "test_generations.jsonl").read_text().splitlines()
    assert [json.loads(line)["prediction"] for line in lines] == hypotheses
    assert [json.loads(line)["reference"] for line in lines] == references
