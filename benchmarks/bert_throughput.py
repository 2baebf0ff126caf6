"""MLM training throughput: the toolkit's BERT vs transformers' `BertForMaskedLM`, same run, same batches.

Both models get the same configuration, the same tokens and MLM masks, the same optimizer; steps alternate between
the two models so that machine load affects both equally. Each gets the batch its training script builds: HF's
run_mlm an all-ones attention mask, the toolkit recipe none for packed blocks plus the masked positions for the sparse
head. Prints tokens/s of each and the ratio.

    python benchmarks/bert_throughput.py --size mini --seq_len 128 --batch_size 32 --steps 10
    python benchmarks/bert_throughput.py --size base --device cuda --bf16 --batch_size 128 --steps 30 [--compile]

On CUDA it also prints peak memory and the fraction of the dense bf16 peak (989 TFLOP/s, H100/H200 SXM) reached,
counting 6 * N * tokens (N = parameters used in matmuls, the tied decoder counted once, position/segment tables not)
plus attention score/value matmuls 12 * layers * tokens * seq_len * hidden, for the *dense* model: sparse
prediction gets credit as speed, not as extra FLOPs.
"""

import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from transformers import BertConfig, BertForMaskedLM  # noqa: E402

from toolkit.models.bert import ToolkitBertConfig, ToolkitBertForMaskedLM  # noqa: E402

SIZES = {
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
    "mini": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}
PEAK_BF16_FLOPS = 989e12


def make_batches(n, batch_size, seq_len, vocab_size, mlm_probability, seed):
    """Random token ids with [CLS]=101/[SEP]=102 ends and BERT 80/10/10 masking (mask id 103)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        ids = torch.randint(1000, vocab_size, (batch_size, seq_len), generator=g)
        ids[:, 0], ids[:, -1] = 101, 102
        selected = torch.rand(ids.shape, generator=g) < mlm_probability
        selected[:, 0] = selected[:, -1] = False
        labels = torch.where(selected, ids, -100)
        action = torch.rand(ids.shape, generator=g)
        inputs = torch.where(selected & (action < 0.8), 103, ids)
        random_ids = torch.randint(1000, vocab_size, ids.shape, generator=g)
        inputs = torch.where(selected & (action >= 0.8) & (action < 0.9), random_ids, inputs)
        attention_mask = torch.ones_like(ids)
        batches.append(dict(input_ids=inputs, attention_mask=attention_mask, labels=labels))
    return batches


def matmul_params(config):
    h, L, i, V = config.hidden_size, config.num_hidden_layers, config.intermediate_size, config.vocab_size
    return L * (4 * h * h + 2 * h * i) + h * h + V * h  # blocks + MLM transform + decoder


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=sorted(SIZES), default="mini")
    p.add_argument("--seq_len", type=int, default=128)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--steps", type=int, default=10, help="timed steps per model")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model")
    p.add_argument("--vocab_size", type=int, default=30522)
    p.add_argument("--mlm_probability", type=float, default=0.15)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (weights stay fp32)")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--no_sparse", action="store_true", help="toolkit: dense MLM head (ablation)")
    p.add_argument("--pad_vocab", type=int, default=None, help="toolkit pad_vocab_to_multiple_of (default 64 on cuda)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    dims = dict(SIZES[args.size], vocab_size=args.vocab_size, max_position_embeddings=max(512, args.seq_len))
    hf_config = BertConfig(**dims, attn_implementation="sdpa")
    pad_vocab = args.pad_vocab if args.pad_vocab is not None else (64 if device.type == "cuda" else 1)
    tk_config = ToolkitBertConfig(
        **dims, sparse_prediction=not args.no_sparse, pad_vocab_to_multiple_of=pad_vocab, attn_implementation="sdpa"
    )
    models = {
        "hf": BertForMaskedLM(hf_config).to(device).train(),
        "toolkit": ToolkitBertForMaskedLM(tk_config).to(device).train(),
    }
    fused = device.type == "cuda"
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-4, fused=fused) for k, m in models.items()}
    steppers = {k: (torch.compile(m) if args.compile else m) for k, m in models.items()}
    batches = make_batches(4, args.batch_size, args.seq_len, args.vocab_size, args.mlm_probability, args.seed)
    # what each training script feeds its model: HF run_mlm an all-ones attention mask; the toolkit recipe no mask
    # for packed blocks, and the masked positions for the sparse head (neither then waits for the device)
    toolkit_batches = [
        {"input_ids": b["input_ids"], "labels": b["labels"]}
        | ({} if args.no_sparse else {"masked_positions": (b["labels"].view(-1) != -100).nonzero().view(-1)})
        for b in batches
    ]
    inputs = {
        "hf": [{k: v.to(device) for k, v in b.items()} for b in batches],
        "toolkit": [{k: v.to(device) for k, v in b.items()} for b in toolkit_batches],
    }

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def train_step(name, batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            loss = steppers[name](**batch).loss
        loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)
        return loss

    elapsed = {k: 0.0 for k in models}
    peak = {k: 0 for k in models}
    last_loss = {}
    for step in range(args.warmup + args.steps):
        order = list(models) if step % 2 == 0 else list(models)[::-1]  # alternate who goes first
        for name in order:
            batch = inputs[name][step % len(batches)]
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync()
            t0 = time.perf_counter()
            last_loss[name] = train_step(name, batch)
            sync()
            if step >= args.warmup:
                elapsed[name] += time.perf_counter() - t0
            if device.type == "cuda":
                peak[name] = max(peak[name], torch.cuda.max_memory_allocated())

    tokens = args.steps * args.batch_size * args.seq_len
    tps = {k: tokens / elapsed[k] for k in models}
    threads = torch.get_num_threads()
    print(
        f"size={args.size} seq_len={args.seq_len} batch_size={args.batch_size} steps={args.steps} "
        f"device={device} bf16={args.bf16} compile={args.compile} sparse={not args.no_sparse} threads={threads}"
    )
    flops_per_token = (
        6 * matmul_params(hf_config) + 12 * hf_config.num_hidden_layers * args.seq_len * hf_config.hidden_size
    )
    for k in models:
        line = f"{k:8s} {tps[k]:10.0f} tokens/s   last loss {last_loss[k].item():.3f}"
        if device.type == "cuda":
            mfu = tps[k] * flops_per_token / PEAK_BF16_FLOPS
            line += f"   peak mem {peak[k] / 2**30:.2f} GiB   {100 * mfu:.1f}% of dense bf16 peak"
        print(line)
    print(f"ratio toolkit/hf: {tps['toolkit'] / tps['hf']:.2f}x")
    return tps


if __name__ == "__main__":
    main()
