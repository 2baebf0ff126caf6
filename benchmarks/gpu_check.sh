#!/usr/bin/env bash
# The recipe x accelerate-config matrix on a GPU (issue: scale-out; README "Accelerate configs"). For each launch
# (single_gpu.yaml, fsdp.yaml with one process, DeepSpeed ZeRO-2 and ZeRO-3 with one process when DeepSpeed can be
# installed, single_gpu.yaml + --torch_compile; with several GPUs also multi_gpu.yaml, fsdp.yaml and ZeRO-3 over all
# of them) the four recipes run their quickstart config for a few steps in parallel, save, and the saved model is
# reloaded with from_pretrained (every weight must match). Under FSDP, DeepSpeed and DDP each run is then resumed from
# its (sharded) mid-run checkpoint and must log the same last-step loss. Writes gpu_check.tsv and one log per run to $OUT.
#
#   bash benchmarks/gpu_check.sh                    # on a GPU machine, from the repository root
#   GPU_CHECK_CPU=1 bash benchmarks/gpu_check.sh    # on a CPU machine: cpu.yaml, and DeepSpeed ZeRO-2 / ZeRO-3 with
#                                                   # two processes in fp32 (DeepSpeed's CPU accelerator, gloo)
#   CHECKS="deepspeed_zero3_1proc:* fsdp_1proc:pretrain_bert" bash benchmarks/gpu_check.sh   # only these launch:recipe
#                                                   # pairs (`*` = every recipe); LAUNCH_NAMES filters launches only
#
# Wheels missing on the GPU machine (datasets, evaluate, ... and DeepSpeed's sdist) are installed from $WHEELS
# (default .gpu_carry/whl) by benchmarks/gpu_session.sh, which also runs this script.
set -u
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
STEPS=${STEPS:-6}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD
PY=${PYTHON:-python3}
RUNS=${RUNS:-/tmp/gpu_runs}

if [ "${GPU_CHECK_CPU:-0}" = 1 ]; then
  # DeepSpeed runs on CPU too (its CPU accelerator over gloo): the same ZeRO configs with two processes, in fp32.
  LAUNCHES=("cpu|--config_file accelerate_configs/cpu.yaml|")
  $PY -c "import deepspeed" >/dev/null 2>&1 \
    && LAUNCHES+=("deepspeed_zero2_2proc_cpu|--config_file accelerate_configs/deepspeed_zero2.yaml --num_processes 2 --mixed_precision no|"
                  "deepspeed_zero3_2proc_cpu|--config_file accelerate_configs/deepspeed_zero3.yaml --num_processes 2 --mixed_precision no|")
else
  LAUNCHES=("single_gpu|--config_file accelerate_configs/single_gpu.yaml|"
            "fsdp_1proc|--config_file accelerate_configs/fsdp.yaml --num_processes 1|")
  $PY -c "import deepspeed" >/dev/null 2>&1 \
    && LAUNCHES+=("deepspeed_zero2_1proc|--config_file accelerate_configs/deepspeed_zero2.yaml --num_processes 1|"
                  "deepspeed_zero3_1proc|--config_file accelerate_configs/deepspeed_zero3.yaml --num_processes 1|")
  LAUNCHES+=("single_gpu_compile|--config_file accelerate_configs/single_gpu.yaml|--torch_compile true")
  NGPU=$($PY -c "import torch; print(torch.cuda.device_count())" 2>/dev/null || echo 0)
  if [ "${NGPU:-0}" -ge 2 ]; then  # a machine with several GPUs: the multi-process configs over all of them
    LAUNCHES+=("multi_gpu_${NGPU}proc|--config_file accelerate_configs/multi_gpu.yaml --num_processes $NGPU|"
               "fsdp_${NGPU}proc|--config_file accelerate_configs/fsdp.yaml --num_processes $NGPU|")
    $PY -c "import deepspeed" >/dev/null 2>&1 \
      && LAUNCHES+=("deepspeed_zero3_${NGPU}proc|--config_file accelerate_configs/deepspeed_zero3.yaml --num_processes $NGPU|")
  fi
fi
HALF=$((STEPS / 2))  # checkpoint (and resume) step
RECIPES=("pretrain_bert|recipes/configs/bert/quickstart.yaml"
         "pretrain_elmo|recipes/configs/elmo/quickstart.yaml"
         "finetune_classification|recipes/configs/classification/quickstart.yaml"
         "finetune_seq2seq|recipes/configs/summarization/quickstart.yaml")

