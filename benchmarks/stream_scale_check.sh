#!/usr/bin/env bash
# Scale check of pretrain_bert --streaming (benchmarks/RESULTS.md): the same fixed-step run on a ~100 MB and a ~1 GB
# generated corpus (demo paragraphs, reshuffled per copy; written under $DIR, never committed); prints the peak
# resident memory of each (GNU time; DataLoader workers 0, so the whole pipeline is in the one process).
# RECIPE=elmo: the same for pretrain_elmo --streaming (16 lanes, each reading its own shards, carried states).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${DIR:-/tmp/stream_scale}
PY=${PY:-python}
STEPS=${STEPS:-60}
mkdir -p "$DIR"
for mb in 100 1000; do
  [ -f "$DIR/corpus_${mb}mb.txt" ] || $PY benchmarks/stream_throughput.py --make_corpus_mb $mb --corpus "$DIR/corpus_${mb}mb.txt"
done
for mb in 100 1000; do
  if [ "${RECIPE:-bert}" = elmo ]; then
    rm -rf "$DIR/elmo_run_${mb}"
    /usr/bin/time -f "corpus ${mb} MB: peak RSS %M KiB, wall %e s" $PY recipes/pretrain_elmo.py --streaming \
      --train_file "$DIR/corpus_${mb}mb.txt" --output_dir "$DIR/elmo_run_${mb}" --max_steps "$STEPS" \
      --vocab_size 8000 --tokenizer_train_samples 20000 --max_eval_samples 200 --char_cnn_widths 1 2 3 \
      --char_cnn_num_filters 32 32 64 --num_highway_layers 1 --cell_size 128 --projection_dim 64 \
      --window_length 20 --per_device_train_batch_size 16 --per_device_eval_batch_size 16 --eval_steps 0 \
      --save_steps 30 --logging_steps 20 --dataloader_num_workers 0 \
      2>&1 | grep -E "peak RSS|data_wait_fraction|vocabulary" | tail -3
    continue
  fi
  rm -rf "$DIR/run_${mb}"
  /usr/bin/time -f "corpus ${mb} MB: peak RSS %M KiB, wall %e s" $PY recipes/pretrain_bert.py --streaming \
    --train_file "$DIR/corpus_${mb}mb.txt" --output_dir "$DIR/run_${mb}" --max_steps "$STEPS" --vocab_size 8000 \
    --tokenizer_train_samples 20000 --max_eval_samples 200 --hidden_size 64 --num_hidden_layers 2 \
    --num_attention_heads 2 --intermediate_size 128 --max_seq_length 128 --per_device_train_batch_size 16 \
    --eval_steps 0 --save_steps 30 --logging_steps 20 --shuffle_buffer_size 10000 --dataloader_num_workers 0 \
    2>&1 | grep -E "peak RSS|data_wait_fraction|streaming" | tail -3
done
