"""Tests of the ELMo family: shapes, directionality, clipping paths, state carrying, OOV words, training, tokenizer and
checkpoint loading without the toolkit."""

import json

import pytest
import torch
from transformers import AutoModel, AutoModelForPreTraining, AutoModelForSequenceClassification, AutoTokenizer

from tests.conftest import run_without_toolkit
from tests.helpers.host_sync import host_sync_ops
from toolkit.models.elmo import (
    ELMO_PRESETS,
    ElmoConfig,
    ElmoForLanguageModeling,
    ElmoForSequenceClassification,
    ElmoModel,
    ElmoTokenizerFast,
    adaptive_softmax_plan,
    character_cnn_plan,
    register,
)

CORPUS = [
    "the cat sat on the mat .",
    "the dog sat on the log .",
    "a cat and a dog played in the garden .",
    "the bird sang a song in the tree .",
    "she read the book , and he wrote a letter .",
    "they walked to the river and sat down .",
] * 3


@pytest.fixture(scope="module", autouse=True)
def _register_and_one_thread():
    register()
    # tiny models gain nothing from intra-op threads, and threads fight when the CPU is shared
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    return ElmoTokenizerFast.train_from_iterator(CORPUS, vocab_size=99, min_frequency=1)


def tiny_config(token_embedder="char_cnn", **kwargs):
    defaults = dict(
        vocab_size=99,
        token_embedder=token_embedder,
        char_embedding_dim=8,
        char_cnn_filters=[[1, 8], [2, 8], [3, 16]],
        num_highway_layers=1,
        num_layers=2,
        cell_size=32,
        projection_dim=16,
        cell_clip=3.0,
        proj_clip=3.0,
        dropout=0.0,
        task_hidden_size=16,
        task_attention_dim=16,
        classifier_dropout=0.0,
    )
    defaults.update(kwargs)
    return ElmoConfig(**defaults)


def random_batch(batch_size=2, seq_len=7, vocab_size=99, generator_seed=0):
    g = torch.Generator().manual_seed(generator_seed)
    input_ids = torch.randint(4, vocab_size, (batch_size, seq_len), generator=g)
    char_ids = torch.randint(1, 262, (batch_size, seq_len, 50), generator=g)
    return input_ids, char_ids


# --- shapes ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token_embedder", ["char_cnn", "word"])
def test_shapes_of_every_layer_and_head(token_embedder):
    torch.manual_seed(0)
    config = tiny_config(token_embedder, num_labels=3)
    input_ids, char_ids = random_batch()
    mask = torch.ones_like(input_ids)
    mask[1, 5:] = 0
    out = ElmoModel(config).eval()(
        input_ids=input_ids, char_ids=char_ids, attention_mask=mask, return_final_states=True
    )
    assert len(out.hidden_states) == config.num_layers + 1
    for layer in out.hidden_states:
        assert layer.shape == (2, 7, 2 * config.projection_dim)
        assert torch.all(layer[1, 5:] == 0)  # padding is zeroed
    assert out.stacked_hidden_states.shape == (2, config.num_layers + 1, 7, 32)
    assert torch.equal(out.last_hidden_state, out.hidden_states[-1])
    # layer 0 is the token representation duplicated
    assert torch.equal(out.hidden_states[0][..., :16], out.hidden_states[0][..., 16:])
    h, c = out.final_states
    assert h.shape == (config.num_layers, 2, 2, 16) and c.shape == (config.num_layers, 2, 2, 32)

    lm = ElmoForLanguageModeling(config)(input_ids=input_ids, char_ids=char_ids, attention_mask=mask, labels=input_ids)
    assert lm.forward_logits.shape == lm.backward_logits.shape == (2, 7, 99)
    assert lm.loss.shape == () and lm.num_forward_targets.item() == 6 + 4  # last valid word predicts nothing
    clf = ElmoForSequenceClassification(config)(input_ids=input_ids, char_ids=char_ids, attention_mask=mask)
    assert clf.logits.shape == (2, 3)


