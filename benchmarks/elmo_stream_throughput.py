"""Throughput of the streaming ELMo data pipeline alone (stream -> words -> windows -> per-row lanes -> vocabulary
and character ids -> the recipe's collator, `toolkit/data/elmo_streaming.py`) in words/s for one worker, against the
raw fast tokenizer on the same rows (`encode_batch`, which the pipeline calls for the word offsets), alternating in
this process on one core. Also the time a resume takes to produce its first batch at batch 10 and at batch 200 of the
same lane stream.

    python benchmarks/elmo_stream_throughput.py                 # 20 MB made from the demo corpus, quickstart sizes
    python benchmarks/elmo_stream_throughput.py --train_file corpus/ --tokenizer outputs/elmo-quickstart
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from transformers import AutoTokenizer  # noqa: E402

from benchmarks.stream_throughput import make_corpus  # noqa: E402
from toolkit.data.elmo_streaming import LaneDataset, WindowCollator, WindowPacker  # noqa: E402
from toolkit.data.streaming import TextStream  # noqa: E402
from toolkit.models.elmo import ElmoConfig, ElmoForLanguageModeling, ElmoTokenizerFast  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train_file", help="txt/jsonl/parquet file or folder (default: 20 MB from the demo text)")
    parser.add_argument("--tokenizer", help="ElmoTokenizerFast folder (default: 10000 words trained on 20k rows)")
    parser.add_argument("--window_length", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--segment_windows", type=int, default=8)
    parser.add_argument("--words", type=float, default=1e6, help="words to time in each measurement")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    path = args.train_file
    if path is None:
        path = os.path.join(tempfile.mkdtemp(), "corpus.txt")
        make_corpus(path, 20)
    files = [path] if os.path.isfile(path) else sorted(os.path.join(path, n) for n in os.listdir(path))
    source = TextStream(files, "--train_file", "text", True, 1 << 19, 20000)
    if args.tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    else:
        tokenizer = ElmoTokenizerFast.train_from_iterator(
            (b["text"] for b in source.iter(1000)), vocab_size=10000, min_frequency=2
        )
    # the recipe's collator (adaptive-softmax and character-CNN plans made on the host) for a quickstart-size model
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes"))
    from pretrain_elmo import PlanCollator

    config = ElmoConfig(
        vocab_size=len(tokenizer),
        char_cnn_filters=[[1, 32], [2, 32], [3, 64], [4, 128], [5, 256]],
        max_characters_per_token=tokenizer.max_characters_per_token,
        cell_size=256,
        projection_dim=128,
        softmax_type="adaptive",
        adaptive_cutoffs=[1000, 3000],
    )
    collator = WindowCollator(tokenizer, True, PlanCollator(ElmoForLanguageModeling(config)))
    packer = WindowPacker(tokenizer, args.window_length)
    lanes = args.batch_size

    def dataset():
        return LaneDataset(source, packer, collator, lanes, args.segment_windows, 0, True, 0, 1, 1)

    def raw_rate() -> float:
        reader, words, seconds, shard = source.reader(0), 0, 0.0, 0
        while words < args.words:
            texts, _ = reader.read(256)
            if not texts:
                shard = (shard + 1) % len(source.shards)
                reader = source.reader(shard)
                continue
            t0 = time.perf_counter()
            encoded = tokenizer.backend_tokenizer.encode_batch(texts, add_special_tokens=False)
            words += sum(len(e.ids) + 2 for e in encoded)  # + <s> </s>, as the pipeline counts
            seconds += time.perf_counter() - t0
        return words / seconds

    def pipeline_rate() -> float:
        words, t0 = 0, time.perf_counter()
        for batch, _ in dataset().iterate(0, None):
            words += batch["input_ids"].numel()  # forward windows: each word once
            if words >= args.words:
                break
        return words / (time.perf_counter() - t0)

    def resume_seconds(batches: int) -> float:
        run = dataset().iterate(0, None)
        for _ in range(batches - 1):
            next(run)
        position = json.loads(json.dumps(next(run)[1]["position"]))  # as a checkpoint stores it
        t0 = time.perf_counter()
        next(dataset().iterate(0, position))
        return time.perf_counter() - t0

    raw, pipe = [], []
    for _ in range(args.rounds):
        raw.append(raw_rate())
        pipe.append(pipeline_rate())
    result = {
        "file": os.path.basename(path),
        "shards": len(source.shards),
        "lanes": lanes,
        "raw_tokenizer_words_per_s": round(max(raw)),
        "pipeline_words_per_s_per_worker": round(max(pipe)),
        "pipeline_over_raw": round(max(pipe) / max(raw), 3),
        "resume_first_batch_s_at_batch_10": round(resume_seconds(10), 3),
        "resume_first_batch_s_at_batch_200": round(resume_seconds(200), 3),
        "window_length": args.window_length,
        "segment_windows": args.segment_windows,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
