"""Tests of the encoder-decoder Transformer family (toolkit/models/transformer)."""

import math

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

from tests.conftest import run_without_toolkit
from toolkit.models import transformer as family
from toolkit.models.transformer import (
    TransformerSeq2SeqConfig,
    TransformerSeq2SeqForConditionalGeneration,
    TransformerSeq2SeqModel,
)
from toolkit.models.transformer.modeling_transformer import CACHE_NAME, eager_attention_forward, sinusoidal_positions

PAD, BOS, EOS = 0, 1, 2


@pytest.fixture(autouse=True, scope="module")
def _register_and_one_thread():
    family.register()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only contend with each other
    yield
    torch.set_num_threads(threads)


def tiny_config(**overrides) -> TransformerSeq2SeqConfig:
    kwargs = dict(
        vocab_size=99,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=37,
        decoder_ffn_dim=37,
        dropout=0.0,
        max_position_embeddings=64,
    )
    kwargs.update(overrides)
    return TransformerSeq2SeqConfig(**kwargs)


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 99, (3, 7), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    attention_mask[2, 3:] = 0
    input_ids = input_ids.masked_fill(attention_mask == 0, PAD)
    labels = torch.randint(3, 99, (3, 6), generator=g)
    return input_ids, attention_mask, labels


# A task the tiny model can memorise: target = reversed source followed by </s>.
SOURCES = torch.tensor([[5, 17, 23, 42, 8], [61, 9, 33, 70, 12], [44, 90, 15, 27, 53], [31, 6, 88, 19, 74]])
TARGETS = torch.cat([SOURCES.flip(1), torch.full((4, 1), EOS)], dim=1)


def train(model, steps: int, lr: float = 1e-2) -> list[float]:
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(input_ids=SOURCES, attention_mask=torch.ones_like(SOURCES), labels=TARGETS).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    model = TransformerSeq2SeqForConditionalGeneration(tiny_config(normalize_before=True))
    losses = train(model, steps=60)
    return model.eval(), losses


# --- building blocks ---------------------------------------------------------------------------------------------


def test_eager_attention_matches_hand_computation():
    torch.manual_seed(0)
    q, k, v = torch.randn(1, 1, 2, 3), torch.randn(1, 1, 4, 3), torch.randn(1, 1, 4, 5)
    mask = torch.tensor([True, True, True, False])[None, None, None, :]  # last key is padding
    module = torch.nn.Module().eval()
    output, weights = eager_attention_forward(module, q, k, v, mask, scaling=3**-0.5)
    for i in range(2):
        scores = [sum(q[0, 0, i, d] * k[0, 0, j, d] for d in range(3)) / math.sqrt(3) for j in range(3)]
        exp = [math.exp(s) for s in scores]
        expected = torch.tensor([e / sum(exp) for e in exp] + [0.0])
        torch.testing.assert_close(weights[0, 0, i], expected)
        torch.testing.assert_close(output[0, i, 0], (expected[:, None] * v[0, 0]).sum(0))


def test_sinusoidal_positions_follow_the_paper():
    table = sinusoidal_positions(torch.arange(10), 8)
    for pos in (0, 3, 9):
        for i in range(4):
            angle = pos / 10000 ** (2 * i / 8)
            assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