# --- directionality -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("token_embedder", ["char_cnn", "word"])
def test_forward_lm_sees_only_past_and_backward_lm_only_future(token_embedder):
    torch.manual_seed(0)
    config = tiny_config(token_embedder)
    model = ElmoModel(config).eval()
    input_ids, char_ids = random_batch(batch_size=1, seq_len=9)
    t = 4
    P = config.projection_dim

    def layers(ids, chars):
        out = model(input_ids=ids, char_ids=chars)
        return [h[0] for h in out.hidden_states[1:]]  # each (T, 2P)

    base = layers(input_ids, char_ids)
    later_ids, later_chars = input_ids.clone(), char_ids.clone()
    later_ids[0, t + 1 :] = (later_ids[0, t + 1 :] + 7) % 95 + 4
    later_chars[0, t + 1 :] = (later_chars[0, t + 1 :] + 11) % 261 + 1
    earlier_ids, earlier_chars = input_ids.clone(), char_ids.clone()
    earlier_ids[0, :t] = (earlier_ids[0, :t] + 7) % 95 + 4
    earlier_chars[0, :t] = (earlier_chars[0, :t] + 11) % 261 + 1
    changed_later = layers(later_ids, later_chars)
    changed_earlier = layers(earlier_ids, earlier_chars)
    for layer, after, before in zip(base, changed_later, changed_earlier):
        # future words changed: forward states up to t identical, backward state at t differs
        torch.testing.assert_close(after[: t + 1, :P], layer[: t + 1, :P], rtol=0, atol=0)
        assert not torch.allclose(after[t, P:], layer[t, P:])
        # past words changed: backward states from t on identical, forward state at t differs
        torch.testing.assert_close(before[t:, P:], layer[t:, P:], rtol=0, atol=0)
        assert not torch.allclose(before[t, :P], layer[t, :P])


def test_padding_does_not_change_states():
    """Right padding must not leak into the backward LM (which reads each sequence from its own last word)."""
    torch.manual_seed(0)
    model = ElmoModel(tiny_config()).eval()
    input_ids, char_ids = random_batch(batch_size=2, seq_len=8)
    mask = torch.ones_like(input_ids)
    mask[0, 5:] = 0
    padded = model(input_ids=input_ids, char_ids=char_ids, attention_mask=mask)
    alone = model(input_ids=input_ids[:1, :5], char_ids=char_ids[:1, :5])
    for a, b in zip(padded.hidden_states, alone.hidden_states):
        torch.testing.assert_close(a[0, :5], b[0], rtol=1e-5, atol=1e-6)


# --- LSTM paths and states ------------------------------------------------------------------------------------------


def _set_implementation(model, implementation):
    for module in model.modules():
        if hasattr(module, "implementation"):
            module.implementation = implementation


