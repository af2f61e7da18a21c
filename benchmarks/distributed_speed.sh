#!/usr/bin/env bash
# Two processes vs one on CPU, one torch thread per process: 20 CSFT steps (effective batch 8,
# micro-batches of 4: one process accumulates 2, two processes take one each) and extraction of
# 1,000 Games titles, with SmolLM2-135M. Prints wall times, the Trainer's train_runtime, the
# extraction time recorded in the .feat sidecar, and the load average before and after.
#
#   bash benchmarks/distributed_speed.sh        # MODEL, DATA, RUNS override the defaults
#
# Needs: MODEL (python -m pretrain.convert_gguf --gguf smollm2 --out models/SmolLM2-135M-Instruct),
# DATA/Games500 (python -m dataset_atomic sample <Games> --users 500 --seed 0 --name Games500)
# and DATA/Games1k/Games1k.item (the header and first 1,000 rows of Games.item).
set -euo pipefail
MODEL=${MODEL:-models/SmolLM2-135M-Instruct}
DATA=${DATA:-dataset/}
RUNS=${RUNS:-runs/distributed_speed}
export OMP_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
rm -rf "$RUNS"
CSFT=(-m pretrain.csft --model "$MODEL" --datasets Games500 --data_path "$DATA" --max_steps 20
      --batch_size 8 --micro_batch_size 4 --max_length 64 --warmup_steps 0 --save_steps 1000
      --report_to none --logging_steps 5 --seed 0 --attn_implementation sdpa)
EXTRACT=(-m pretrain.extract --model "$MODEL" --data_path "$DATA" --dataset Games1k --overwrite
         --attn_implementation sdpa)

timed() {  # label, command...
  local label=$1; shift
  local start end
  start=$(date +%s.%N)
  "$@" > "$RUNS.$label.log" 2>&1
  end=$(date +%s.%N)
  echo "$label wall_s $(echo "$end - $start" | bc)"
}
mkdir -p "$(dirname "$RUNS")"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
timed csft_1proc python "${CSFT[@]}" --run_dir "$RUNS/one"
timed csft_2proc torchrun --nproc_per_node=2 "${CSFT[@]}" --run_dir "$RUNS/two"
timed extract_1proc python "${EXTRACT[@]}" --name speed1
timed extract_2proc torchrun --nproc_per_node=2 "${EXTRACT[@]}" --name speed2
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
python - "$RUNS" "$DATA" <<'PY'
import json, sys
runs, data = sys.argv[1:]
for v in ("one", "two"):
    state = json.load(open(f"{runs}/{v}/csft/final/trainer_state.json"))
    print(f"csft {v}: train_runtime_s", state["log_history"][-1]["train_runtime"],
          "losses", [e["loss"] for e in state["log_history"] if "loss" in e])
for name in ("speed1", "speed2"):
    meta = json.load(open(f"{data}/Games1k/Games1k.{name}.feat.json"))
    print(f"extract {name}: embedding_s", meta["extraction"]["seconds"], "processes",
          meta.get("processes"), "items", meta["num_items"])
PY
