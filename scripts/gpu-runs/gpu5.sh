#!/usr/bin/env bash
# Run 5 (one `device run` call): the --target cuda step (fused ONNX Runtime kernels), float16
# and bfloat16, with and without CUDA graph, its accuracy against the float32 portable bundle,
# and which attention kernel ONNX Runtime picked.
set -uo pipefail
carry=.device-carry; work=/tmp/dia-gpu; mkdir -p $work
bash $carry/unpack-cuda-ep.sh $carry/SHA256 || exit 1
source /opt/ort-gpu/env.sh
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t0=$(date +%s)
[[ -f $work/ckpt/config.json ]] || python3 scripts/make_random_full.py --out $work/ckpt --quiet
echo "checkpoint: $(( $(date +%s) - t0 )) s"
for spec in "c-f16 --target cuda --dtype f16" "c-bf16 --target cuda --dtype bf16" "p-f32 --dtype f32"; do
  set -- $spec; name=$1; shift
  t0=$(date +%s)
  $carry/bin/dia-export $work/ckpt --out $work/$name "$@" > /dev/null 2>&1 || echo "export $name failed"
  echo "export $name: $(( $(date +%s) - t0 )) s"
done
echo "== kernel choice (5 frames, debug info)"
ORT_ENABLE_ATTENTION_KERNEL_DEBUG_INFO=1 $carry/bin/dia-run --bundle $work/c-f16 --ep cuda --text "$text" \
  --temperature 0 --max-tokens 6 --bench --quiet 2>&1 | grep -iE "kernel|error" | sort | uniq -c | head -20
for b in c-f16 c-bf16; do
  for g in "--cuda-graph" ""; do
    echo "== dia-run $b cuda $g, 1000 frames"
    $carry/bin/dia-run --bundle $work/$b --ep cuda $g --text "$text" --temperature 0 --max-tokens 1001 \
      --bench --json 2>&1 | grep -v "^   \|^  [0-9]\|WARN" | tail -5
  done
done
echo "== accuracy vs float32 portable (teacher-forced, 200 steps, CUDA)"
for b in c-f16 c-bf16; do $carry/bin/compare $work/p-f32 $work/$b "$text" 200 2>&1 | tail -2; done