def test_fused_and_stepwise_lstm_agree_without_clipping():
    torch.manual_seed(0)
    config = tiny_config(cell_clip=None, proj_clip=None)
    model = ElmoModel(config).eval()
    input_ids, char_ids = random_batch(batch_size=3, seq_len=6)
    mask = torch.ones_like(input_ids)
    mask[2, 4:] = 0
    states = (torch.randn(2, 2, 3, 16) * 0.5, torch.randn(2, 2, 3, 32) * 0.5)
    kwargs = dict(input_ids=input_ids, char_ids=char_ids, attention_mask=mask, return_final_states=True)
    _set_implementation(model, "fused")
    fused = model(**kwargs, initial_states=states)
    _set_implementation(model, "stepwise")
    stepwise = model(**kwargs, initial_states=states)
    for a, b in zip(fused.hidden_states, stepwise.hidden_states):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(fused.final_states, stepwise.final_states, rtol=1e-5, atol=1e-5)
    # gradients agree as well
    for implementation in ("fused", "stepwise"):
        model.zero_grad()
        _set_implementation(model, implementation)
        model(**kwargs).last_hidden_state.pow(2).sum().backward()
        grads = [p.grad.clone() for p in model.encoder.parameters()]
        if implementation == "fused":
            fused_grads = grads
    for a, b in zip(fused_grads, grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_clipping_is_applied():
    torch.manual_seed(0)
    model = ElmoModel(tiny_config(cell_clip=0.05, proj_clip=0.01)).eval()
    assert not model.encoder.forward_layers[0].use_fused()  # "auto" picks the step-wise cell
    input_ids, char_ids = random_batch()
    out = model(input_ids=input_ids, char_ids=char_ids, return_final_states=True)
    h, c = out.final_states
    assert c.abs().max() <= 0.05 + 1e-7
    # first layer outputs are projections clipped to 0.01 (deeper layers add the residual)
    assert out.hidden_states[1].abs().max() <= 0.01 + 1e-7


def test_carried_states_equal_one_long_sequence():
    """Forward state carried left-to-right and backward state carried right-to-left across two windows give the same
    states as reading the whole sequence (what bilm-tf-style stream training relies on)."""
    torch.manual_seed(0)
    model = ElmoModel(tiny_config()).eval()
    input_ids, char_ids = random_batch(batch_size=2, seq_len=10)
    whole = model(input_ids=input_ids, char_ids=char_ids)
    first = model(input_ids=input_ids[:, :6], char_ids=char_ids[:, :6], return_final_states=True)
    second = model(
        input_ids=input_ids[:, 6:],
        char_ids=char_ids[:, 6:],
        initial_states=first.final_states,
        return_final_states=True,
    )
    P = 16
    for layer in range(1, 3):
        torch.testing.assert_close(second.hidden_states[layer][..., :P], whole.hidden_states[layer][:, 6:, :P])
    # backward: read the right window first, then the left one starting from its state
    right = model(input_ids=input_ids[:, 6:], char_ids=char_ids[:, 6:], return_final_states=True)
    left = model(
        input_ids=input_ids[:, :6],
        char_ids=char_ids[:, :6],
        initial_states=right.final_states,
    )
    for layer in range(1, 3):
        torch.testing.assert_close(left.hidden_states[layer][..., P:], whole.hidden_states[layer][:, :6, P:])


# --- representations ------------------------------------------------------------------------------------------------


def test_scalar_mix_weights_sum_to_one_and_mix_layers():
    torch.manual_seed(0)
    model = ElmoForSequenceClassification(tiny_config(scalar_mix_layer_norm=False))
    with torch.no_grad():
        model.scalar_mix.scalar_parameters.copy_(torch.tensor([0.3, -1.0, 2.0]))
        model.scalar_mix.gamma.fill_(1.7)
    weights = model.scalar_mix.weights()
    torch.testing.assert_close(weights.sum(), torch.tensor(1.0))
    assert torch.all(weights > 0)
    stacked = torch.randn(2, 3, 5, 32)
    expected = 1.7 * sum(weights[j] * stacked[:, j] for j in range(3))
    torch.testing.assert_close(model.scalar_mix(stacked), expected)


def test_unseen_word_gets_character_dependent_representation(tokenizer):
    torch.manual_seed(0)
    model = ElmoModel(tiny_config(vocab_size=len(tokenizer))).eval()
    enc = tokenizer(["the zyxwvut sat", "the qwertyuiop sat"], return_tensors="pt")
    unk = tokenizer.unk_token_id
    assert enc["input_ids"][0, 2].item() == unk and enc["input_ids"][1, 2].item() == unk
    out = model(**enc)
    rep_a, rep_b = out.hidden_states[0][0, 2], out.hidden_states[0][1, 2]
    assert rep_a.abs().sum() > 0
    assert not torch.allclose(rep_a, rep_b)  # both are <unk> words, yet their characters differ
    assert not torch.allclose(out.last_hidden_state[0, 2], out.last_hidden_state[1, 2])


def test_character_cnn_shortcuts_are_exact(tokenizer):
    """De-duplicating words and trimming trailing padding characters give the plain per-token CNN result."""
    torch.manual_seed(0)
    model = ElmoModel(tiny_config(vocab_size=len(tokenizer))).eval()
    enc = tokenizer(["the cat sat on the mat , the cat", "a dog"], padding=True, return_tensors="pt")
    encoder = model.token_embedder
    fast = encoder(enc["char_ids"])  # (B, T, P)
    plain = encoder.embed_words(enc["char_ids"].view(-1, 50)).view(*enc["char_ids"].shape[:2], -1)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)


