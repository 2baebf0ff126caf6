"""The unpadded BERT path (`unpad_inputs=True`) equals the padded computation: outputs at real positions, losses,
gradients and one optimizer step, for both unpadded attentions ("buckets", "nested"), against the toolkit's padded
path and against transformers' `BertForSequenceClassification` with the same weights."""

import copy

import pytest
import torch
from transformers import BertForSequenceClassification

from tests.models.test_bert import VOCAB, mlm_labels, tiny_config, tiny_hf_config
from toolkit.models.bert import (
    ToolkitBertConfig,
    ToolkitBertForMaskedLM,
    ToolkitBertForPreTraining,
    ToolkitBertForSequenceClassification,
    ToolkitBertModel,
)
from toolkit.models.bert.convert import convert_state_dict

VARIANTS = [dict(), dict(pre_norm=True, hidden_act="swiglu", use_bias=False)]
ATTENTIONS = ["buckets", "nested"]


def ragged_batch(batch=19, seq=17, seed=0, holes=False):
    """Right-padded rows of lengths 1..seq (more rows than one attention bucket holds), optionally with masked holes
    inside rows; token types 0/1 on real tokens."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(4, VOCAB, (batch, seq), generator=g)
    input_ids[:, 0] = 1
    lengths = torch.randint(1, seq + 1, (batch,), generator=g)
    lengths[0] = seq
    attention_mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    if holes:
        attention_mask[1::3, 2] = 0
    input_ids = input_ids * attention_mask
    token_type_ids = (torch.arange(seq)[None, :] >= lengths[:, None] // 2).long() * attention_mask
    return dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)


def unpadded_copy(model, attention):
    other = copy.deepcopy(model)
    other.config.unpad_inputs = True
    other.config.unpadded_attention = attention
    return other


def assert_same_grads(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, msg=name)


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("overrides", VARIANTS)
@pytest.mark.parametrize("holes", [False, True])
def test_classifier_unpadded_equals_padded_outputs_grads_and_step(attention, overrides, holes):
    torch.manual_seed(0)
    padded = ToolkitBertForSequenceClassification(tiny_config(num_labels=3, **overrides)).train()
    unpadded = unpadded_copy(padded, attention)
    batch = ragged_batch(holes=holes)
    assert batch["attention_mask"].sum() < batch["attention_mask"].numel() * 0.7  # padding really present
    labels = torch.arange(batch["input_ids"].shape[0]) % 3
    a = padded(**batch, labels=labels, output_hidden_states=True)
    b = unpadded(**batch, labels=labels, output_hidden_states=True)
    torch.testing.assert_close(b.logits, a.logits)
    torch.testing.assert_close(b.loss, a.loss)
    real = batch["attention_mask"].bool()
    assert len(b.hidden_states) == len(a.hidden_states)
    for h_a, h_b in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(h_b[real], h_a[real])
        assert torch.all(h_b[~real] == 0)
    a.loss.backward()
    b.loss.backward()
    assert_same_grads(padded, unpadded)
    for model in (padded, unpadded):  # one AdamW step each: the same parameters after it
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        opt.step()
    for (name, p), q in zip(padded.named_parameters(), unpadded.parameters()):
        torch.testing.assert_close(q, p, msg=name)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_unpadded_matches_hf_bert_classifier_with_padding(attention):
    torch.manual_seed(0)
    hf = BertForSequenceClassification(tiny_hf_config(num_labels=2)).train()
    config = tiny_config(num_labels=2, unpad_inputs=True, unpadded_attention=attention)
    toolkit = ToolkitBertForSequenceClassification(config).train()
    encoder = {k[len("bert.") :]: v for k, v in hf.state_dict().items() if k.startswith("bert.")}
    state = {f"bert.{k}": v for k, v in convert_state_dict(encoder, "BertModel").items()}
    state.update({k: v for k, v in hf.state_dict().items() if k.startswith("classifier.")})
    toolkit.load_state_dict(state, strict=True)
    batch = ragged_batch()
    labels = torch.arange(batch["input_ids"].shape[0]) % 2
    a = hf(**batch, labels=labels)
    b = toolkit(**batch, labels=labels)
    torch.testing.assert_close(b.logits, a.logits)
    a.loss.backward()
    b.loss.backward()
    torch.testing.assert_close(toolkit.classifier.weight.grad, hf.classifier.weight.grad)
    torch.testing.assert_close(
        toolkit.bert.embeddings.word_embeddings.weight.grad, hf.bert.embeddings.word_embeddings.weight.grad
    )
    qkv_grad = torch.cat(
        [getattr(hf.bert.encoder.layer[0].attention.self, n).weight.grad for n in ("query", "key", "value")]
    )
    torch.testing.assert_close(toolkit.bert.encoder.layers[0].attention.qkv.weight.grad, qkv_grad)


@pytest.mark.parametrize("cls", [ToolkitBertForMaskedLM, ToolkitBertForPreTraining])
@pytest.mark.parametrize("sparse", [False, True])
def test_pretraining_heads_unpadded_equal_padded(cls, sparse):
    torch.manual_seed(0)
    padded = cls(tiny_config(sparse_prediction=sparse, pretraining_objectives=["mlm", "nsp"])).train()
    unpadded = unpadded_copy(padded, "buckets")
    batch = ragged_batch()
    labels = mlm_labels(batch["input_ids"], batch["attention_mask"])
    extra = (
        {"next_sentence_label": torch.arange(batch["input_ids"].shape[0]) % 2}
        if cls is ToolkitBertForPreTraining
        else {}
    )
    a = padded(**batch, labels=labels, **extra)
    b = unpadded(**batch, labels=labels, **extra)
    torch.testing.assert_close(b.loss, a.loss)
    a.loss.backward()
    b.loss.backward()
    assert_same_grads(padded, unpadded)
    with torch.no_grad():  # the unpadded path ran: zeros at padded positions
        assert torch.all(unpadded.bert(**batch).last_hidden_state[~batch["attention_mask"].bool()] == 0)


def test_unpadded_inputs_embeds_position_ids_and_checkpointing():
    torch.manual_seed(0)
    padded = ToolkitBertModel(tiny_config()).train()
    unpadded = unpadded_copy(padded, "buckets")
    (getattr(unpadded, "activation_checkpointing_enable", None) or unpadded.gradient_checkpointing_enable)()
    batch = ragged_batch()
    embeds = padded.embeddings.word_embeddings(batch["input_ids"]).detach()
    positions = torch.arange(batch["input_ids"].shape[1]).flip(0)[None]  # unusual positions: must follow the tokens
    a = padded(inputs_embeds=embeds, attention_mask=batch["attention_mask"], position_ids=positions)
    b = unpadded(inputs_embeds=embeds, attention_mask=batch["attention_mask"], position_ids=positions)
    real = batch["attention_mask"].bool()
    torch.testing.assert_close(b.last_hidden_state[real], a.last_hidden_state[real])
    assert torch.all(b.last_hidden_state[~real] == 0)  # the unpadded path ran
    torch.testing.assert_close(b.pooler_output, a.pooler_output)
    a.pooler_output.sum().backward()
    b.pooler_output.sum().backward()
    assert_same_grads(padded, unpadded)


def test_unpadded_falls_back_where_it_does_not_apply():
    torch.manual_seed(0)
    model = ToolkitBertModel(tiny_config(unpad_inputs=True)).eval()
    reference = ToolkitBertModel(tiny_config()).eval()
    reference.load_state_dict(model.state_dict())
    batch = ragged_batch()
    with torch.no_grad():
        # output_attentions needs the padded (eager) path; attentions come back
        out = model(**batch, output_attentions=True)
        assert out.attentions is not None and out.attentions[0].shape[-1] == batch["input_ids"].shape[1]
        # left padding: column 0 is padding, the padded path is used and its values are returned as they are
        left = {k: v.flip(1) for k, v in batch.items()}
        torch.testing.assert_close(model(**left).last_hidden_state, reference(**left).last_hidden_state)
        # no padding at all
        full = {k: v[:1] for k, v in batch.items()}
        torch.testing.assert_close(model(**full).last_hidden_state, reference(**full).last_hidden_state)


def test_unpadded_attention_is_validated():
    with pytest.raises(ValueError, match="unpadded_attention"):
        ToolkitBertConfig(unpadded_attention="flash")
