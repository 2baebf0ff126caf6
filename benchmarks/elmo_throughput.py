"""Training-step throughput of the toolkit ELMo against a plain reference biLM written here, in the same run.

The reference is what one would write by hand: a token embedder, two independent `nn.LSTM(num_layers=L,
proj_size=P)` stacks (the backward one on the flipped sequence), a full softmax applied to each direction and the mean
of the two cross-entropies. With `--token_embedder char_cnn` the reference embeds every token position with the same
character CNN (no de-duplication); with `word` it uses a lookup table. The toolkit model has the same sizes (plus its
residual connection). Clipping is off in both (the fused LSTM path), as the reference cannot clip.

Words follow a Zipf distribution over the vocabulary (as running text does); each word id has a fixed random
spelling, so character ids are consistent across the batch.

    python benchmarks/elmo_throughput.py                      # both token embedders, CPU fp32 (and CUDA bf16 autocast)
    python benchmarks/elmo_throughput.py --token_embedder word --steps 10

Prints tokens/s of a full training step (forward, backward, Adam step) for each model and the ratio toolkit/reference
measured in the same run (rounds are interleaved to share the machine's noise).
"""

import argparse
import contextlib
import json
import os
import sys
import time

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from toolkit.models.elmo import ElmoConfig, ElmoForLanguageModeling, character_cnn_plan  # noqa: E402


class PlainCharCNN(nn.Module):
    def __init__(self, filters, char_dim, num_highway, out_dim):
        super().__init__()
        self.embed = nn.Embedding(262, char_dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(char_dim, n, w) for w, n in filters)
        total = sum(n for _, n in filters)
        self.highway = nn.ModuleList(nn.Linear(total, 2 * total) for _ in range(num_highway))
        self.proj = nn.Linear(total, out_dim)

    def forward(self, char_ids):
        b, t, c = char_ids.shape
        x = self.embed(char_ids.view(b * t, c)).transpose(1, 2)
        x = torch.cat([F.relu(conv(x).amax(-1)) for conv in self.convs], dim=-1)
        for layer in self.highway:
            h, g = layer(x).chunk(2, -1)
            g = torch.sigmoid(g)
            x = g * F.relu(h) + (1 - g) * x
        return self.proj(x).view(b, t, -1)


class PlainBiLM(nn.Module):
    """Reference: two independent projected LSTM stacks and a full softmax."""

    def __init__(self, cfg: ElmoConfig):
        super().__init__()
        p = cfg.projection_dim
        if cfg.token_embedder == "char_cnn":
            self.embed = PlainCharCNN(cfg.char_cnn_filters, cfg.char_embedding_dim, cfg.num_highway_layers, p)
        else:
            self.embed = nn.Embedding(cfg.vocab_size, p)
        self.char = cfg.token_embedder == "char_cnn"
        self.fwd = nn.LSTM(p, cfg.cell_size, num_layers=cfg.num_layers, proj_size=p, batch_first=True)
        self.bwd = nn.LSTM(p, cfg.cell_size, num_layers=cfg.num_layers, proj_size=p, batch_first=True)
        self.softmax = nn.Linear(p, cfg.vocab_size)

    def forward(self, input_ids, char_ids):
        x = self.embed(char_ids if self.char else input_ids)  # (B, T, P)
        f, _ = self.fwd(x)
        b, _ = self.bwd(x.flip(1))
        b = b.flip(1)
        v = self.softmax.out_features
        fwd_loss = F.cross_entropy(self.softmax(f[:, :-1]).reshape(-1, v), input_ids[:, 1:].reshape(-1))
        bwd_loss = F.cross_entropy(self.softmax(b[:, 1:]).reshape(-1, v), input_ids[:, :-1].reshape(-1))
        return 0.5 * (fwd_loss + bwd_loss)