# --- training -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [{}, {"token_embedder": "word"}, {"softmax_type": "adaptive", "adaptive_cutoffs": [8, 20]}],
    ids=["char_cnn", "word", "adaptive_softmax"],
)
def test_loss_goes_down_on_tiny_batch(tokenizer, overrides):
    torch.manual_seed(0)
    model = ElmoForLanguageModeling(tiny_config(vocab_size=len(tokenizer), **overrides))
    batch = tokenizer(CORPUS[:6], padding=True, return_tensors="pt")
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    losses = []
    for _ in range(40):
        out = model(**batch, labels=batch["input_ids"])
        losses.append(out.loss.item())
        torch.testing.assert_close(out.loss, 0.5 * (out.forward_loss + out.backward_loss))
        if len(losses) == 1 and overrides.get("softmax_type") != "adaptive":  # training shortcut: same loss
            fast = model(**batch, labels=batch["input_ids"], return_logits=False)
            assert fast.forward_logits is None
            torch.testing.assert_close(fast.loss, out.loss)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert losses[-1] < 0.6 * losses[0], losses


def test_classifier_freezes_bilm_by_default():
    torch.manual_seed(0)
    input_ids, char_ids = random_batch(batch_size=4)
    labels = torch.tensor([0, 1, 0, 1])
    for freeze in (True, False):
        model = ElmoForSequenceClassification(tiny_config(freeze_bilm=freeze, num_labels=2))
        model.train()
        bilm_before = [p.detach().clone() for p in model.elmo.parameters()]
        mix_before = model.scalar_mix.scalar_parameters.detach().clone()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
        out = model(input_ids=input_ids, char_ids=char_ids, labels=labels)
        out.loss.backward()
        optimizer.step()
        bilm_changed = any(not torch.equal(a, b) for a, b in zip(bilm_before, model.elmo.parameters()))
        assert bilm_changed is (not freeze)
        assert not model.elmo.training or not freeze
        assert not torch.equal(mix_before, model.scalar_mix.scalar_parameters)


def test_published_sizes_parameter_counts():
    expected = {"small": 13.6e6, "medium": 28.0e6, "original": 93.6e6}
    for name in ELMO_PRESETS:
        with torch.device("meta"):
            model = ElmoModel(ElmoConfig.from_preset(name, vocab_size=10))
        count = sum(p.numel() for p in model.parameters())
        assert abs(count - expected[name]) / expected[name] < 0.02, (name, count)


# --- tokenizer and checkpoints --------------------------------------------------------------------------------------