@pytest.mark.parametrize("overrides", [{}, {"normalize_before": True, "position_embedding_type": "learned"}])
def test_shapes_and_sdpa_matches_eager(overrides):
    input_ids, attention_mask, labels = batch()
    torch.manual_seed(0)
    eager = TransformerSeq2SeqForConditionalGeneration(tiny_config(**overrides)).eval()
    eager.config._attn_implementation = "eager"
    sdpa = TransformerSeq2SeqForConditionalGeneration(tiny_config(**overrides)).eval()
    sdpa.load_state_dict(eager.state_dict())
    sdpa.config._attn_implementation = "sdpa"
    out_eager = eager(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    out_sdpa = sdpa(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    assert out_eager.logits.shape == (3, 6, 99)
    torch.testing.assert_close(out_sdpa.logits, out_eager.logits, atol=1e-5, rtol=1e-4)

    base = TransformerSeq2SeqModel(tiny_config(**overrides)).eval()
    hidden = base(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=labels).last_hidden_state
    assert hidden.shape == (3, 6, 32)


def test_embeddings_are_shared_and_tied_and_loss_is_label_smoothed():
    model = TransformerSeq2SeqForConditionalGeneration(tiny_config(label_smoothing=0.1)).eval()
    encoder_embedding = model.model.encoder.embeddings.tokens.weight
    assert model.model.decoder.embeddings.tokens.weight is encoder_embedding
    assert model.lm_head.weight is encoder_embedding
    input_ids, attention_mask, labels = batch()
    labels[0, -2:] = -100
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    log_probs = out.logits.log_softmax(-1)[labels != -100]  # (N, V)
    targets = labels[labels != -100]
    nll = -log_probs.gather(1, targets[:, None]).squeeze(1)
    expected = (0.9 * nll - 0.1 * log_probs.mean(-1)).mean()
    torch.testing.assert_close(out.loss, expected)


def test_decoder_never_sees_the_future():
    input_ids, attention_mask, labels = batch()
    model = TransformerSeq2SeqForConditionalGeneration(tiny_config()).eval()
    out = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=labels, output_attentions=True)
    for weights in out.decoder_attentions:  # (B, H, T, T): nothing above the diagonal
        assert torch.all(weights.triu(diagonal=1) == 0)
    changed = labels.clone()
    changed[:, 4:] = 7  # change future tokens: earlier positions must not move
    out2 = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=changed)
    torch.testing.assert_close(out2.logits[:, :4], out.logits[:, :4])
    assert not torch.allclose(out2.logits[:, 4:], out.logits[:, 4:])


def test_source_padding_gets_no_attention():
    input_ids, attention_mask, labels = batch()
    model = TransformerSeq2SeqForConditionalGeneration(tiny_config()).eval()
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, output_attentions=True)
    pad_positions = (attention_mask == 0)[:, None, None, :]  # (B, 1, 1, S)
    for weights in out.cross_attentions + out.encoder_attentions:
        assert torch.all(weights.masked_select(pad_positions.expand_as(weights[:, :, :1]).expand_as(weights)) == 0)
    scrambled = input_ids.masked_fill(attention_mask == 0, 55)  # other ids under the padding: same outputs
    out2 = model(input_ids=scrambled, attention_mask=attention_mask, labels=labels)
    torch.testing.assert_close(out2.logits, out.logits)


# --- training and generation -------------------------------------------------------------------------------------


def test_overfit_lowers_the_loss_and_greedy_reproduces_targets(trained):
    model, losses = trained
    assert losses[-1] < 0.1 * losses[0]
    generated = model.generate(SOURCES, attention_mask=torch.ones_like(SOURCES), max_new_tokens=8)
    assert torch.equal(generated[:, 1 : TARGETS.shape[1] + 1], TARGETS)


def test_incremental_decoding_equals_full_recomputation(trained):
    model, _ = trained
    input_ids, attention_mask, labels = batch(1)
    decoder_input_ids = torch.cat([torch.full((3, 1), BOS), labels], dim=1)
    full = model(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).logits
    encoder_outputs = model.get_encoder()(input_ids, attention_mask=attention_mask)
    cache, steps = None, []
    for t in range(decoder_input_ids.shape[1]):
        out = model(
            encoder_outputs=encoder_outputs,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids[:, t : t + 1],
            use_cache=True,
            **{CACHE_NAME: cache},
        )
        cache = getattr(out, CACHE_NAME)
        steps.append(out.logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)

    cached = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=10, use_cache=True)
    uncached = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=10, use_cache=False)
    assert torch.equal(cached, uncached)


