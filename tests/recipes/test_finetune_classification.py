"""recipes/finetune_classification.py end to end on tiny synthetic data: every backbone learns, string labels and
sentence pairs work, outputs are complete and consistent, early stopping and exact resume work, and user mistakes
are one-line errors."""

import csv
import json
import os
import random

import pytest
import torch

from tests.conftest import REPO, load_recipe, run_launch

WORDS = "the a movie film plot actors story scene music ending really quite".split()
CUES = {
    "neg": ["bad", "dull", "awful"],
    "neu": ["okay", "fine", "average"],
    "pos": ["good", "great", "superb"],
    "angry": ["furious"],  # only in a bad validation file
}


def _recipe():
    return load_recipe("finetune_classification")


def _write(path, n, seed, labels=("neg", "neu", "pos"), pairs=False):
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        f.write("sentence\tother\tlabel\n" if pairs else "sentence\tlabel\n")
        for i in range(n):
            label = labels[i % len(labels)]
            words = rng.sample(WORDS, 5) + [rng.choice(CUES[label])]
            rng.shuffle(words)
            if pairs:  # the cue sits in the second sentence
                f.write(f"{' '.join(rng.sample(WORDS, 4))}\t{' '.join(words)}\t{label}\n")
            else:
                f.write(f"{' '.join(words)}\t{label}\n")
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cls_data")
    return {
        "train": _write(root / "train.tsv", 120, 0),
        "validation": _write(root / "dev.tsv", 30, 1),
        "test": _write(root / "test.tsv", 15, 2),
        "pair_train": _write(root / "pair_train.tsv", 120, 3, pairs=True),
        "pair_dev": _write(root / "pair_dev.tsv", 30, 4, pairs=True),
        "root": root,
    }


pytestmark = pytest.mark.usefixtures("one_thread")  # in-process recipe runs: one thread, as under accelerate


def _args(data, output_dir, *extra):
    return [
        "--train_file", data["train"],
        "--validation_file", data["validation"],
        "--test_file", data["test"],
        "--text_column", "sentence",
        "--output_dir", str(output_dir),
        "--scratch_embedding_size", "16",
        "--scratch_hidden_size", "16",
        "--per_device_train_batch_size", "8",
        "--per_device_eval_batch_size", "16",
        "--learning_rate", "1e-2",
        "--num_train_epochs", "10",
        "--logging_steps", "5",
        "--eval_steps", "20",
        "--save_steps", "0",
        "--seed", "1",
        *extra,
    ]  # fmt: skip


def _run(recipe, argv):
    return recipe.main(*recipe.parse_args(argv))