def test_tokenizer_char_ids_and_round_trip(tokenizer, tmp_path):
    enc = tokenizer(["the cat sat .", "a dog"], padding=True)
    assert enc["input_ids"][0][0] == tokenizer.bos_token_id and enc["input_ids"][0][-1] == tokenizer.eos_token_id
    assert len(enc["char_ids"][1]) == len(enc["input_ids"][1]) == 6
    cat = enc["char_ids"][0][2]
    assert cat[:5] == [257, ord("c") + 1, ord("a") + 1, ord("t") + 1, 258] and len(cat) == 50
    assert enc["char_ids"][1][-1] == [0] * 50 and enc["attention_mask"][1][-1] == 0  # padding token
    # punctuation is split off, unknown words keep their characters
    assert tokenizer.split_words("don't stop!") == ["don", "'", "t", "stop", "!"]

    tokenizer.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert "AutoTokenizer" in config.get("auto_map", {})
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "ElmoTokenizerFast"
    assert loaded.get_vocab() == tokenizer.get_vocab()
    texts = ["the zebra sat on the mat !", "they walked"]
    a = tokenizer(texts, padding=True, return_tensors="pt")
    b = loaded(texts, padding=True, return_tensors="pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # pre-tokenized input and collator-style padding give the same char ids
    c = loaded([["the", "zebra", "sat"]], is_split_into_words=True)
    assert c["char_ids"][0][2] == a["char_ids"][0][2].tolist()
    single = loaded("the cat", return_tensors="pt")
    assert single["input_ids"].shape == (1, 4) and single["char_ids"].shape == (1, 4, 50)
    padded = loaded.pad([loaded("the cat"), loaded("the cat sat on")], return_tensors="pt")
    assert padded["char_ids"].shape == (2, 6, 50)


def test_save_and_load_with_trust_remote_code_without_toolkit(tokenizer, tmp_path):
    torch.manual_seed(0)
    model = ElmoForLanguageModeling(tiny_config(vocab_size=len(tokenizer))).eval()
    checkpoint = tmp_path / "ckpt"
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    for name in ("configuration_elmo.py", "modeling_elmo.py", "tokenization_elmo.py"):
        assert (checkpoint / name).exists()
    auto_map = json.loads((checkpoint / "config.json").read_text())["auto_map"]
    assert {"AutoConfig", "AutoModel", "AutoModelForPreTraining", "AutoModelForSequenceClassification"} <= set(
        auto_map
    )
    texts = ["the cat sat on the zyxw mat .", "a dog"]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**enc, labels=enc["input_ids"], output_hidden_states=True)

    # in-process Auto classes (registered)
    assert type(AutoModelForPreTraining.from_pretrained(checkpoint)).__name__ == "ElmoForLanguageModeling"
    assert type(AutoModel.from_pretrained(checkpoint)).__name__ == "ElmoModel"
    clf = AutoModelForSequenceClassification.from_pretrained(checkpoint, num_labels=2)
    assert type(clf).__name__ == "ElmoForSequenceClassification"

    # a process where importing toolkit fails
    run_without_toolkit(
        tmp_path,
        f"""
        import torch
        from transformers import AutoModelForPreTraining, AutoTokenizer
        tok = AutoTokenizer.from_pretrained({str(checkpoint)!r}, trust_remote_code=True)
        model = AutoModelForPreTraining.from_pretrained({str(checkpoint)!r}, trust_remote_code=True).eval()
        enc = tok({texts!r}, padding=True, return_tensors="pt")
        with torch.no_grad():
            out = model(**enc, labels=enc["input_ids"], output_hidden_states=True)
        torch.save({{"enc": dict(enc), "loss": out.loss, "logits": out.forward_logits,
                    "hidden": out.hidden_states[-1], "tok": type(tok).__name__}}, {str(tmp_path / "out.pt")!r})
        """,
    )
    got = torch.load(tmp_path / "out.pt")
    assert got["tok"] == "ElmoTokenizerFast"
    for key in enc:
        assert torch.equal(got["enc"][key], enc[key]), key
    torch.testing.assert_close(got["loss"], expected.loss)
    torch.testing.assert_close(got["logits"], expected.forward_logits)
    torch.testing.assert_close(got["hidden"], expected.hidden_states[-1])


@pytest.mark.parametrize("token_embedder", ["char_cnn", "word"])
def test_adaptive_softmax_with_host_plan_matches_and_never_syncs(token_embedder):
    # The pretraining step (stream windows: no padding, targets aligned by the data) with the collator's plans
    # (adaptive-softmax rows, the character CNN's distinct words): the same loss and gradients as torch's AdaptiveLogSoftmaxWithLoss path, and no operator
    # that makes the host wait for the device; the plain path does select rows on the device.
    torch.manual_seed(0)
    cutoffs = [8, 20]
    model = ElmoForLanguageModeling(
        tiny_config(token_embedder, softmax_type="adaptive", adaptive_cutoffs=cutoffs, cell_clip=None, proj_clip=None)
    )
    input_ids, char_ids = random_batch(batch_size=3, seq_len=9)
    inputs = {"input_ids": input_ids} if token_embedder == "word" else {"char_ids": char_ids}
    forward_labels, backward_labels = ElmoForLanguageModeling.shift_labels(input_ids)
    forward_labels[0, :3] = torch.tensor([2, 15, 60])  # one word of each cluster at least
    labels = dict(forward_labels=forward_labels, backward_labels=backward_labels, return_logits=False)
    plans = dict(
        forward_softmax_plan=adaptive_softmax_plan(forward_labels, cutoffs),
        backward_softmax_plan=adaptive_softmax_plan(backward_labels, cutoffs),
    )
    if token_embedder == "char_cnn":
        plans["char_plan"] = character_cnn_plan(char_ids, model.config)
    order, sizes = plans["forward_softmax_plan"]
    assert len(sizes) == 3 and all(sizes) and sum(sizes) == int((forward_labels != -100).sum())
    assert order[: sizes[0]].tolist() == sorted(order[: sizes[0]].tolist())

    def loss_and_grads(**extra):
        model.zero_grad()
        out = model(**inputs, **labels, **extra)
        out.loss.backward()
        return out, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    (planned, planned_grads), (plain, plain_grads) = loss_and_grads(**plans), loss_and_grads()
    torch.testing.assert_close(planned.forward_loss, plain.forward_loss)
    torch.testing.assert_close(planned.backward_loss, plain.backward_loss)
    assert planned.num_forward_targets == plain.num_forward_targets
    for a, b in zip(planned_grads, plain_grads):
        torch.testing.assert_close(a, b)
    assert host_sync_ops(lambda: model(**inputs, **labels, **plans).loss.backward()) == []
    assert "aten.nonzero" in host_sync_ops(lambda: model(**inputs, **labels).loss.backward())


