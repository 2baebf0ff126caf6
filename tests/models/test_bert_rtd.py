"""ELECTRA's replaced-token detection (`ToolkitBertForReplacedTokenDetection`): which positions are labelled
replaced, which loss trains which part, padding, and the saved checkpoint as fine-tuning and remote code load it."""

import textwrap

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification

from tests.conftest import run_without_toolkit
from tests.models.test_bert import make_batch, mlm_labels, tiny_config
from toolkit.models.bert import ToolkitBertConfig, ToolkitBertForReplacedTokenDetection, register


@pytest.fixture(autouse=True, scope="module")
def _register():
    register()


def rtd_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return ToolkitBertForReplacedTokenDetection(tiny_config(pretraining_objectives=["rtd"], **overrides))


def masked_batch(seed=0, pad=True):
    batch = make_batch(seed=seed, pad=pad)
    labels = mlm_labels(batch["input_ids"], batch["attention_mask"], seed=seed)
    inputs = dict(batch, input_ids=torch.where(labels == -100, batch["input_ids"], torch.full_like(labels, 3)))
    return inputs, labels


def test_generator_shape_follows_the_encoder():
    config = tiny_config(pretraining_objectives=["rtd"])
    gen = config.generator_config()
    assert (gen.hidden_size, gen.num_hidden_layers, gen.num_attention_heads) == (8, 2, 1)
    assert gen.pretraining_objectives == ["mlm"] and gen.vocab_size == config.vocab_size
    assert tiny_config(pretraining_objectives=["rtd"], generator_hidden_size=16).generator_num_attention_heads == 2
    with pytest.raises(ValueError, match="generator_hidden_size"):
        tiny_config(pretraining_objectives=["rtd"], generator_hidden_size=10, generator_num_attention_heads=4)
    with pytest.raises(ValueError, match="pretraining_objectives"):
        ToolkitBertConfig(pretraining_objectives=["rtd", "nsp"])


def test_replaced_labels_mark_exactly_the_masked_positions_the_generator_changed():
    model = rtd_model().eval()
    forced = 7  # a generator that always samples token 7
    with torch.no_grad():
        model.generator_head.bias.fill_(-1e4)
        model.generator_head.bias[forced] = 1e4
    inputs, labels = masked_batch()
    inputs["input_ids"][0, 1], labels[0, 1] = 3, forced  # one masked position whose original token is 7
    out = model(**inputs, labels=labels)
    masked = labels != -100
    expected = (masked & (labels != forced)).float()
    torch.testing.assert_close(out.rtd_labels, expected)
    assert out.rtd_labels[0, 1] == 0  # sampled the original token back: not replaced
    assert out.generator_logits.shape == (int(masked.sum()), model.config.vocab_size)
    torch.testing.assert_close(out.prediction_labels, labels[masked])


def test_each_loss_trains_its_own_part():
    model = rtd_model()
    inputs, labels = masked_batch()
    out = model(**inputs, labels=labels)
    torch.testing.assert_close(out.loss, out.mlm_loss + model.config.rtd_loss_weight * out.rtd_loss)
    generator = [*model.generator.parameters(), *model.generator_in.parameters(), model.generator_head.dense.weight]
    shared = model.bert.embeddings.word_embeddings.weight
    assert model.generator_head.decoder.weight is shared  # ELECTRA: generator and encoder share the embeddings
    out.rtd_loss.backward(retain_graph=True)  # sampling is not differentiated: the generator's blocks get nothing
    assert all(p.grad is None for p in generator)
    assert shared.grad.abs().sum() > 0 and model.bert.encoder.layers[0].mlp.fc_in.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    out.mlm_loss.backward()  # the generator's loss trains its blocks and the shared embeddings, not the encoder
    assert all(p.grad is None for p in model.bert.encoder.parameters())
    assert all(p.grad.abs().sum() > 0 for p in generator) and shared.grad.abs().sum() > 0


def test_padding_is_left_out_of_the_detection_loss_and_inference_scores_the_input():
    model = rtd_model().eval()
    inputs, labels = masked_batch(pad=True)
    torch.manual_seed(1)
    out = model(**inputs, labels=labels)
    real = inputs["attention_mask"].bool()
    manual = F.binary_cross_entropy_with_logits(out.logits[real], out.rtd_labels[real])
    torch.testing.assert_close(out.rtd_loss, manual)
    plain = model(**inputs)  # no labels: the discriminator scores the given tokens, no generator
    assert plain.loss is None and plain.rtd_labels is None and plain.logits.shape == inputs["input_ids"].shape
    with torch.no_grad():
        hidden = model.bert(**inputs).last_hidden_state
        torch.testing.assert_close(plain.logits, model.discriminator_head(hidden).squeeze(-1))


_REMOTE = textwrap.dedent(
    """
    import sys, torch
    from transformers import AutoModelForPreTraining, AutoModelForSequenceClassification
    batch = torch.load(sys.argv[2])
    detector = AutoModelForPreTraining.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    classifier = AutoModelForSequenceClassification.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    with torch.no_grad():
        torch.save({"class": type(detector).__name__, "logits": detector(**batch).logits,
                    "hidden": classifier.bert(**batch).last_hidden_state}, sys.argv[3])
    """
)


def test_checkpoint_gives_fine_tuning_the_encoder_and_loads_without_the_toolkit(tmp_path):
    model = rtd_model(seed=3).eval()
    ckpt = tmp_path / "ckpt"
    model.save_pretrained(ckpt)
    classifier = AutoModelForSequenceClassification.from_pretrained(ckpt, num_labels=2)
    encoder = {k: v for k, v in model.bert.state_dict().items()}
    for key, value in classifier.bert.state_dict().items():
        if key in encoder:
            assert torch.equal(value, encoder[key]), key
    batch = make_batch()
    torch.save(batch, tmp_path / "batch.pt")
    run_without_toolkit(tmp_path, _REMOTE, ckpt, tmp_path / "batch.pt", tmp_path / "out.pt")
    remote = torch.load(tmp_path / "out.pt")
    assert remote["class"] == "ToolkitBertForReplacedTokenDetection"
    with torch.no_grad():
        torch.testing.assert_close(remote["logits"], model(**batch).logits)
        torch.testing.assert_close(remote["hidden"], model.bert(**batch).last_hidden_state)
