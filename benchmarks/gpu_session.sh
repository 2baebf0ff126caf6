#!/usr/bin/env bash
# Everything a short GPU session (the device tool: ~10 minutes of one H100/H200) should run, in one call:
#   1. quality runs on the shared datasets, in parallel, each with a wall-clock budget (bf16, single_gpu.yaml):
#      Multi30k de->en with the small Transformer and the RNN with dot / bilinear / additive attention; DialogSum with
#      the small Transformer from scratch; BERT-mini and ELMo pretrained on the Gutenberg corpus, then fine-tuned on
#      SST-2 (next to the scratch BiLSTM with the same settings) and, for BERT, used as the DialogSum encoder;
#   2. at the same time, the recipe x accelerate-config matrix (benchmarks/gpu_check.sh);
#   3. last, alone on the GPU, the throughput benchmarks (toolkit vs transformers BERT, toolkit ELMo vs a plain biLM).
# PHASES=speed runs benchmarks/gpu_speed.sh instead (fine-tuning, MLM eager + compiled, ELMo, the config checks never
# seen on a GPU), with the wheels, data and DeepSpeed set up here; its summary lands in $OUT/speed_summary.txt.
# Small outputs (logs, metrics, predictions, model cards, attention maps) are re-packed into $OUT/results.tar.gz
# every 30 s, so a run stopped at its limit still returns what it had.
#
#   bash benchmarks/gpu_session.sh        # from the repository root; needs $CARRY/whl (wheels) and $CARRY/data.tar.gz
#
# $CARRY/data.tar.gz holds data/{multi30k_en_de,sst2,dialogsum,pretrain_corpus} from ../shared (not in the repo):
#   tar czf .gpu_carry/data.tar.gz -C ../shared data/multi30k_en_de data/sst2 data/dialogsum data/pretrain_corpus
# Dry run on a CPU machine (tiny budgets, cpu.yaml): GPU_SESSION_CPU=1 SCALE=0.1 bash benchmarks/gpu_session.sh
set -u
OUT=${OUT:-/tmp/gpu_session}; CARRY=${CARRY:-.gpu_carry}; W=${W:-/tmp/gs}
BUDGET=${BUDGET:-540}     # seconds until the last results are packed
PHASES=${PHASES:-quality,matrix,throughput}  # a subset reruns part of the session
SCALE=${SCALE:-1}         # multiplies every training time budget (dry runs)
T0=$(date +%s)
elapsed() { echo $(($(date +%s) - T0)); }
minutes() { python3 -c "print(round($1 * $SCALE, 3))"; }
mkdir -p "$OUT" "$W/logs" "$W/runs"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=2
export HF_HOME=$W/hf
PY=${PYTHON:-python3}

# --- wheels and data ---
if ls "$CARRY"/whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$CARRY"/whl/*.whl > "$W/logs/pip.log" 2>&1 \
    || echo "wheel install failed (logs/pip.log)"
  export PYTHONPATH=/tmp/site:$PWD
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
tar xzf "$CARRY/data.tar.gz" -C "$W" || { echo "no $CARRY/data.tar.gz"; exit 1; }
D=$W/data

if [ "${GPU_SESSION_CPU:-0}" = 1 ]; then ACC="accelerate_configs/cpu.yaml"; else ACC="accelerate_configs/single_gpu.yaml"; fi
launch() {  # name recipe args... : one training run in the background of its caller, log in $W/logs/name.log
  local name=$1 recipe=$2; shift 2
  echo "[$(elapsed)s] start $name"
  $PY -m accelerate.commands.launch --config_file "$ACC" "recipes/$recipe.py" --output_dir "$W/runs/$name" \
    --overwrite_output_dir true "$@" > "$W/logs/$name.log" 2>&1
  echo "[$(elapsed)s] end $name rc=$?"
}

pack() {  # small files only: no weights, optimizer states or caches
  (cd "$W" && find logs runs -type f \( -name '*.log' -o -name '*.json' -o -name '*.jsonl' -o -name '*.md' \
      -o -name '*.png' -o -name '*.tsv' \) -not -path '*/checkpoints/*' -size -4M -print0 \
    | tar czf "$OUT/results.tar.gz.tmp" --null -T - && mv "$OUT/results.tar.gz.tmp" "$OUT/results.tar.gz")
  cp "$W/logs/session.log" "$OUT/session.log" 2>/dev/null
}
(while sleep 30; do pack; done) &
PACKER=$!

