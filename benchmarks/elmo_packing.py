"""Does packing pay in the ELMo classifier? Its share of a training step, and the step without it, on SST-2 batches.

`ElmoForSequenceClassification` packs twice: each biLM LSTM layer gets `pack_padded_sequence` when the batch has
padding, and so does the task BiLSTM. This script trains the classifier (gutenberg_tiny sizes: char CNN, 2 x 512/128
LSTMs, fused kernel; random init; `finetune_classification.py`'s batches: 32 random SST-2 training sentences padded to
the longest) in three ways, alternating step by step in one process:

- `packed`: the model as shipped;
- `bilm_unpacked`: the biLM LSTMs run over the padded tensor (the task BiLSTM stays packed). The forward stack reads
  real words first and the backward stack reads each sentence reversed within its length, so the padding only ever
  follows the real words and the outputs at real positions are the same; the logits are checked to be equal;
- the share of the `packed` step spent in packing and unpacking (the `pack_padded_sequence` / `pad_packed_sequence`
  calls with their sorting and unsorting, and the backward of those gathers), from the PyTorch profiler.

    python benchmarks/elmo_packing.py --steps 20                    # frozen biLM (the recipe's default)
    python benchmarks/elmo_packing.py --steps 20 --full_finetune    # biLM trained too
"""

import argparse
import contextlib
import copy
import csv
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import toolkit.models.elmo.modeling_elmo as modeling_elmo  # noqa: E402
from toolkit.models.elmo import ElmoConfig, ElmoForSequenceClassification, ElmoTokenizerFast  # noqa: E402

PACK_REGIONS = ("elmo_pack_padded_sequence", "elmo_pad_packed_sequence")  # forward, including sort/unsort
PACK_BACKWARD = ("evaluate_function: PackPaddedSequenceBackward0", "evaluate_function: IndexSelectBackward0")


@contextlib.contextmanager
def labelled_packing():
    """Within the block, the model's pack/unpack calls are profiler regions (inclusive of their sort and unsort)."""
    from torch.profiler import record_function

    originals = modeling_elmo.pack_padded_sequence, modeling_elmo.pad_packed_sequence

    def labelled(name, fn):
        def call(*args, **kwargs):
            with record_function(name):
                return fn(*args, **kwargs)

        return call

    modeling_elmo.pack_padded_sequence = labelled(PACK_REGIONS[0], originals[0])
    modeling_elmo.pad_packed_sequence = labelled(PACK_REGIONS[1], originals[1])
    try:
        yield
    finally:
        modeling_elmo.pack_padded_sequence, modeling_elmo.pad_packed_sequence = originals


@contextlib.contextmanager
def bilm_without_packing():
    """Within the block, biLM LSTM layers ignore `lengths` (run over the padded tensor)."""
    fused = modeling_elmo.ElmoLstmLayer._fused
    modeling_elmo.ElmoLstmLayer._fused = lambda self, x, lengths, state: fused(self, x, None, state)
    try:
        yield
    finally:
        modeling_elmo.ElmoLstmLayer._fused = fused


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train_file", default="../shared/data/sst2/train.tsv")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--full_finetune", action="store_true", help="train the biLM too (default: frozen, as the recipe)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)

    with open(args.train_file, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    sentences, labels = [r["sentence"] for r in rows], [int(r["label"]) for r in rows]
    tokenizer = ElmoTokenizerFast.train_from_iterator(sentences, vocab_size=30000)
    config = ElmoConfig(
        vocab_size=len(tokenizer), token_embedder="char_cnn", char_embedding_dim=16,
        char_cnn_filters=[[1, 32], [2, 32], [3, 64], [4, 128], [5, 256]], num_highway_layers=1, num_layers=2,
        cell_size=512, projection_dim=128, cell_clip=None, proj_clip=None, dropout=0.1,
        freeze_bilm=not args.full_finetune, num_labels=2,
    )  # fmt: skip
    base = ElmoForSequenceClassification(config)
    models = {"packed": base, "bilm_unpacked": copy.deepcopy(base)}
    models = {k: m.to(device).train() for k, m in models.items()}
    optimizers = {
        k: torch.optim.AdamW([q for q in m.parameters() if q.requires_grad], lr=1e-3) for k, m in models.items()
    }
    contexts = {"packed": contextlib.nullcontext, "bilm_unpacked": bilm_without_packing}

    rng = random.Random(args.seed)
    batches = []
    for _ in range(args.warmup + args.steps):
        idx = rng.sample(range(len(sentences)), args.batch_size)
        batch = tokenizer([sentences[i] for i in idx], padding=True, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "char_ids", "attention_mask")}
        batch["labels"] = torch.tensor([labels[i] for i in idx], device=device)
        batches.append(batch)

    with torch.no_grad():
        for m in models.values():
            m.eval()
        ref = models["packed"](**batches[0]).logits
        with bilm_without_packing():
            got = models["bilm_unpacked"](**batches[0]).logits
        torch.testing.assert_close(got, ref)
        print(f"parity bilm_unpacked vs packed: max |logit diff| {(got - ref).abs().max().item():.2e}")
        for m in models.values():
            m.train()

    def step(name, batch):
        with contexts[name]():
            loss = models[name](**batch).loss
            loss.backward()
        optimizers[name].step()
        optimizers[name].zero_grad(set_to_none=True)

    elapsed = {k: 0.0 for k in models}
    for i, batch in enumerate(batches):
        for name in list(models) if i % 2 == 0 else list(models)[::-1]:
            t0 = time.perf_counter()
            step(name, batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= args.warmup:
                elapsed[name] += time.perf_counter() - t0

    from torch.profiler import ProfilerActivity, profile

    with labelled_packing(), profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        for batch in batches[:3]:
            step("packed", batch)
        total = 1e6 * (time.perf_counter() - t0)  # microseconds, as the profiler counts
    events = {e.key: e.cpu_time_total for e in prof.key_averages()}
    packing = sum(events.get(k, 0) for k in PACK_REGIONS + PACK_BACKWARD)

    real = sum(int(b["attention_mask"].sum()) for b in batches[args.warmup :])
    padded = sum(b["attention_mask"].numel() for b in batches[args.warmup :])
    print(
        f"ELMo classifier, biLM {'fine-tuned' if args.full_finetune else 'frozen'}, batch {args.batch_size}, "
        f"{args.steps} steps, device={device}, threads={torch.get_num_threads()}, real words {real} of {padded} "
        f"padded ({100 * real / padded:.0f}%)"
    )
    for name in models:
        print(f"{name:14s} {real / elapsed[name]:8.0f} real words/s  {1000 * elapsed[name] / args.steps:7.1f} ms/step")
    print(f"ratio packed/bilm_unpacked: {elapsed['bilm_unpacked'] / elapsed['packed']:.2f}x")
    print(
        f"pack/unpack: at most {100 * packing / total:.1f}% of the packed step's time (profiler, 3 steps, inclusive)"
    )


if __name__ == "__main__":
    main()