# --- the context-independent word channel of the classifier (Peters et al., 2018, section 3.3) ----------------------


TASK_TEXTS = ["a great movie", "a dull film", "Great fun , great cast", "the plot was dull"]


def _word_channel_model(tokenizer, freeze=True, **kwargs):
    task_tokenizer = ElmoTokenizerFast.train_from_iterator(CORPUS, vocab_size=99, min_frequency=1)
    task_tokenizer.set_task_words(task_tokenizer.build_task_words(TASK_TEXTS))
    config = tiny_config(
        freeze_bilm=freeze, num_labels=2, task_word_vocab_size=len(task_tokenizer.task_words),
        task_word_embedding_dim=12, **kwargs,
    )  # fmt: skip
    torch.manual_seed(0)
    return ElmoForSequenceClassification(config), task_tokenizer


def test_word_channel_shapes_and_vocabulary(tokenizer):
    model, task_tokenizer = _word_channel_model(tokenizer)
    words = task_tokenizer.task_words
    assert words[:4] == ["<pad>", "<unk>", "<s>", "</s>"] and words[4] == "great"  # lower-cased, most frequent first
    assert model.task_words.weight.shape == (len(words), 12)
    assert model.task_encoder.input_size == 2 * 16 + 12
    batch = task_tokenizer(["a GREAT film", "unseenword"], padding=True, return_tensors="pt")
    assert batch["task_word_ids"].shape == batch["input_ids"].shape == (2, 5)
    assert batch["task_word_ids"][0].tolist() == [2, words.index("a"), 4, words.index("film"), 3]
    assert batch["task_word_ids"][1].tolist() == [2, 1, 3, 0, 0]  # unknown word, then padding
    out = model(**batch, labels=torch.tensor([1, 0]))
    assert out.logits.shape == (2, 2) and out.loss.shape == ()
    with pytest.raises(ValueError, match="task_word_ids"):
        model(input_ids=batch["input_ids"], char_ids=batch["char_ids"], attention_mask=batch["attention_mask"])


def test_word_channel_trains_while_the_frozen_bilm_gets_no_gradient(tokenizer):
    model, task_tokenizer = _word_channel_model(tokenizer, freeze=True)
    model.train()
    batch = task_tokenizer(TASK_TEXTS, padding=True, return_tensors="pt")
    model(**batch, labels=torch.tensor([1, 0, 1, 0])).loss.backward()
    grad = model.task_words.weight.grad
    assert grad is not None and grad[4].abs().sum() > 0  # "great" received a gradient
    assert torch.all(grad[0] == 0)  # padding row never does
    assert all(p.grad is None and not p.requires_grad for p in model.elmo.parameters())
    # unfrozen, the biLM trains too and the word channel still does
    model, task_tokenizer = _word_channel_model(tokenizer, freeze=False)
    model.train()
    model(**batch, labels=torch.tensor([1, 0, 1, 0])).loss.backward()
    assert model.task_words.weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.elmo.parameters())