@pytest.fixture(scope="module")
def scratch_run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("scratch_run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    results = _run(_recipe(), _args(data, out))
    torch.set_num_threads(threads)
    return out, results


def test_scratch_learns_and_writes_everything(scratch_run):
    out, results = scratch_run
    assert results["backbone"] == "scratch"
    assert results["validation_accuracy"] >= 0.9 and results["test_accuracy"] >= 0.8
    history = json.loads((out / "log_history.json").read_text())
    losses = [h["loss"] for h in history if "loss" in h]
    assert losses[-1] < 0.5 * losses[0]

    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "toolkit_bilstm"
    assert config["id2label"] == {"0": "neg", "1": "neu", "2": "pos"}
    assert config["label2id"] == {"neg": 0, "neu": 1, "pos": 2}
    saved = json.loads((out / "all_results.json").read_text())
    assert saved["validation_accuracy"] == pytest.approx(results["validation_accuracy"])
    for split in ("validation", "test"):
        assert (out / f"{split}_confusion_matrix.png").stat().st_size > 1000
        assert json.loads((out / f"{split}_results.json").read_text())["accuracy"] == pytest.approx(
            results[f"{split}_accuracy"]
        )
    card = (out / "README.md").read_text()
    assert "model-index" in card and "text-classification" in card and "accuracy" in card


def test_saved_model_reproduces_the_predictions_file(scratch_run, data):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, results = scratch_run
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    with open(out / "test_predictions.tsv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    with open(data["test"], encoding="utf-8") as f:
        gold = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert [r["text"] for r in rows] == [g["sentence"] for g in gold]
    assert [r["gold"] for r in rows] == [g["label"] for g in gold]
    with torch.no_grad():
        logits = model(**tokenizer([g["sentence"] for g in gold], padding=True, return_tensors="pt")).logits
    probs = torch.softmax(logits, -1)
    assert [r["predicted"] for r in rows] == [model.config.id2label[i] for i in logits.argmax(-1).tolist()]
    assert [float(r["probability"]) for r in rows] == pytest.approx(probs.max(-1).values.tolist(), abs=1e-4)
    accuracy = sum(r["gold"] == r["predicted"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(results["test_accuracy"])


def test_backbone_defaults_are_chosen_printed_and_recorded(data, tmp_path, capsys):
    """Flags only: the scratch BiLSTM gets its own learning rate, batch size, epochs and schedule, not BERT's."""
    out = tmp_path / "run"
    flags = [
        "--train_file", data["train"], "--validation_file", data["validation"], "--text_column", "sentence",
        "--output_dir", str(out), "--scratch_embedding_size", "16", "--scratch_hidden_size", "16", "--save_steps", "0",
    ]  # fmt: skip
    results = _run(_recipe(), flags)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("defaults for the scratch")]
    assert len(lines) == 1
    for part in ("learning_rate=0.002", "per_device_train_batch_size=32", "num_train_epochs=20", "warmup_steps=4"):
        assert part in lines[0], lines[0]
    run_config = json.loads((out / "run_config.json").read_text())
    assert run_config["learning_rate"] == 0.002 and run_config["per_device_train_batch_size"] == 32
    assert run_config["num_train_epochs"] == 20 and run_config["max_grad_norm"] == 5.0
    assert run_config["backbone_defaults"]["learning_rate"] == 0.002
    assert results["global_step"] == 20 * 4  # 120 examples / 32 = 4 steps per epoch, 20 epochs (the cap)
    assert results["validation_accuracy"] > 0.5  # learned (chance: 1/3); the tiny BiLSTM needs lr > 2e-3 for more

    # A YAML key and a flag win over the defaults, even when they repeat the dataclass default.
    cfg = tmp_path / "c.yaml"
    cfg.write_text("learning_rate: 5.0e-5\n")
    _run(_recipe(), ["--config", str(cfg), *flags, "--per_device_train_batch_size", "8", "--max_steps", "3",
                     "--overwrite_output_dir", "true"])  # fmt: skip
    run_config = json.loads((out / "run_config.json").read_text())
    assert run_config["learning_rate"] == 5e-5 and run_config["per_device_train_batch_size"] == 8
    assert not {"learning_rate", "per_device_train_batch_size", "num_train_epochs"} & set(
        run_config["backbone_defaults"]
    )


def test_sentence_pairs(data, tmp_path):
    argv = _args(data, tmp_path, "--text_pair_column", "other")
    argv[argv.index("--train_file") + 1] = data["pair_train"]
    argv[argv.index("--validation_file") + 1] = data["pair_dev"]
    test_index = argv.index("--test_file")
    del argv[test_index : test_index + 2]
    results = _run(_recipe(), argv)
    assert results["validation_accuracy"] >= 0.9  # the label cue is only in the second sentence
    rows = (tmp_path / "validation_predictions.tsv").read_text().splitlines()
    assert " ||| " in rows[1]


def test_early_stopping_keeps_the_best_model(data, tmp_path):
    # learning rate 0: the first evaluation is the best; patience 1 stops at the second one
    results = _run(
        _recipe(),
        _args(data, tmp_path, "--learning_rate", "0", "--eval_steps", "3", "--early_stopping_patience", "1"),
    )
    assert results["global_step"] == 6
    history = json.loads((tmp_path / "log_history.json").read_text())
    assert [h["step"] for h in history if "eval_accuracy" in h] == [3, 6]
    assert (tmp_path / "best_model" / "model.safetensors").is_file()


def test_a_run_stopped_between_logging_steps_logs_its_last_steps(data, tmp_path):
    """Every recipe ends its loop with `ProgressLogger.finish`: the steps after the last logging step are logged (the
    fine-tune recipes used to drop them from log_history.json when early stopping or the time budget stopped them)."""
    argv = ["--learning_rate", "0", "--eval_steps", "3", "--early_stopping_patience", "1", "--max_steps", "20"]
    results = _run(_recipe(), _args(data, tmp_path, *argv, "--logging_steps", "4"))
    assert results["global_step"] == 6  # stopped early, between the logging steps 4 and 8
    history = json.loads((tmp_path / "log_history.json").read_text())
    logged = {h["step"]: h["loss"] for h in history if "loss" in h}
    assert list(logged) == [4, 6]
    assert results["train_loss"] == pytest.approx(logged[6], abs=1e-4)


def test_exact_resume(data, tmp_path):
    from safetensors.torch import load_file

    recipe = _recipe()
    extra = ["--max_steps", "10", "--save_steps", "5", "--eval_steps", "0", "--load_best_model_at_end", "false"]
    _run(recipe, _args(data, tmp_path, *extra))
    full = load_file(tmp_path / "model.safetensors")
    checkpoint = tmp_path / "checkpoints" / "step-00000005"
    assert checkpoint.is_dir()
    _run(recipe, _args(data, tmp_path, *extra, "--resume_from_checkpoint", str(checkpoint)))
    resumed = load_file(tmp_path / "model.safetensors")
    assert full.keys() == resumed.keys()
    for key in full:
        torch.testing.assert_close(resumed[key], full[key], rtol=0, atol=0)


def test_unseen_label_and_missing_column_are_one_line_errors(data, tmp_path, capsys):
    recipe = _recipe()
    bad_dev = _write(data["root"] / "bad_dev.tsv", 6, 5, labels=("neg", "pos", "angry"))
    argv = _args(data, tmp_path)
    argv[argv.index("--validation_file") + 1] = bad_dev
    with pytest.raises(SystemExit) as info:
        _run(recipe, argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: the validation data has label(s) the model was not trained on: angry")

    with pytest.raises(SystemExit):
        _run(recipe, _args(data, tmp_path, "--label_column", "sentiment"))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "error: column 'sentiment' not found in the training data; columns are: sentence, label"


def _tiny_bert_dir(root, data, **config_overrides):
    from toolkit.data import train_wordpiece
    from toolkit.models.bert import ToolkitBertConfig, ToolkitBertForMaskedLM, ToolkitBertForReplacedTokenDetection

    with open(data["train"], encoding="utf-8") as f:
        texts = [line.split("\t")[0] for line in f][1:]
    tokenizer = train_wordpiece(iter([texts]), vocab_size=120, min_frequency=1)
    config = ToolkitBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        cls_token_id=tokenizer.cls_token_id,
        **config_overrides,
    )
    torch.manual_seed(0)
    rtd = config.pretraining_objectives == ["rtd"]
    (ToolkitBertForReplacedTokenDetection if rtd else ToolkitBertForMaskedLM)(config).save_pretrained(root)
    tokenizer.save_pretrained(root)
    return root


def test_toolkit_bert_backbone(data, tmp_path):
    backbone = _tiny_bert_dir(tmp_path / "bert", data)
    results = _run(
        _recipe(),
        _args(data, tmp_path / "run", "--model_name_or_path", str(backbone), "--learning_rate", "3e-3"),
    )
    assert results["backbone"] == "bert"
    assert results["validation_accuracy"] >= 0.6  # a random-init tiny BERT, 150 steps: well above chance (1/3)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["model_type"] == "toolkit_bert" and config["id2label"]["2"] == "pos"


def test_electra_checkpoint_fine_tunes_its_encoder(data, tmp_path, capsys):
    backbone = _tiny_bert_dir(tmp_path / "electra", data, pretraining_objectives=["rtd"])
    results = _run(
        _recipe(),
        _args(data, tmp_path / "run", "--model_name_or_path", str(backbone), "--learning_rate", "3e-3"),
    )
    assert results["backbone"] == "bert" and results["validation_accuracy"] >= 0.6
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "run" / "model.safetensors"))
    assert not any(k.startswith(("generator", "discriminator_head")) for k in saved)  # the encoder only
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["architectures"] == ["ToolkitBertForSequenceClassification"]


def test_narrow_bert_gets_the_small_row_and_frozen_embeddings_stay(data, tmp_path, capsys):
    from safetensors.torch import load_file

    backbone = _tiny_bert_dir(tmp_path / "bert", data)
    argv = _args(data, tmp_path / "run", "--model_name_or_path", str(backbone), "--freeze_embeddings", "true")
    del argv[argv.index("--learning_rate") : argv.index("--learning_rate") + 2]  # let the defaults choose it
    results = _run(_recipe(), argv)
    line = [x for x in capsys.readouterr().out.splitlines() if x.startswith("defaults for the")][-1]
    assert line.startswith("defaults for the bert_small backbone") and "learning_rate=0.001" in line
    chosen = json.loads((tmp_path / "run" / "run_config.json").read_text())["backbone_defaults"]
    assert chosen["learning_rate"] == 1e-3 and results["validation_accuracy"] > 0.4
    before, after = load_file(backbone / "model.safetensors"), load_file(tmp_path / "run" / "model.safetensors")
    (word,) = [k for k in after if k.endswith("word_embeddings.weight")]
    torch.testing.assert_close(after[word], before[word], rtol=0, atol=0)  # frozen
    layer = next(k for k in after if ".layers.0." in k and k.endswith("weight") and k in before)
    assert not torch.equal(after[layer], before[layer])  # the encoder did train

    with pytest.raises(SystemExit) as info:  # scratch has no pretrained embeddings to keep
        _run(_recipe(), _args(data, tmp_path / "scratch", "--freeze_embeddings", "true"))
    assert info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: freeze_embeddings applies to BERT backbones, not scratch"
    )


