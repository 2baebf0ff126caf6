"""Tests of the RNN encoder-decoder with attention (toolkit/models/rnn_seq2seq)."""

import math
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForSeq2SeqLM

from tests.conftest import run_without_toolkit
from toolkit.models import rnn_seq2seq as family
from toolkit.models.rnn_seq2seq import (
    AdditiveAttention,
    BilinearAttention,
    DotAttention,
    RNNSeq2SeqConfig,
    RNNSeq2SeqForConditionalGeneration,
)
from toolkit.models.rnn_seq2seq.modeling_rnn_seq2seq import CACHE_NAME

PAD, BOS, EOS = 0, 1, 2
VARIANTS = [
    {"attention_type": "dot", "cell_type": "gru"},
    {"attention_type": "bilinear", "cell_type": "lstm"},
    {"attention_type": "additive", "cell_type": "gru"},
    {"attention_type": "additive", "cell_type": "lstm", "input_feeding": False, "decoder_layers": 2},
]
VARIANT_IDS = ["dot-gru", "bilinear-lstm", "additive-gru", "additive-lstm-nofeed-2layers"]


@pytest.fixture(autouse=True, scope="module")
def _register_and_one_thread():
    family.register()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only contend with each other
    yield
    torch.set_num_threads(threads)


def tiny_config(**overrides) -> RNNSeq2SeqConfig:
    kwargs = dict(vocab_size=99, embedding_size=24, encoder_hidden_size=16, hidden_size=32, dropout=0.0)
    kwargs.update(overrides)
    return RNNSeq2SeqConfig(**kwargs)


def batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 99, (3, 7), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0
    attention_mask[2, 3:] = 0
    input_ids = input_ids.masked_fill(attention_mask == 0, PAD)
    labels = torch.randint(3, 99, (3, 6), generator=g)
    return input_ids, attention_mask, labels


SOURCES = torch.tensor([[5, 17, 23, 42, 8], [61, 9, 33, 70, 12], [44, 90, 15, 27, 53], [31, 6, 88, 19, 74]])
TARGETS = torch.cat([SOURCES.flip(1), torch.full((4, 1), EOS)], dim=1)  # reversed source + </s>


def train(model, steps: int = 100, lr: float = 5e-2) -> list[float]:
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


@pytest.fixture(scope="module", params=VARIANTS, ids=VARIANT_IDS)
def trained(request):
    torch.manual_seed(0)
    model = RNNSeq2SeqForConditionalGeneration(tiny_config(**request.param))
    losses = train(model)
    return model.eval(), losses


# --- attention scoring functions against hand computation --------------------------------------------------------


def _hand_softmax(scores, valid):
    exp = [math.exp(s) if ok else 0.0 for s, ok in zip(scores, valid)]
    return [e / sum(exp) for e in exp]


@pytest.mark.parametrize("kind", ["dot", "bilinear", "additive"])
def test_attention_scores_and_weights_match_hand_computation(kind):
    torch.manual_seed(0)
    H, M, A, S = 3, 3 if kind == "dot" else 2, 4, 4
    s = torch.randn(1, 1, H)  # one decoder state
    h = torch.randn(1, S, M)  # four encoder states, the last one padding
    mask = torch.tensor([[1, 1, 1, 0]])
    if kind == "dot":
        module = DotAttention()
        expected = [sum(s[0, 0, a] * h[0, j, a] for a in range(H)).item() for j in range(S)]
    elif kind == "bilinear":
        module = BilinearAttention(H, M)
        W = module.W.weight  # (H, M)
        expected = [
            sum(s[0, 0, a] * W[a, b] * h[0, j, b] for a in range(H) for b in range(M)).item() for j in range(S)
        ]
    else:
        module = AdditiveAttention(H, M, A)
        W1, W2, v = module.W1.weight, module.W2.weight, module.v.weight[0]  # (A, H), (A, M), (A,)
        expected = []
        for j in range(S):
            total = 0.0
            for k in range(A):
                pre = sum(W1[k, a] * s[0, 0, a] for a in range(H)) + sum(W2[k, b] * h[0, j, b] for b in range(M))
                total += v[k].item() * math.tanh(pre.item())
            expected.append(total)
    with torch.no_grad():
        scores, weights = module(s, h, mask)
    assert scores.shape == weights.shape == (1, 1, S)
    torch.testing.assert_close(scores[0, 0], torch.tensor(expected), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights[0, 0], torch.tensor(_hand_softmax(expected, [1, 1, 1, 0])))
    assert weights[0, 0, 3].item() == 0.0