def make_batch(batch_size, seq_len, vocab_size, max_chars, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    ranks = torch.arange(1, vocab_size + 1, dtype=torch.float)
    zipf = 1.0 / ranks
    input_ids = torch.multinomial(zipf / zipf.sum(), batch_size * seq_len, replacement=True, generator=g)
    input_ids = input_ids.view(batch_size, seq_len)
    # a fixed random spelling (3..12 letters) per word id, in bilm-tf character ids
    lengths = torch.randint(3, 13, (vocab_size,), generator=g)
    letters = torch.randint(ord("a") + 1, ord("z") + 2, (vocab_size, max_chars), generator=g)
    table = torch.full((vocab_size, max_chars), 261)
    table[:, 0] = 257
    for i in range(vocab_size):
        n = int(lengths[i])
        table[i, 1 : n + 1] = letters[i, :n]
        table[i, n + 1] = 258
    char_ids = table[input_ids]
    return input_ids.to(device), char_ids.to(device)


def time_steps(step, steps, device):
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(token_embedder, device, dtype, args):
    cfg = ElmoConfig(
        vocab_size=args.vocab_size,
        token_embedder=token_embedder,
        char_cnn_filters=[[1, 32], [2, 32], [3, 64], [4, 128], [5, 256]],
        num_highway_layers=1,
        num_layers=2,
        cell_size=args.cell_size,
        projection_dim=args.projection_dim,
        cell_clip=None,
        proj_clip=None,
        dropout=0.0,
    )
    torch.manual_seed(0)
    toolkit_model = ElmoForLanguageModeling(cfg).to(device)
    reference = PlainBiLM(cfg).to(device)
    input_ids, char_ids = make_batch(args.batch_size, args.seq_len, cfg.vocab_size, 50, device=device)
    autocast = (
        torch.autocast(device_type="cuda", dtype=torch.bfloat16) if dtype == "bf16" else contextlib.nullcontext()
    )

    def make_step(model, fn):
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)

        def step():
            with autocast:
                loss = fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        return step

    # as the recipe's collator does on the host, inside the timed step: the char CNN's distinct words (the device
    # then never reports them back)
    host_chars = char_ids.cpu()

    def plan():
        if token_embedder != "char_cnn":
            return {}
        return {"char_plan": tuple(t.to(device, non_blocking=True) for t in character_cnn_plan(host_chars, cfg))}

    steps = {
        "toolkit": make_step(
            toolkit_model,
            lambda: (
                toolkit_model(
                    input_ids=input_ids, char_ids=char_ids, labels=input_ids, return_logits=False, **plan()
                ).loss
            ),
        ),
        "reference": make_step(reference, lambda: reference(input_ids, char_ids)),
    }
    for step in steps.values():  # warm-up
        for _ in range(args.warmup):
            step()
    elapsed = {name: 0.0 for name in steps}
    round_ratios = []
    for _ in range(args.rounds):  # interleave the two models so both see the same machine load
        times = {name: time_steps(step, args.steps, device) for name, step in steps.items()}
        for name, seconds in times.items():
            elapsed[name] += seconds
        round_ratios.append(times["reference"] / times["toolkit"])
    tokens = args.batch_size * args.seq_len * args.steps * args.rounds
    result = {name: tokens / seconds for name, seconds in elapsed.items()}
    round_ratios.sort()
    n_params = sum(p.numel() for p in toolkit_model.elmo.parameters())
    return {
        "device": device,
        "dtype": dtype,
        "token_embedder": token_embedder,
        "toolkit_tokens_per_s": round(result["toolkit"], 1),
        "reference_tokens_per_s": round(result["reference"], 1),
        "ratio": round(result["toolkit"] / result["reference"], 3),
        "median_round_ratio": round(round_ratios[len(round_ratios) // 2], 3),
        "biLM_params_without_softmax": n_params,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--token_embedder", choices=["char_cnn", "word", "both"], default="both")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seq_len", type=int, default=20)
    parser.add_argument("--vocab_size", type=int, default=10000)
    parser.add_argument("--cell_size", type=int, default=512)
    parser.add_argument("--projection_dim", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    embedders = ["char_cnn", "word"] if args.token_embedder == "both" else [args.token_embedder]
    settings = [("cpu", "fp32")]
    if torch.cuda.is_available():
        settings = [("cuda", "fp32"), ("cuda", "bf16")]
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), **vars(args)}))
    for device, dtype in settings:
        for embedder in embedders:
            print(json.dumps(run(embedder, device, dtype, args)), flush=True)


if __name__ == "__main__":
    main()
