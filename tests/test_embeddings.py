"""ELMo embeddings as an API and a CLI: per-layer states and their scalar mix, context-dependent word vectors."""

import json

import pytest
import torch

from toolkit.cli import main as toolkit_main
from toolkit.embeddings import ElmoEmbedder
from toolkit.errors import UserError
from toolkit.models.elmo import ElmoConfig, ElmoForLanguageModeling, ElmoTokenizerFast, register

CORPUS = ["the bank of the river is green .", "the bank raised its rates .", "we sat on the river bank ."] * 3
RIVER, MONEY = "the bank of the river is green .", "the bank raised its rates ."


@pytest.fixture(scope="module")
def elmo_dir(tmp_path_factory):
    register()
    torch.manual_seed(0)
    tokenizer = ElmoTokenizerFast.train_from_iterator(CORPUS, vocab_size=40)
    config = ElmoConfig(
        vocab_size=len(tokenizer), token_embedder="char_cnn", char_embedding_dim=8,
        char_cnn_filters=[[1, 8], [2, 8]], num_highway_layers=1, projection_dim=16, cell_size=32, num_layers=2,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("elmo")
    ElmoForLanguageModeling(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def test_layers_and_mix_shapes_and_words(elmo_dir):
    embedder = ElmoEmbedder.from_pretrained(elmo_dir)
    river, money = embedder([RIVER, MONEY])
    assert river.words == RIVER.split() and money.words == MONEY.split()
    assert river.layers.shape == (3, len(river.words), 32)  # token layer + 2 biLSTM layers, 2 x projection
    torch.testing.assert_close(river.mixed, river.layers.mean(0))  # no task: the average of the layers


def test_the_same_word_gets_different_vectors_in_different_contexts(elmo_dir):
    embedder = ElmoEmbedder.from_pretrained(elmo_dir)
    river, money = embedder([RIVER, MONEY])
    i, j = river.words.index("bank"), money.words.index("bank")
    torch.testing.assert_close(river.layers[0, i], money.layers[0, j])  # the token layer is context-free
    for layer in (1, 2):
        assert not torch.allclose(river.layers[layer, i], money.layers[layer, j], atol=1e-4)
    assert (river.mixed[i] - money.mixed[j]).norm() > 1e-3
    again = embedder([RIVER])[0]  # alone (no padding) == in a batch with a shorter sentence
    torch.testing.assert_close(again.mixed, river.mixed, atol=1e-5, rtol=1e-5)


def test_embed_cli_prints_and_writes_vectors(elmo_dir, tmp_path, capsys):
    out = tmp_path / "vectors.json"
    toolkit_main(["embed", "--model", elmo_dir, "--text", RIVER, "--text", MONEY, "--out", str(out)])
    printed = capsys.readouterr().out
    assert "bank" in printed and "dim 32" in printed
    rows = json.loads(out.read_text())
    banks = [r["vector"] for r in rows if r["word"] == "bank"]
    assert len(rows) == len(RIVER.split()) + len(MONEY.split()) and len(banks) == 2 and banks[0] != banks[1]


def test_embed_on_a_model_that_is_not_elmo_is_one_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(SystemExit) as exit_info:
        toolkit_main(["embed", "--model", str(tmp_path), "--text", "a b"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "toolkit ELMo" in err
    with pytest.raises(UserError):
        ElmoEmbedder.from_pretrained(str(tmp_path / "missing"))