def test_config_rejects_dot_with_mismatched_sizes():
    with pytest.raises(ValueError, match="dot attention"):
        RNNSeq2SeqConfig(attention_type="dot", encoder_hidden_size=16, hidden_size=48)
    with pytest.raises(ValueError, match="attention_type"):
        RNNSeq2SeqConfig(attention_type="cosine")


# --- model-level properties --------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
def test_padding_never_attended_and_future_never_seen(variant):
    input_ids, attention_mask, labels = batch()
    torch.manual_seed(0)
    model = RNNSeq2SeqForConditionalGeneration(tiny_config(**variant)).eval()
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, output_attentions=True)
    assert out.logits.shape == (3, 6, 99)
    (weights,) = out.cross_attentions  # (B, 1, T, S)
    assert weights.shape == (3, 1, 6, 7)
    assert torch.all(weights.masked_select((attention_mask == 0)[:, None, None, :].expand_as(weights)) == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 1, 6))
    scrambled = input_ids.masked_fill(attention_mask == 0, 55)  # other ids under the padding: same outputs
    torch.testing.assert_close(
        model(input_ids=scrambled, attention_mask=attention_mask, labels=labels).logits, out.logits
    )
    future = labels.clone()
    future[:, 4:] = 7  # decoder inputs 5.. change (labels shifted right): logits 0..4 must not
    changed = model(input_ids=input_ids, attention_mask=attention_mask, labels=future).logits
    torch.testing.assert_close(changed[:, :5], out.logits[:, :5])


def test_label_smoothing_in_loss():
    model = RNNSeq2SeqForConditionalGeneration(tiny_config(label_smoothing=0.2)).eval()
    input_ids, attention_mask, labels = batch()
    out = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
    log_probs = out.logits.log_softmax(-1).view(-1, 99)
    nll = -log_probs.gather(1, labels.view(-1, 1)).squeeze(1)
    torch.testing.assert_close(out.loss, (0.8 * nll - 0.2 * log_probs.mean(-1)).mean())


# --- training and generation -------------------------------------------------------------------------------------


def test_overfit_lowers_the_loss_and_greedy_reproduces_targets(trained):
    model, losses = trained
    assert losses[-1] < 0.1 * losses[0]
    generated = model.generate(SOURCES, attention_mask=torch.ones_like(SOURCES), max_new_tokens=8)
    assert torch.equal(generated[:, 1 : TARGETS.shape[1] + 1], TARGETS)


def test_cached_state_equals_full_recomputation(trained):
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
    assert cache.get_seq_length() == decoder_input_ids.shape[1]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-4)
    cached = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=10, use_cache=True)
    uncached = model.generate(input_ids, attention_mask=attention_mask, max_new_tokens=10, use_cache=False)
    assert torch.equal(cached, uncached)


def test_beam_search(trained):
    model, _ = trained
    mask = torch.ones_like(SOURCES)
    greedy = model.generate(SOURCES, attention_mask=mask, max_new_tokens=8)
    assert torch.equal(model.generate(SOURCES, attention_mask=mask, max_new_tokens=8, num_beams=1), greedy)
    beams = model.generate(SOURCES, attention_mask=mask, max_new_tokens=8, num_beams=4, length_penalty=1.0)
    assert torch.equal(beams[:, 1 : TARGETS.shape[1] + 1], TARGETS)
    input_ids, attention_mask, _ = batch(2)
    no_repeat = model.generate(
        input_ids, attention_mask=attention_mask, max_new_tokens=12, num_beams=3, no_repeat_ngram_size=2
    )
    for row in no_repeat.tolist():
        bigrams = [tuple(row[i : i + 2]) for i in range(len(row) - 1) if PAD not in row[i : i + 2]]
        assert len(bigrams) == len(set(bigrams))


def test_save_load_generate_and_trust_remote_code(trained, tmp_path):
    model, _ = trained
    model.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "modeling_rnn_seq2seq.py").exists()
    mask = torch.ones_like(SOURCES)
    expected = model.generate(SOURCES, attention_mask=mask, max_new_tokens=8, num_beams=2)
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ckpt").eval()
    assert type(loaded) is RNNSeq2SeqForConditionalGeneration
    assert torch.equal(loaded.generate(SOURCES, attention_mask=mask, max_new_tokens=8, num_beams=2), expected)
    if model.config.attention_type != "additive" or model.config.cell_type != "gru":
        return  # one variant is enough for the slow subprocess check

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