def test_beam_search(trained):
    model, _ = trained
    mask = torch.ones_like(SOURCES)
    greedy = model.generate(SOURCES, attention_mask=mask, max_new_tokens=8, num_beams=1, do_sample=False)
    assert torch.equal(greedy, model.generate(SOURCES, attention_mask=mask, max_new_tokens=8))
    beams = model.generate(
        SOURCES, attention_mask=mask, max_new_tokens=8, num_beams=4, length_penalty=0.6, early_stopping=True
    )
    assert torch.equal(beams[:, 1 : TARGETS.shape[1] + 1], TARGETS)  # the memorised answer is also the best beam
    input_ids, attention_mask, _ = batch(2)
    no_repeat = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=12, num_beams=3,
                               no_repeat_ngram_size=2)  # fmt: skip
    for row in no_repeat.tolist():
        bigrams = [tuple(row[i : i + 2]) for i in range(len(row) - 1) if PAD not in row[i : i + 2]]
        assert len(bigrams) == len(set(bigrams))


def test_save_load_and_generate(trained, tmp_path):
    model, _ = trained
    model.save_pretrained(tmp_path)
    assert (tmp_path / "modeling_transformer.py").exists() and (tmp_path / "configuration_transformer.py").exists()
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is TransformerSeq2SeqForConditionalGeneration
    assert loaded.lm_head.weight is loaded.model.encoder.embeddings.tokens.weight
    mask = torch.ones_like(SOURCES)
    assert torch.equal(loaded.generate(SOURCES, attention_mask=mask, max_new_tokens=8, num_beams=2),
                       model.generate(SOURCES, attention_mask=mask, max_new_tokens=8, num_beams=2))  # fmt: skip


def test_trust_remote_code_without_toolkit(trained, tmp_path):
    model, _ = trained
    model.save_pretrained(tmp_path / "ckpt")
    expected = model.generate(SOURCES, attention_mask=torch.ones_like(SOURCES), max_new_tokens=8, num_beams=2)
    stdout = run_without_toolkit(
        tmp_path,
        f"""
        import torch
        from transformers import AutoModelForSeq2SeqLM
        model = AutoModelForSeq2SeqLM.from_pretrained("{tmp_path / "ckpt"}", trust_remote_code=True).eval()
        sources = torch.tensor({SOURCES.tolist()})
        out = model.generate(sources, attention_mask=torch.ones_like(sources), max_new_tokens=8, num_beams=2)
        print(type(model).__module__, out.tolist())
        """,
    )
    module, tokens = stdout.strip().split(" ", 1)
    assert not module.startswith("toolkit")
    assert tokens == str(expected.tolist())


# --- BERT warm start ---------------------------------------------------------------------------------------------