def test_bert_with_a_bilstm_head_over_every_layer(data, tmp_path, capsys):
    """--classifier_pooling bilstm: the saved classifier carries the head (scalar mix + task BiLSTM) and reloads with
    the Auto classes to the same predictions; the option is one line for a backbone that is not a BERT."""
    backbone = _tiny_bert_dir(tmp_path / "bert", data)
    argv = _args(data, tmp_path / "run", "--model_name_or_path", str(backbone), "--classifier_pooling", "bilstm",
                 "--classifier_lstm_size", "16")  # fmt: skip
    results = _run(_recipe(), argv)
    assert results["validation_accuracy"] >= 0.6
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["classifier_pooling"] == "bilstm" and config["classifier_lstm_size"] == 16
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run").eval()
    assert model.task_encoder.lstm.hidden_size == 16
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run")
    rows = [line.split("\t") for line in (tmp_path / "run" / "validation_predictions.tsv").read_text().splitlines()]
    header, rows = rows[0], rows[1:]
    texts = [r[header.index("text")] for r in rows]
    batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    batch.pop("token_type_ids", None)
    with torch.no_grad():
        predicted = model(**batch).logits.argmax(-1).tolist()
    assert [model.config.id2label[i] for i in predicted] == [r[header.index("predicted")] for r in rows]

    for flags, message in (
        (["--classifier_pooling", "bilstm"], "classifier_pooling applies to BERT backbones, not scratch"),
        (["--model_name_or_path", str(backbone), "--classifier_lstm_size", "16"],
         "classifier_lstm_size applies with classifier_pooling bilstm only"),
        (["--model_name_or_path", str(backbone), "--classifier_pooling", "bilstm", "--classifier_lstm_size", "0"],
         "classifier_lstm_size must be a positive integer, got 0"),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            _run(_recipe(), _args(data, tmp_path / "bad", *flags))
        assert info.value.code == 2
        assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {message}"
        assert not (tmp_path / "bad" / "config.json").exists()


def test_hf_bert_folder_is_converted(data, tmp_path):
    from transformers import BertConfig, BertModel

    toolkit_dir = _tiny_bert_dir(tmp_path / "bert", data)
    hf_config = BertConfig(
        vocab_size=json.loads((toolkit_dir / "config.json").read_text())["vocab_size"],
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    hf_dir = tmp_path / "hf_bert"
    BertModel(hf_config).save_pretrained(hf_dir)
    for name in os.listdir(toolkit_dir):
        if name.startswith("tokenizer") or name in ("vocab.txt", "special_tokens_map.json"):
            (hf_dir / name).write_bytes((toolkit_dir / name).read_bytes())
    results = _run(
        _recipe(),
        _args(data, tmp_path / "run", "--model_name_or_path", str(hf_dir), "--learning_rate", "3e-3"),
    )
    assert results["backbone"] == "bert" and results["validation_accuracy"] >= 0.6
    assert (tmp_path / "run" / "converted_backbone" / "config.json").is_file()
    chosen = json.loads((tmp_path / "run" / "run_config.json").read_text())["backbone_defaults"]
    assert chosen["weight_decay"] == 0.01 and chosen["group_by_length"] is True and "learning_rate" not in chosen


@pytest.mark.parametrize(
    "extra",
    # without the word channel: the schedule this test was written with (before per-backbone defaults)
    [
        ["--group_by_length", "false", "--max_grad_norm", "1.0", "--warmup_steps", "0"],
        ["--elmo_word_embeddings", "true"],
        ["--elmo_word_embeddings", "true", "--elmo_word_embeddings_init", "bilm"],
    ],
    ids=["elmo", "elmo_word_channel", "elmo_word_channel_from_bilm"],
)
def test_elmo_backbone_frozen_by_default(data, tmp_path, extra, capsys):
    from safetensors.torch import load_file

    from toolkit.models.elmo import ElmoConfig, ElmoForLanguageModeling, ElmoTokenizerFast

    with open(data["train"], encoding="utf-8") as f:
        texts = [line.split("\t")[0] for line in f][1:]
    tokenizer = ElmoTokenizerFast.train_from_iterator(texts, vocab_size=99, min_frequency=1)
    config = ElmoConfig(
        vocab_size=len(tokenizer),
        char_embedding_dim=8,
        char_cnn_filters=[[1, 8], [2, 8], [3, 16]],
        num_highway_layers=1,
        num_layers=2,
        cell_size=32,
        projection_dim=16,
        dropout=0.0,
        task_hidden_size=16,
        task_attention_dim=16,
        classifier_dropout=0.0,
        scalar_mix_layer_norm=True,  # a random tiny biLM has tiny activations; normalised layers train quickly
    )
    torch.manual_seed(0)
    backbone = tmp_path / "elmo"
    ElmoForLanguageModeling(config).save_pretrained(backbone)
    tokenizer.save_pretrained(backbone)
    results = _run(_recipe(), _args(data, tmp_path / "run", "--model_name_or_path", str(backbone), *extra))
    # a random frozen biLM gives weak features: the head still has to beat chance (1/3) and lower the loss
    assert results["backbone"] == "elmo" and results["validation_accuracy"] > 0.4
    history = json.loads((tmp_path / "run" / "log_history.json").read_text())
    eval_losses = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert eval_losses[-1] < eval_losses[0] - 0.03
    before = load_file(backbone / "model.safetensors")
    after = load_file(tmp_path / "run" / "model.safetensors")
    shared = [k for k in after if k.startswith("elmo.") and k in before]
    assert shared, "the biLM weights should keep their names"
    for key in shared:  # frozen biLM: unchanged
        torch.testing.assert_close(after[key], before[key], rtol=0, atol=0)
    assert not torch.equal(
        after["scalar_mix.scalar_parameters"], torch.zeros_like(after["scalar_mix.scalar_parameters"])
    )
    # the word channel (off by default): its vocabulary from the training texts, saved with the model
    from transformers import AutoTokenizer

    saved = AutoTokenizer.from_pretrained(tmp_path / "run")
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    if "--elmo_word_embeddings" not in extra:
        assert not getattr(saved, "task_words", None) and config["task_word_vocab_size"] == 0
        return
    assert "furious" not in saved.task_words and "superb" in saved.task_words
    assert config["task_word_vocab_size"] == len(saved.task_words)
    width = 16 if "bilm" in extra else 128  # started from the biLM's token vectors: the biLM's projection_dim
    assert after["task_words.weight"].shape == (len(saved.task_words), width)
    assert not torch.allclose(after["task_words.weight"][4:], torch.zeros(1))  # trained rows
    if "bilm" not in extra:
        return
    # wrong inputs: one line, exit 2, before the data is read
    for flags, message in (
        (["--elmo_word_embeddings_init", "bilm"], "needs an ELMo backbone and --elmo_word_embeddings true"),
        (["--elmo_word_embeddings_init", "glove"], "invalid choice: 'glove'"),
        (extra + ["--elmo_word_embedding_dim", "128"], "must be the biLM's projection_dim (16)"),
    ):
        with pytest.raises(SystemExit) as info:
            _run(_recipe(), _args(data, tmp_path / "bad", "--model_name_or_path", str(backbone), *flags))
        assert info.value.code == 2 and message in capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.distributed
def test_two_processes(data, tmp_path):
    args = [os.path.join(REPO, "recipes", "finetune_classification.py"), *_args(data, tmp_path, "--max_steps", "8")]
    args[args.index("--per_device_train_batch_size") + 1] = "4"
    proc = run_launch(args, nproc=2, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "all_results.json").read_text())
    assert results["validation_samples"] == 30 and results["test_samples"] == 15
    rows = (tmp_path / "test_predictions.tsv").read_text().strip().splitlines()
    assert len(rows) == 1 + 15


def test_length_grouped_order_is_a_permutation_of_similar_lengths():
    recipe = _recipe()
    rng = random.Random(0)
    lengths = [rng.randint(1, 60) for _ in range(1000)]
    order = recipe.length_grouped_order(lengths, batch_size=10, seed=3)
    assert sorted(order) == list(range(1000))
    assert order == recipe.length_grouped_order(lengths, batch_size=10, seed=3)
    spread = [
        max(lengths[i] for i in order[s : s + 10]) - min(lengths[i] for i in order[s : s + 10])
        for s in range(0, 1000, 10)
    ]
    assert sum(spread) / len(spread) < 3  # random batches of 10 would spread ~48


def test_time_budget_counts_from_the_start_of_training_and_all_results_is_written_once(data, tmp_path, monkeypatch):
    """--max_time_minutes budgets the training loop, in every recipe (it used to count from the top of `main` here,
    so slow data preparation could spend it before the first step); and the output folder's all_results.json is
    written once, by `toolkit.training.finish_run` (it used to be written twice)."""
    import time

    from toolkit.training import loop, report

    recipe = _recipe()
    load = recipe.load_raw_datasets

    def slow_load(*args, **kwargs):
        time.sleep(7)  # longer than the whole budget
        return load(*args, **kwargs)

    monkeypatch.setattr(recipe, "load_raw_datasets", slow_load)
    written = []
    for module in (loop, report):
        monkeypatch.setattr(
            module, "write_json", lambda path, obj, write=module.write_json: (written.append(path), write(path, obj))
        )
    argv = _args(data, tmp_path, "--max_steps", "6", "--max_time_minutes", "0.1", "--eval_steps", "0")
    results = _run(recipe, argv)
    assert results["global_step"] == 6 and results["train_runtime"] > 7
    assert [os.path.normpath(p) for p in written].count(str(tmp_path / "all_results.json")) == 1
