#!/usr/bin/env bash
# Everything GPU-related in one run (see README "Accelerate configs"): each recipe's quickstart config for a few
# steps under single_gpu.yaml, fsdp.yaml (one process) and DeepSpeed ZeRO-2 (if it can be installed), each checked
# save -> from_pretrained; then the throughput benchmarks in bf16. Writes a TSV of outcomes and logs to $OUT.
#
#   bash benchmarks/gpu_check.sh            # on a GPU machine, from the repository root
#   GPU_CHECK_CPU=1 bash benchmarks/gpu_check.sh   # dry run of the script itself on a CPU machine (cpu.yaml only)
#
# Wheels missing on the GPU machine (datasets, evaluate, ... and DeepSpeed's sdist) can be carried in .whl/.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
STEPS=${STEPS:-6}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=${PYTHON:-python3}

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
  if ls .whl/deepspeed-*.tar.gz >/dev/null 2>&1; then
    DS_BUILD_OPS=0 $PY -m pip install -q --no-deps --no-build-isolation --no-index --target /tmp/site .whl/deepspeed-*.tar.gz \
      > "$OUT/deepspeed_install.log" 2>&1 || echo "deepspeed install failed (see deepspeed_install.log)"
  fi
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}
$PY - <<'PY' | tee "$OUT/versions.txt"
import importlib, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for m in ("transformers", "accelerate", "datasets", "evaluate", "deepspeed"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as e:
        print(m, "missing", type(e).__name__)
PY

if [ "${GPU_CHECK_CPU:-0}" = 1 ]; then
  LAUNCHES=("cpu|--config_file accelerate_configs/cpu.yaml")
else
  LAUNCHES=("single_gpu|--config_file accelerate_configs/single_gpu.yaml"
            "fsdp_1proc|--config_file accelerate_configs/fsdp.yaml --num_processes 1")
  $PY -c "import deepspeed" 2>/dev/null && LAUNCHES+=("deepspeed_zero2_1proc|--config_file accelerate_configs/deepspeed_zero2.yaml --num_processes 1")
fi
RECIPES=("pretrain_bert|recipes/configs/bert/quickstart.yaml"
         "pretrain_elmo|recipes/configs/elmo/quickstart.yaml"
         "finetune_classification|recipes/configs/classification/quickstart.yaml"
         "finetune_seq2seq|recipes/configs/summarization/quickstart.yaml")

printf "recipe\tlaunch\toutcome\tseconds\tnote\n" > "$OUT/gpu_check.tsv"
for r in "${RECIPES[@]}"; do
  recipe=${r%%|*}; cfg=${r#*|}
  for l in "${LAUNCHES[@]}"; do
    name=${l%%|*}; flags=${l#*|}
    dir=/tmp/gpu_runs/$recipe-$name; log="$OUT/$recipe-$name.log"; rm -rf "$dir"
    start=$(date +%s)
    # shellcheck disable=SC2086
    timeout 300 $PY -m accelerate.commands.launch $flags recipes/$recipe.py --config "$cfg" --output_dir "$dir" \
      --max_steps "$STEPS" --eval_steps "$STEPS" --save_steps 3 --logging_steps 1 --overwrite_output_dir true > "$log" 2>&1
    rc=$?; secs=$(( $(date +%s) - start ))
    if [ $rc -eq 0 ]; then
      note=$($PY - "$dir" <<'PY' 2>&1 | tail -1
import sys, torch, transformers, toolkit  # noqa: F401
d = sys.argv[1]
cfg = transformers.AutoConfig.from_pretrained(d)
seq2seq = cfg.model_type in ("toolkit_transformer", "toolkit_rnn_seq2seq")
auto = transformers.AutoModelForSeq2SeqLM if seq2seq else transformers.AutoModel
model = auto.from_pretrained(d)
print(f"reload ok: {cfg.model_type}, {sum(p.numel() for p in model.parameters())} params")
PY
)
      case "$note" in reload*) outcome=ok ;; *) outcome=reload_failed ;; esac
    else
      outcome="failed(rc=$rc)"; note=$(grep -E "Error|error" "$log" | tail -1 | cut -c1-200)
    fi
    tput_line=$(grep -E "^throughput" "$log" | tail -1)
    printf "%s\t%s\t%s\t%s\t%s %s\n" "$recipe" "$name" "$outcome" "$secs" "$note" "$tput_line" | tee -a "$OUT/gpu_check.tsv"
  done
done

if [ "${GPU_CHECK_CPU:-0}" != 1 ]; then
  timeout 240 $PY benchmarks/bert_throughput.py --size base --seq_len 128 --batch_size 256 --bf16 --steps 20 --compile \
    > "$OUT/bert_throughput.log" 2>&1; tail -5 "$OUT/bert_throughput.log"
  timeout 120 $PY benchmarks/elmo_throughput.py --device cuda --bf16 > "$OUT/elmo_throughput.log" 2>&1; tail -5 "$OUT/elmo_throughput.log"
fi
echo "results: $OUT/gpu_check.tsv"