MT="--train_file $D/multi30k_en_de/train --validation_file $D/multi30k_en_de/val --test_file $D/multi30k_en_de/test_2016_flickr"
DS="--train_file $D/dialogsum/train.jsonl.gz --validation_file $D/dialogsum/dev.jsonl --test_file $D/dialogsum/test.jsonl"
SST="--train_file $D/sst2/train.tsv --validation_file $D/sst2/dev.tsv --test_file $D/sst2/test_labeled.tsv"
SST="$SST --max_train_samples 1000000 --num_train_epochs 2 --eval_steps 500 --logging_steps 200 --max_time_minutes $(minutes 2.5)"
GUT="--train_file $D/pretrain_corpus/gutenberg --validation_file $D/pretrain_corpus/wikitext2_raw_test/wiki.test.raw"
SEQ2SEQ_LONG="--num_train_epochs 1000 --max_tokens 8192 --logging_steps 200 --average_last_checkpoints 5"
SAMPLE="Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen"  # first sentence of test_2016_flickr.de

attention_map() {  # name: the cross-attention map of the first test sentence, drawn by the toolkit CLI
  $PY -m toolkit.cli visualize-attention --model "$W/runs/$1" --source "$SAMPLE" --out "$W/runs/$1/attention_map.png" \
    >> "$W/logs/$1.log" 2>&1
}

[[ $PHASES == *quality* ]] && {
  # Multi30k: wall-clock budget, inverse-sqrt schedule (no end to reach), average of the last 5 checkpoints.
  (launch mt_transformer finetune_seq2seq --config recipes/configs/translation/multi30k_transformer_small.yaml $MT \
     $SEQ2SEQ_LONG --learning_rate 0.001 --warmup_steps 1000 --save_steps 300 --eval_steps 1500 \
     --max_time_minutes "$(minutes 5)"; attention_map mt_transformer) &
  for att in dot bilinear additive; do
    (launch "mt_rnn_$att" finetune_seq2seq --config "recipes/configs/translation/multi30k_rnn_$att.yaml" $MT \
       $SEQ2SEQ_LONG --lr_scheduler_type inverse_sqrt --learning_rate 0.002 --warmup_steps 500 --save_steps 200 \
       --eval_steps 1500 --max_time_minutes "$(minutes 5)"; attention_map "mt_rnn_$att") &
  done
  # DialogSum from scratch; same budget as the BERT-initialised run below.
  (launch ds_transformer finetune_seq2seq --config recipes/configs/summarization/dialogsum_transformer_small.yaml $DS \
     --num_train_epochs 1000 --logging_steps 200 --save_steps 400 --average_last_checkpoints 3 --eval_steps 0 \
     --max_time_minutes "$(minutes 3.5)") &
  (launch sst2_scratch finetune_classification --config recipes/configs/classification/sst2_scratch.yaml $SST) &
  # BERT-mini on Gutenberg, then SST-2 and the DialogSum encoder from it.
  # Blocks of 256 tokens (not 128) so that the DialogSum encoder finds trained positions for its long inputs.
  (launch bert_mini pretrain_bert --config recipes/configs/bert/mini.yaml $GUT --per_device_train_batch_size 64 --max_seq_length 256 \
     --learning_rate 0.001 --warmup_steps 200 --max_steps 2500 --eval_steps 500 --save_steps 1000 --logging_steps 100 \
     --preprocessing_num_workers 4 --max_time_minutes "$(minutes 2.5)"
   launch sst2_bert finetune_classification --config recipes/configs/classification/sst2_bert.yaml \
     --model_name_or_path "$W/runs/bert_mini" $SST &
   launch ds_bert2transformer finetune_seq2seq --config recipes/configs/summarization/dialogsum_bert2transformer.yaml \
     $DS --init_encoder_from "$W/runs/bert_mini" --num_train_epochs 1000 --logging_steps 200 --save_steps 400 \
     --average_last_checkpoints 3 --eval_steps 0 --lr_scheduler_type inverse_sqrt --warmup_steps 600 \
     --max_time_minutes "$(minutes 3.5)"
   wait) &
  # ELMo on Gutenberg, then SST-2 with the frozen biLM.
  (launch elmo_gutenberg pretrain_elmo --config recipes/configs/elmo/gutenberg_tiny.yaml $GUT \
     --per_device_train_batch_size 128 --max_steps 2500 --learning_rate 0.002 --warmup_steps 200 --save_steps 1000 \
     --logging_steps 100 --max_time_minutes "$(minutes 2.5)"
   launch sst2_elmo finetune_classification --config recipes/configs/classification/sst2_elmo.yaml \
     --model_name_or_path "$W/runs/elmo_gutenberg" $SST) &
  wait
} > "$W/logs/session.log" 2>&1 &
QUALITY=$!

