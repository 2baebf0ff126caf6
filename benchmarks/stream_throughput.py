"""Throughput of the streaming pretraining data pipeline alone (stream -> tokenize -> pack -> shuffle -> mask ->
batch, `toolkit/data/streaming.py`) in tokens/s for one worker, against the raw fast-tokenizer speed on the same
rows (`encode_batch`; and `encode_batch_fast`, the pipeline's own call: the same ids without character offsets), both
in this process on one core, alternating. Also the
time a resume takes to produce its first batch at an early and a late position of the same stream.

    python benchmarks/stream_throughput.py                                  # text made from the demo corpus
    python benchmarks/stream_throughput.py --train_file corpus.txt --tokenizer outputs/bert-quickstart
    python benchmarks/stream_throughput.py --make_corpus_mb 1000 --corpus /tmp/big.txt   # only writes the corpus

`--make_corpus_mb` writes a corpus of that size (the demo corpus's paragraphs, shuffled again for every copy) for
the scale check in benchmarks/RESULTS.md; never commit it.
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from transformers import AutoTokenizer  # noqa: E402

from toolkit.data import train_wordpiece  # noqa: E402
from toolkit.data.demo import demo_data_files  # noqa: E402
from toolkit.data.mlm import DataCollatorForMLM  # noqa: E402
from toolkit.data.streaming import PackedStream, Packer, TextStream, fresh_position  # noqa: E402


def demo_paragraphs() -> list[str]:
    with open(demo_data_files("corpus")["train"], encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def make_corpus(path: str, megabytes: float, seed: int = 0) -> None:
    """Paragraphs of the demo corpus, blank-line separated, reshuffled per copy, until `megabytes` are written."""
    paragraphs, rng, written = demo_paragraphs(), random.Random(seed), 0
    with open(path, "w", encoding="utf-8") as f:
        while written < megabytes * 1e6:
            rng.shuffle(paragraphs)
            chunk = "\n\n".join(paragraphs) + "\n\n"
            f.write(chunk)
            written += len(chunk.encode("utf-8"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_file", help="txt/jsonl/parquet file or folder (default: 20 MB from the demo text)")
    parser.add_argument("--tokenizer", help="tokenizer folder (default: WordPiece, 30522, trained on 20k rows)")
    parser.add_argument("--max_seq_length", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--shuffle_buffer_size", type=int, default=10000)
    parser.add_argument("--tokens", type=float, default=3e6, help="tokens to time in each measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--make_corpus_mb", type=float, help="only write a corpus of this size to --corpus")
    parser.add_argument("--corpus", help="path for --make_corpus_mb")
    args = parser.parse_args(argv)
    if args.make_corpus_mb:
        make_corpus(args.corpus, args.make_corpus_mb)
        print(f"wrote {os.path.getsize(args.corpus) / 1e6:.0f} MB to {args.corpus}")
        return
    path = args.train_file
    if path is None:
        path = os.path.join(tempfile.mkdtemp(), "corpus.txt")
        make_corpus(path, 20)
    source = TextStream(
        [path] if os.path.isfile(path) else sorted(os.path.join(path, n) for n in os.listdir(path)),
        "--train_file",
        "text",
        True,
        1 << 20,
        20000,
    )
    if args.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        tokenizer = train_wordpiece(lambda: (b["text"] for b in source.iter(1000)), vocab_size=30522)
    collator = DataCollatorForMLM(
        tokenizer, 0.15, False, 0, None, return_masked_positions=True, omit_unpadded_attention_mask=True
    )
    packer = Packer(tokenizer, args.max_seq_length)

    def raw_rate(method: str = "encode_batch") -> float:
        reader, tokens, seconds = source.reader(0), 0, 0.0
        shard = 0
        while tokens < args.tokens:
            texts, _ = reader.read(256)
            if not texts:
                shard = (shard + 1) % len(source.shards)
                reader = source.reader(shard)
                continue
            t0 = time.perf_counter()
            encoded = getattr(tokenizer.backend_tokenizer, method)(texts, add_special_tokens=False)
            tokens += sum(len(e.ids) for e in encoded)
            seconds += time.perf_counter() - t0
        return tokens / seconds

    def pipeline_rate() -> float:
        stream = PackedStream(source, packer, 0, args.shuffle_buffer_size, 0, 1)
        tokens, features = 0, []
        t0 = time.perf_counter()
        for example, position in stream.iterate(fresh_position()):
            features.append(example)
            if len(features) == args.batch_size:
                batch = collator(features)
                tokens += sum(len(f["input_ids"]) - 2 for f in features)  # text tokens, as counted for the raw rate
                features = []
            if tokens >= args.tokens and position["skip"] == 0:
                break  # at a window's end: every example tokenized so far was also batched
        del batch
        return tokens / (time.perf_counter() - t0)

    def resume_seconds(batches: int) -> float:
        stream = PackedStream(source, packer, 0, args.shuffle_buffer_size, 0, 1)
        run = stream.iterate(fresh_position())
        for _ in range(batches * args.batch_size - 1):
            next(run)
        position = json.loads(json.dumps(next(run)[1]))  # as a checkpoint stores it
        t0 = time.perf_counter()
        run = PackedStream(source, packer, 0, args.shuffle_buffer_size, 0, 1).iterate(position)
        collator([next(run)[0] for _ in range(args.batch_size)])
        return time.perf_counter() - t0

    raw, raw_fast, pipe = [], [], []
    has_fast = hasattr(tokenizer.backend_tokenizer, "encode_batch_fast")
    for _ in range(args.rounds):
        raw.append(raw_rate())
        if has_fast:
            raw_fast.append(raw_rate("encode_batch_fast"))
        pipe.append(pipeline_rate())
    result = {
        "file": os.path.basename(path),
        "shards": len(source.shards),
        "raw_tokenizer_tokens_per_s": round(max(raw)),
        "raw_tokenizer_fast_tokens_per_s": round(max(raw_fast)) if raw_fast else None,
        "pipeline_tokens_per_s_per_worker": round(max(pipe)),
        "pipeline_over_raw": round(max(pipe) / max(raw), 3),
        "resume_first_batch_s_at_batch_10": round(resume_seconds(10), 3),
        "resume_first_batch_s_at_batch_200": round(resume_seconds(200), 3),
        "max_seq_length": args.max_seq_length,
        "shuffle_buffer_size": args.shuffle_buffer_size,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
