"""recipes/finetune_classification.py fine-tunes BERT backbones unpadded by default (`--unpad_inputs true`), and that
run is the padded run (`--unpad_inputs false`): same losses step by step, same validation metrics, same weights."""

import json
import random

import pytest
import torch
from safetensors.torch import load_file

from tests.recipes.test_finetune_classification import CUES, WORDS, _recipe, _run, _tiny_bert_dir


def _write_ragged(path, n, seed):
    """Sentences of 1 to 14 words, so every batch of 8 is padded."""
    rng = random.Random(seed)
    labels = ("neg", "neu", "pos")
    with open(path, "w", encoding="utf-8") as f:
        f.write("sentence\tlabel\n")
        for i in range(n):
            label = labels[i % 3]
            words = [rng.choice(WORDS) for _ in range(rng.randint(0, 13))] + [rng.choice(CUES[label])]
            rng.shuffle(words)
            f.write(f"{' '.join(words)}\t{label}\n")
    return str(path)


pytestmark = pytest.mark.usefixtures("one_thread")  # in-process recipe runs: one thread, as under accelerate


def test_bert_is_unpadded_by_default_and_equals_the_padded_run(tmp_path):
    data = {
        "train": _write_ragged(tmp_path / "train.tsv", 64, 0),
        "validation": _write_ragged(tmp_path / "dev.tsv", 24, 1),
    }
    backbone = _tiny_bert_dir(tmp_path / "bert", data)
    runs = {}
    for name, extra in (("unpadded", []), ("padded", ["--unpad_inputs", "false"])):
        out = tmp_path / name
        argv = [
            "--model_name_or_path", str(backbone),
            "--train_file", data["train"], "--validation_file", data["validation"], "--text_column", "sentence",
            "--output_dir", str(out), "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16",
            "--learning_rate", "3e-3", "--max_steps", "12", "--logging_steps", "1", "--eval_steps", "6",
            "--save_steps", "0", "--seed", "1", "--hidden_dropout_prob", "0", "--classifier_dropout", "0",
            # the settings this test was written for, not the BERT row of the per-backbone defaults (warmup over a
            # share of the 12 steps, length-grouped batches), under which step 12's batch is not step 1's kind
            "--warmup_steps", "0", "--group_by_length", "false",
            *extra,
        ]  # fmt: skip
        results = _run(_recipe(), argv)
        config = json.loads((out / "config.json").read_text())
        history = json.loads((out / "log_history.json").read_text())
        runs[name] = (results, config, history, load_file(str(out / "model.safetensors")))
    (res_u, cfg_u, hist_u, w_u), (res_p, cfg_p, hist_p, w_p) = runs["unpadded"], runs["padded"]
    assert cfg_u["unpad_inputs"] is True and cfg_p["unpad_inputs"] is False
    losses_u = [e["loss"] for e in hist_u if "loss" in e]
    losses_p = [e["loss"] for e in hist_p if "loss" in e]
    assert len(losses_u) == 12
    torch.testing.assert_close(torch.tensor(losses_u), torch.tensor(losses_p), rtol=1e-4, atol=1e-5)
    assert losses_u[-1] < losses_u[0]
    assert res_u["validation_accuracy"] == res_p["validation_accuracy"]
    for key in w_p:
        torch.testing.assert_close(w_u[key], w_p[key], rtol=1e-4, atol=1e-5, msg=key)