# --- the recipe x accelerate-config matrix, meanwhile ---
if [ "${GPU_SESSION_CPU:-0}" != 1 ] && ls "$CARRY"/whl/deepspeed-*.tar.gz >/dev/null 2>&1; then
  DS_BUILD_OPS=0 $PY -m pip install -q --no-deps --no-build-isolation --no-index --target /tmp/site_ds \
    "$CARRY"/whl/deepspeed-*.tar.gz > "$W/logs/deepspeed_install.log" 2>&1 &
  DS_INSTALL=$!
fi
if [[ $PHASES == *elmo_throughput* ]]; then  # GPU-alone (the install above is CPU work): rerun of the ELMo benchmark
  timeout 90 $PY benchmarks/elmo_throughput.py --token_embedder word --batch_size 128 --seq_len 20 --vocab_size 50000 \
    --cell_size 4096 --projection_dim 512 --steps 5 --rounds 3 > "$W/logs/elmo_throughput.log" 2>&1
fi
[ -n "${DS_INSTALL:-}" ] && { wait "$DS_INSTALL" || echo "deepspeed install failed"; }
if [[ $PHASES == *speed* ]]; then  # GPU-alone when run as PHASES=speed
  PYTHONPATH=$PYTHONPATH:/tmp/site_ds OUT=$W/logs SST2=$D/sst2/train.tsv CARRY=$CARRY RUNS=$W/speed_runs \
    GPU_SPEED_CPU=${GPU_SESSION_CPU:-0} SPEED_BUDGET=$((BUDGET - $(elapsed) - 20)) bash benchmarks/gpu_speed.sh \
    > "$W/logs/speed.log" 2>&1
  cp "$W/logs/speed/summary.txt" "$OUT/speed_summary.txt" 2>/dev/null
fi
[[ $PHASES == *matrix* ]] || BUDGET_MATRIX=0
[ "${BUDGET_MATRIX:-1}" = 0 ] || PYTHONPATH=$PYTHONPATH:/tmp/site_ds OUT=$W/logs/matrix RUNS=$W/matrix GPU_CHECK_CPU=${GPU_SESSION_CPU:-0} \
  STEPS=${STEPS:-6} timeout "${MATRIX_TIMEOUT:-$((BUDGET - 160))}" bash benchmarks/gpu_check.sh > "$W/logs/matrix.log" 2>&1
cp "$W/logs/matrix/gpu_check.tsv" "$OUT/gpu_check.tsv" 2>/dev/null
echo "[$(elapsed)s] matrix done" >> "$W/logs/session.log"

# --- wait for the quality runs (they end on their own budgets), then throughput alone ---
while kill -0 $QUALITY 2>/dev/null && [ "$(elapsed)" -lt $((BUDGET - 120)) ]; do sleep 5; done
echo "[$(elapsed)s] quality runs done or cut (still running: $(pgrep -fc 'recipes/' || true))" >> "$W/logs/session.log"
pkill -f 'recipes/(pretrain|finetune)' 2>/dev/null
# The two pretrained models, weights in fp16, in parts under the 16 MB a returned file may have.
for m in bert_mini elmo_gutenberg; do
  [ -f "$W/runs/$m/model.safetensors" ] && $PY benchmarks/export_half.py "$W/runs/$m" "$W/export/$m" >> "$W/logs/session.log" 2>&1
done
[ -d "$W/export" ] && tar czf - -C "$W/export" . | split -b 15m - "$OUT/models.tar.gz.part-"
if [ "${GPU_SESSION_CPU:-0}" != 1 ] && [[ $PHASES == *throughput* ]] && [[ $PHASES != *elmo_throughput* ]]; then
  left=$((BUDGET - $(elapsed) - 15))
  timeout $((left * 2 / 3)) $PY benchmarks/bert_throughput.py --size base --seq_len 128 --batch_size 256 --bf16 \
    --steps 10 --warmup 3 > "$W/logs/bert_throughput.log" 2>&1
  left=$((BUDGET - $(elapsed) - 10))
  [ $left -gt 20 ] && timeout $left $PY benchmarks/elmo_throughput.py --token_embedder word --batch_size 128 \
    --seq_len 20 --vocab_size 50000 --cell_size 4096 --projection_dim 512 --steps 5 --rounds 3 \
    > "$W/logs/elmo_throughput.log" 2>&1
fi
kill $PACKER 2>/dev/null
echo "[$(elapsed)s] session done" >> "$W/logs/session.log"
pack
cat "$W/logs/session.log" "$OUT/gpu_check.tsv" 2>/dev/null
grep -h "" "$W"/runs/*/all_results.json 2>/dev/null | grep -E '"(test|validation|eval)_(bleu|rouge1|accuracy)' | head -40