def save_word_tokenizer(path) -> None:
    """Whitespace tokenizer over the test vocabulary: "w5 w17" -> [5, 17, </s>]."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": PAD, "<s>": BOS, "</s>": EOS, **{f"w{i}": i for i in range(3, 99)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(path)


def test_visualize_attention_writes_png(tmp_path):
    from toolkit.visualize import visualize_attention

    model = RNNSeq2SeqForConditionalGeneration(tiny_config())
    model.save_pretrained(tmp_path / "run")
    save_word_tokenizer(tmp_path / "run")
    source = " ".join(f"w{i}" for i in SOURCES[1].tolist())
    out = visualize_attention(str(tmp_path / "run"), source, target="w12 w70 w33", out=str(tmp_path / "map.png"))
    assert open(out, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


# --- attention_type "none": the fixed-vector bottleneck ----------------------------------------------------------


@pytest.mark.parametrize("variant", [{"cell_type": "gru"}, {"cell_type": "lstm", "input_feeding": False}])
def test_no_attention_sees_only_the_final_encoder_state(variant):
    torch.manual_seed(0)
    model = RNNSeq2SeqForConditionalGeneration(tiny_config(attention_type="none", **variant)).eval()
    assert not any("attention" in name for name, _ in model.named_parameters())
    input_ids, attention_mask, labels = batch()
    memory = model.get_encoder()(input_ids, attention_mask=attention_mask).last_hidden_state  # (B, S, 2 * 16)
    out = model(encoder_outputs=(memory,), attention_mask=attention_mask, labels=labels, output_attentions=True)
    assert out.logits.shape == (3, 6, 99) and out.cross_attentions is None
    # The summary is the forward state at each sequence's last token and the backward state at its first: every
    # other encoder state may change without changing a single logit.
    last = attention_mask.sum(-1) - 1
    keep = torch.zeros(3, 7, 32, dtype=torch.bool)
    keep[:, 0, 16:] = True
    keep[torch.arange(3), last, :16] = True
    changed = torch.where(keep, memory, torch.randn_like(memory))
    other = model(encoder_outputs=(changed,), attention_mask=attention_mask, labels=labels)
    torch.testing.assert_close(other.logits, out.logits)
    summary = memory.clone()
    summary[0, last[0], 3] += 1.0  # the forward summary of sentence 0 moves: its logits move, the others stay
    moved = model(encoder_outputs=(summary,), attention_mask=attention_mask, labels=labels).logits
    assert not torch.allclose(moved[0], out.logits[0])
    torch.testing.assert_close(moved[1:], out.logits[1:])


def test_no_attention_trains_generates_greedy_and_beam_and_reloads(tmp_path):
    torch.manual_seed(0)
    model = RNNSeq2SeqForConditionalGeneration(tiny_config(attention_type="none"))
    losses = train(model, steps=150)
    assert losses[-1] < 0.1 * losses[0]
    model.eval()
    mask = torch.ones_like(SOURCES)
    greedy = model.generate(SOURCES, attention_mask=mask, max_new_tokens=8)
    assert torch.equal(greedy[:, 1 : TARGETS.shape[1] + 1], TARGETS)
    uncached = model.generate(SOURCES, attention_mask=mask, max_new_tokens=8, use_cache=False)
    assert torch.equal(uncached, greedy)
    beams = model.generate(SOURCES, attention_mask=mask, max_new_tokens=8, num_beams=4)
    assert torch.equal(beams[:, 1 : TARGETS.shape[1] + 1], TARGETS)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.config.attention_type == "none"
    assert torch.equal(loaded.generate(SOURCES, attention_mask=mask, max_new_tokens=8, num_beams=4), beams)


def test_visualize_attention_refuses_a_model_without_attention(tmp_path):
    model = RNNSeq2SeqForConditionalGeneration(tiny_config(attention_type="none"))
    model.save_pretrained(tmp_path / "run")
    save_word_tokenizer(tmp_path / "run")
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.cli", "visualize-attention", "--model", str(tmp_path / "run"), "--source",
         "w5 w17", "--out", str(tmp_path / "map.png")],
        capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "attention_type 'none'" in lines[0] and str(tmp_path / "run") in lines[0]
    assert not (tmp_path / "map.png").exists()