step_loss() {  # the training loss logged at step $2 in log $1 (a JSON line {"step": N, "loss": X, ...})
  grep -oE "\{\"step\": $2, (\"rank\": [0-9]+, )?\"loss\": [0-9.]+" "$1" | tail -1 | grep -oE "[0-9.]+$"
}

run_one() {  # recipe cfg launch-name launch-flags extra-recipe-flags port
  local recipe=$1 cfg=$2 name=$3 flags=$4 extra=$5 port=$6
  local dir=$RUNS/$recipe-$name log=$OUT/$recipe-$name.log start rc secs note outcome
  launch() {  # the recipe's few-step run under this launch config; extra recipe flags in "$@"
    # shellcheck disable=SC2086
    HF_HOME=$RUNS/hf-$recipe-$name timeout "${RUN_TIMEOUT:-400}" $PY -m accelerate.commands.launch $flags \
      --main_process_port "$port" recipes/$recipe.py --config "$cfg" --output_dir "$dir" --max_steps "$STEPS" \
      --eval_steps "$STEPS" --save_steps "$HALF" --logging_steps 1 $extra "$@"
  }
  rm -rf "$dir"; start=$(date +%s)
  launch --overwrite_output_dir true > "$log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    note=$($PY benchmarks/reload_check.py "$dir" 2>&1 | tail -1)
    case "$note" in reload*) outcome=ok ;; *) outcome=reload_failed ;; esac
    case "$name" in fsdp*|deepspeed*|multi_gpu*|cpu)
      # Resume from the mid-run checkpoint (sharded under FSDP / DeepSpeed) and compare the last step's loss.
      local ckpt first second
      ckpt=$(printf "%s/checkpoints/step-%08d" "$dir" "$HALF")
      first=$(step_loss "$log" "$STEPS")
      launch --resume_from_checkpoint "$ckpt" > "$OUT/$recipe-$name-resume.log" 2>&1
      second=$(step_loss "$OUT/$recipe-$name-resume.log" "$STEPS")
      if [ -n "$first" ] && [ "$first" = "$second" ]; then note="$note; resume from step $HALF ok (step-$STEPS loss $first)"
      else note="$note; RESUME MISMATCH step-$STEPS loss '$first' vs '$second'"; outcome=resume_failed; fi ;;
    esac
  else
    outcome="failed(rc=$rc)"; note=$(grep -E "Error|error" "$log" | grep -v "^\s*$" | tail -1 | cut -c1-240)
  fi
  secs=$(( $(date +%s) - start ))
  printf "%s\t%s\t%s\t%s\t%s | %s\n" "$recipe" "$name" "$outcome" "$secs" "$note" "$(grep -E "^throughput" "$log" | tail -1)" \
    >> "$OUT/gpu_check.tsv"
}

$PY - <<'PY' | tee "$OUT/versions.txt"
import importlib, torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
for m in ("transformers", "accelerate", "datasets", "evaluate", "tokenizers", "pyarrow", "deepspeed"):
    try:
        print(m, importlib.import_module(m).__version__)
    except Exception as e:
        print(m, "missing", type(e).__name__, e)
PY

printf "recipe\tlaunch\toutcome\tseconds\tnote | throughput\n" > "$OUT/gpu_check.tsv"
port=${BASE_PORT:-29600}
for l in "${LAUNCHES[@]}"; do  # one launch config at a time, its four recipes in parallel
  IFS='|' read -r name flags extra <<< "$l"
  if [ -n "${LAUNCH_NAMES:-}" ] && [[ " $LAUNCH_NAMES " != *" $name "* ]]; then continue; fi  # e.g. "fsdp_1proc"
  for r in "${RECIPES[@]}"; do
    if [ -n "${CHECKS:-}" ] && [[ " $CHECKS " != *" $name:${r%%|*} "* ]] && [[ " $CHECKS " != *" $name:* "* ]]; then
      continue
    fi
    port=$((port + 1))
    run_one "${r%%|*}" "${r#*|}" "$name" "$flags" "$extra" "$port" &
  done
  wait
done
cat "$OUT/gpu_check.tsv"