def test_warm_started_encoder_equals_bert():
    from transformers import BertConfig, BertModel

    from toolkit.models.transformer.warm_start import bert_encoder_config_kwargs, warm_start_encoder_from_bert

    bert_config = BertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    bert = BertModel(bert_config).eval()
    config = tiny_config(**bert_encoder_config_kwargs(bert_config))
    model = TransformerSeq2SeqForConditionalGeneration(config).eval()
    assert model.model.decoder.embeddings.tokens.weight.shape[0] == 99  # separate decoder vocabulary
    copied = warm_start_encoder_from_bert(model, {f"bert.{k}": v for k, v in bert.state_dict().items()})
    assert len(copied) == len(list(model.get_encoder().parameters()))

    input_ids, attention_mask, labels = batch()
    token_type_ids = torch.zeros_like(input_ids)
    token_type_ids[:, 4:] = 1
    expected = bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    ours = model.get_encoder()(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
    keep = attention_mask.bool()
    torch.testing.assert_close(ours.last_hidden_state[keep], expected.last_hidden_state[keep], atol=1e-5, rtol=1e-4)
    loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
    assert torch.isfinite(loss)


# --- attention maps ----------------------------------------------------------------------------------------------


def save_word_tokenizer(path) -> None:
    """Whitespace tokenizer over the test vocabulary: "w5 w17" -> [5, 17, </s>]."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": EOS, **{f"w{i}": i for i in range(3, 99)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS)])
    PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    ).save_pretrained(path)


def test_visualize_attention_writes_png(trained, tmp_path):
    from toolkit.visualize import cross_attention_matrix, load_for_visualization, visualize_attention

    model, _ = trained
    model.save_pretrained(tmp_path / "run")
    save_word_tokenizer(tmp_path / "run")
    source = " ".join(f"w{i}" for i in SOURCES[0].tolist())
    out = visualize_attention(str(tmp_path / "run"), source, out=str(tmp_path / "maps" / "map.png"))
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"

    loaded, source_tokenizer, target_tokenizer = load_for_visualization(str(tmp_path / "run"))
    weights, source_tokens, target_tokens = cross_attention_matrix(
        loaded, source_tokenizer, target_tokenizer, source, layer=0, head=1
    )
    assert source_tokens == source.split() + ["</s>"]
    assert target_tokens == [f"w{i}" for i in TARGETS[0, :-1].tolist()] + ["</s>"]  # the greedy output
    assert weights.shape == (6, 6)
    torch.testing.assert_close(weights.sum(-1), torch.ones(6))
    expected = model(input_ids=source_tokenizer(source, return_tensors="pt").input_ids, labels=TARGETS[:1],
                     output_attentions=True).cross_attentions[0][0, 1]  # fmt: skip
    torch.testing.assert_close(weights, expected)
    visualize_attention(str(tmp_path / "run"), source, target="w8 w42", out=str(tmp_path / "given.png"), head=0)
    assert (tmp_path / "given.png").stat().st_size > 1000


@pytest.mark.parametrize("variant", [{}, {"pre_norm": True}, {"use_bias": False, "pad_vocab_to_multiple_of": 8}])
def test_warm_start_from_toolkit_bert_checkpoint(variant, tmp_path):
    from toolkit.models.bert import ToolkitBertConfig, ToolkitBertForMaskedLM
    from toolkit.models.transformer.warm_start import load_bert_encoder, warm_start_encoder

    bert_config = ToolkitBertConfig(
        vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        cls_token_id=3, sep_token_id=4, mask_token_id=5, **variant,
    )  # fmt: skip
    torch.manual_seed(0)
    bert = ToolkitBertForMaskedLM(bert_config).eval()
    bert.save_pretrained(tmp_path / "bert")
    encoder_state, encoder_kwargs = load_bert_encoder(str(tmp_path / "bert"))
    model = TransformerSeq2SeqForConditionalGeneration(tiny_config(**encoder_kwargs)).eval()
    warm_start_encoder(model, encoder_state)
    input_ids, attention_mask, _ = batch()
    expected = bert.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    ours = model.get_encoder()(input_ids, attention_mask=attention_mask).last_hidden_state
    keep = attention_mask.bool()
    torch.testing.assert_close(ours[keep], expected[keep], atol=1e-5, rtol=1e-4)


def test_shared_embeddings_are_one_module(tmp_path):
    # FSDP2 keeps a shared parameter in one group and finds every use of it only when the module itself is shared.
    config = TransformerSeq2SeqConfig(
        vocab_size=50, d_model=16, encoder_layers=1, decoder_layers=1, attention_heads=2, ffn_dim=32,
        share_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    )  # fmt: skip
    model = TransformerSeq2SeqForConditionalGeneration(config)
    assert model.model.decoder.embeddings.tokens is model.model.encoder.embeddings.tokens
    assert model.lm_head.weight is model.model.encoder.embeddings.tokens.weight
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path)
    assert reloaded.model.decoder.embeddings.tokens is reloaded.model.encoder.embeddings.tokens
    for key, value in model.state_dict().items():
        assert torch.equal(value, reloaded.state_dict()[key]), key


def test_attention_map_labels_decode_byte_level_tokens():
    from toolkit.visualize import _display

    assert _display("MÃ¤nnern", byte_level=True) == "Männern"
    assert _display("ĠGruppe", byte_level=True) == "▁Gruppe"
    assert _display("über", byte_level=False) == "über"  # WordPiece / word vocabularies are shown as they are