def test_word_channel_saves_and_reloads_with_its_vocabulary(tokenizer, tmp_path):
    model, task_tokenizer = _word_channel_model(tokenizer)
    model.eval()
    model.save_pretrained(tmp_path / "clf")
    task_tokenizer.save_pretrained(tmp_path / "clf")
    loaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path / "clf")
    assert loaded_tokenizer.task_words == task_tokenizer.task_words
    assert "task_word_ids" in loaded_tokenizer.model_input_names
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "clf").eval()
    assert loaded.config.task_word_vocab_size == len(task_tokenizer.task_words)
    batch = loaded_tokenizer(["a great cast", "dull"], padding=True, return_tensors="pt")
    torch.testing.assert_close(loaded(**batch).logits, model(**batch).logits)
    # a biLM checkpoint without a word channel is unchanged: no task_word_ids, no extra input width
    assert "task_word_ids" not in tokenizer(["a cat"], return_tensors="pt")
    assert ElmoForSequenceClassification(tiny_config()).task_words is None


def test_word_channel_is_initialised_when_added_to_a_bilm_checkpoint(tokenizer, tmp_path):
    """from_pretrained of a biLM with `task_word_vocab_size` set: the new embedding is drawn, not left as garbage."""
    torch.manual_seed(0)
    ElmoForLanguageModeling(tiny_config()).save_pretrained(tmp_path / "bilm")
    model = AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "bilm", num_labels=2, task_word_vocab_size=500, task_word_embedding_dim=64
    )
    weight = model.task_words.weight.detach()
    assert torch.isfinite(weight).all() and torch.all(weight[0] == 0)
    assert 0.08 < weight[1:].std().item() < 0.12


@pytest.mark.parametrize("token_embedder", ["char_cnn", "word"])
def test_word_channel_starts_from_the_bilms_token_vectors(tokenizer, token_embedder):
    """`init_task_words_from_bilm`: each task word's row is the biLM's layer-0 vector of that word (as its own
    sentence would give it) scaled to the channel's initial spread, the special rows keep their initialisation, and
    the rows still train."""
    model, task_tokenizer = _word_channel_model(tokenizer, token_embedder=token_embedder)
    with pytest.raises(ValueError, match="projection_dim 16"):
        model.init_task_words_from_bilm(task_tokenizer)  # a 12-wide channel cannot hold 16-wide vectors
    task_tokenizer = ElmoTokenizerFast.train_from_iterator(CORPUS, vocab_size=99, min_frequency=1)
    task_tokenizer.set_task_words(task_tokenizer.build_task_words(TASK_TEXTS))
    config = tiny_config(
        token_embedder=token_embedder, num_labels=2, task_word_vocab_size=len(task_tokenizer.task_words),
        task_word_embedding_dim=16,
    )  # fmt: skip
    torch.manual_seed(0)
    model = ElmoForSequenceClassification(config)
    special = model.task_words.weight[:4].detach().clone()
    initial_std = model.task_words.weight[4:].std().item()
    model.init_task_words_from_bilm(task_tokenizer, batch_size=3)  # several chunks
    words = task_tokenizer.task_words
    weight = model.task_words.weight.detach()
    vectors = []
    for word in words[4:]:
        batch = task_tokenizer([word], add_special_tokens=False, return_tensors="pt")
        vectors.append(model.elmo.eval().embed_tokens(batch["input_ids"], batch.get("char_ids"))[0, 0])
    vectors = torch.stack(vectors)
    # the biLM's vectors, rescaled as a whole to the channel's initial spread
    torch.testing.assert_close(weight[4:], vectors * (initial_std / vectors.std().item()))
    assert abs(weight[4:].std().item() - initial_std) < 1e-5
    torch.testing.assert_close(model.task_words.weight[:4], special)
    model.train()
    batch = task_tokenizer(TASK_TEXTS, padding=True, return_tensors="pt")
    model(**batch, labels=torch.tensor([1, 0, 1, 0])).loss.backward()
    assert model.task_words.weight.grad[words.index("great")].abs().sum() > 0
