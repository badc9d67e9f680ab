#!/usr/bin/env bash
# Run 6 (one `device run` call): where the --target cuda step's time goes. The GEMM and launch
# floors (PyTorch, CUDA graphs), ONNX Runtime's node profile of the step, and variants: shorter
# text length (cross-attention bytes), int8 weights (GEMM bytes), bfloat16.
set -uo pipefail
carry=.device-carry; work=/tmp/dia-gpu; mkdir -p $work
bash $carry/unpack-cuda-ep.sh $carry/SHA256 || exit 1
source /opt/ort-gpu/env.sh
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."
echo "== floors (PyTorch $(python3 -c 'import torch; print(torch.__version__)'))"
python3 scripts/bench_gemm_floor.py --kernels 350
[[ -f $work/ckpt/config.json ]] || python3 scripts/make_random_full.py --out $work/ckpt --quiet > /dev/null
for spec in "c-f16 --target cuda" "c-bf16 --target cuda --dtype bf16" "c-f16-t128 --target cuda --max-text-len 128" \
            "c-i8 --target cuda --quantize int8" "p-f32 --dtype f32"; do
  set -- $spec; name=$1; shift
  $carry/bin/dia-export $work/ckpt --out $work/$name "$@" > /dev/null 2>&1 || echo "export $name failed"
done
run() { $carry/bin/dia-run --bundle $work/$1 --ep cuda "${@:2}" --text "$text" --temperature 0 --bench --json 2>&1 \
  | grep -v "^   \|^  [0-9]\|WARN" | tail -4; }
for b in c-f16 c-f16-t128 c-i8 c-bf16; do
  echo "== $b --cuda-graph, 1000 frames"; run $b --cuda-graph --max-tokens 1001
done
echo "== c-f16 profile (no CUDA graph, 60 steps)"
run c-f16 --max-tokens 61 --ort-profile $work/prof > /dev/null
python3 scripts/ort_profile_summary.py $work/prof_*.json --skip 10
echo "== accuracy vs float32 portable (teacher-forced, 200 steps, CUDA)"
for b in c-bf16 c-i8; do $carry/bin/compare $work/p-f32 $work/$b "$text" 200 2>&1 | tail -1; done
