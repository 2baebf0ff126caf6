"""BiLSTM-attention classifier: shapes, padding invariance, attention-pooling reference, learning, save/load."""

import json

import pytest
import torch
from torch import nn

from tests.conftest import run_without_toolkit
from toolkit.models.bilstm import (
    BiLSTMConfig,
    BiLSTMForSequenceClassification,
    BiLSTMModel,
    register,
)


@pytest.fixture(autouse=True, scope="module")
def _register():
    register()
    register()  # a second call must be harmless
    # tiny tensors: one thread is much faster than two contended ones on a shared CPU
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(**kwargs):
    defaults = dict(vocab_size=99, embedding_size=32, hidden_size=32, attention_size=16, num_layers=2, num_labels=3)
    defaults.update(kwargs)
    return BiLSTMConfig(**defaults)


def batch(seed=0, batch_size=4, seq_len=9):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, 99, (batch_size, seq_len), generator=generator)
    lengths = torch.tensor([seq_len, 3, 6, 1][:batch_size])
    attention_mask = (torch.arange(seq_len)[None, :] < lengths[:, None]).long()
    input_ids = input_ids.masked_fill(attention_mask == 0, 0)
    return input_ids, attention_mask


@pytest.mark.parametrize("pooling", ["attention", "max", "mean"])
def test_shapes(pooling):
    torch.manual_seed(0)
    config = tiny_config(pooling=pooling)
    input_ids, attention_mask = batch()
    base = BiLSTMModel(config).eval()
    out = base(input_ids, attention_mask=attention_mask)
    assert out.last_hidden_state.shape == (4, 9, 64)
    assert out.pooler_output.shape == (4, 64)
    # outputs at pad positions are zero (packed sequences)
    assert torch.all(out.last_hidden_state[1, 3:] == 0)
    if pooling == "attention":
        weights = out.pooling_weights
        assert weights.shape == (4, 9)
        torch.testing.assert_close(weights.sum(-1), torch.ones(4))
        assert torch.all(weights[attention_mask == 0] == 0)
    model = BiLSTMForSequenceClassification(config).eval()
    cls_out = model(input_ids, attention_mask=attention_mask, labels=torch.tensor([0, 1, 2, 1]))
    assert cls_out.logits.shape == (4, 3)
    assert cls_out.loss.ndim == 0 and torch.isfinite(cls_out.loss)
    loss, logits = model(
        input_ids, attention_mask=attention_mask, labels=torch.tensor([0, 1, 2, 1]), return_dict=False
    )
    torch.testing.assert_close(logits, cls_out.logits)


def test_padding_invariance():
    torch.manual_seed(0)
    model = BiLSTMForSequenceClassification(tiny_config()).eval()
    input_ids, attention_mask = batch()
    batched = model(input_ids, attention_mask=attention_mask).logits
    for row in range(input_ids.shape[0]):
        length = int(attention_mask[row].sum())
        alone = model(input_ids[row : row + 1, :length]).logits  # no padding at all
        torch.testing.assert_close(batched[row : row + 1], alone, atol=1e-5, rtol=1e-5)
    # more padding on the right does not change anything either (mask inferred from pad_token_id)
    padded = torch.cat([input_ids, torch.zeros(4, 5, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(padded).logits, batched, atol=1e-5, rtol=1e-5)


def test_against_plain_reference():
    """Recompute one sentence by hand: unpacked LSTM over its real tokens + explicit additive attention."""
    torch.manual_seed(0)
    model = BiLSTMForSequenceClassification(tiny_config(num_layers=1)).eval()
    input_ids, attention_mask = batch()
    logits = model(input_ids, attention_mask=attention_mask).logits
    row, length = 2, int(attention_mask[2].sum())
    tokens = input_ids[row, :length]
    with torch.no_grad():
        emb = model.bilstm.embeddings.weight[tokens]  # (L, E)
        lstm = model.bilstm.lstm
        reference = nn.LSTM(32, 32, bidirectional=True, batch_first=True)
        reference.load_state_dict(lstm.state_dict())
        states, _ = reference(emb[None])  # (1, L, 64)
        states = states[0]
        pooling = model.bilstm.pooling
        scores = torch.tanh(states @ pooling.proj.weight.T + pooling.proj.bias) @ pooling.v.weight[0]  # (L,)
        alpha = torch.softmax(scores, dim=0)
        sentence = (alpha[:, None] * states).sum(0)
        expected = sentence @ model.classifier.weight.T + model.classifier.bias
    torch.testing.assert_close(logits[row], expected, atol=1e-5, rtol=1e-5)


def test_loss_goes_down_and_learns_a_rule():
    # label = 1 if token 7 occurs anywhere in the sentence: needs the whole sequence, not one position
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(8, 99, (64, 10), generator=generator)
    labels = torch.arange(64) % 2
    positions = torch.randint(0, 10, (64,), generator=generator)
    input_ids[labels == 1, positions[labels == 1]] = 7
    model = BiLSTMForSequenceClassification(tiny_config(num_labels=2, num_layers=1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model(input_ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    model.eval()
    accuracy = (model(input_ids).logits.argmax(-1) == labels).float().mean().item()
    assert accuracy == 1.0


def test_problem_types():
    torch.manual_seed(0)
    input_ids, attention_mask = batch()
    regression = BiLSTMForSequenceClassification(tiny_config(num_labels=1))
    out = regression(input_ids, attention_mask=attention_mask, labels=torch.tensor([0.5, 1.0, -1.0, 2.0]))
    assert regression.config.problem_type == "regression"
    torch.testing.assert_close(
        out.loss, nn.functional.mse_loss(out.logits.squeeze(-1), torch.tensor([0.5, 1, -1, 2.0]))
    )
    multi = BiLSTMForSequenceClassification(tiny_config(num_labels=3))
    targets = torch.tensor([[1.0, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]])
    out = multi(input_ids, attention_mask=attention_mask, labels=targets)
    assert multi.config.problem_type == "multi_label_classification"
    torch.testing.assert_close(out.loss, nn.functional.binary_cross_entropy_with_logits(out.logits, targets))


def test_config_rejects_unknown_pooling():
    with pytest.raises(ValueError, match="pooling"):
        BiLSTMConfig(pooling="cls")


def test_save_and_auto_load(tmp_path):
    from transformers import AutoConfig, AutoModelForSequenceClassification

    torch.manual_seed(0)
    config = tiny_config(id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2})
    model = BiLSTMForSequenceClassification(config).eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "toolkit_bilstm"
    assert saved["auto_map"]["AutoModelForSequenceClassification"] == (
        "modeling_bilstm.BiLSTMForSequenceClassification"
    )
    assert (tmp_path / "modeling_bilstm.py").is_file() and (tmp_path / "configuration_bilstm.py").is_file()
    assert isinstance(AutoConfig.from_pretrained(tmp_path), BiLSTMConfig)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert loaded.config.id2label == {0: "neg", 1: "neu", 2: "pos"}
    input_ids, attention_mask = batch()
    torch.testing.assert_close(
        loaded(input_ids, attention_mask=attention_mask).logits, model(input_ids, attention_mask=attention_mask).logits
    )


def test_trust_remote_code_without_toolkit(tmp_path):
    torch.manual_seed(0)
    model = BiLSTMForSequenceClassification(tiny_config()).eval()
    model_dir = tmp_path / "model"
    model.save_pretrained(model_dir)
    input_ids, attention_mask = batch()
    expected = model(input_ids, attention_mask=attention_mask).logits
    torch.save({"input_ids": input_ids, "attention_mask": attention_mask}, tmp_path / "inputs.pt")

    run_without_toolkit(
        tmp_path,
        f"""
        import torch
        from transformers import AutoModelForSequenceClassification
        model = AutoModelForSequenceClassification.from_pretrained({str(model_dir)!r}, trust_remote_code=True).eval()
        assert not type(model).__module__.startswith("toolkit"), type(model).__module__
        inputs = torch.load({str(tmp_path / "inputs.pt")!r})
        with torch.no_grad():
            logits = model(**inputs).logits
        torch.save(logits, {str(tmp_path / "logits.pt")!r})
        """,
    )
    torch.testing.assert_close(torch.load(tmp_path / "logits.pt"), expected.detach())


def test_word_tokenizer_pairs_and_reload(tmp_path):
    from transformers import AutoTokenizer

    from toolkit.models.bilstm import train_word_tokenizer

    tokenizer = train_word_tokenizer(["The cat sat.", "the dog sat the", "a cat the"], vocab_size=50)
    vocab = tokenizer.get_vocab()
    assert (vocab["[PAD]"], vocab["[UNK]"], vocab["[SEP]"]) == (0, 1, 2)
    assert vocab["the"] == 3  # most frequent word first
    encoded = tokenizer(["the cat", "zebra"], ["a dog", "the"], padding=True)
    assert tokenizer.convert_ids_to_tokens(encoded["input_ids"][0]) == ["the", "cat", "[SEP]", "a", "dog"]
    assert encoded["input_ids"][1] == [1, 2, 3, 0, 0] and encoded["attention_mask"][1] == [1, 1, 1, 0, 0]
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded("The CAT", "dog")["input_ids"] == tokenizer("the cat", "dog")["input_ids"]
