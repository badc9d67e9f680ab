#!/usr/bin/env bash
# GPU benchmark, run ON the GPU machine (see benchmarks/gpu.md for how it was carried there):
# dia-run on the CUDA provider (float16 and bfloat16 bundles) next to the official nari-labs/dia
# code (eager and torch.compile), same random full-size checkpoint, same text and frame count,
# plus the float16/bfloat16 bundles' accuracy against float32.
# Usage: scripts/bench-gpu.sh CARRY_DIR [FRAMES] [--compile]
#   CARRY_DIR holds bin/{dia-export,dia-run,compare}, dia/ (a nari-labs/dia checkout) and the
#   ONNX Runtime CUDA parts with unpack-cuda-ep.sh and SHA256.
set -uo pipefail
carry="$1"; frames="${2:-300}"; compile="${3:-}"
work=/tmp/dia-gpu; mkdir -p "$work"
bash "$carry/unpack-cuda-ep.sh" "$carry/SHA256" || exit 1
source /opt/ort-gpu/env.sh
if [[ -d "$carry/whl" ]]; then  # nari-labs needs pydantic, which that machine lacks
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$carry"/whl/*.whl && export PYTHONPATH=/tmp/site
fi
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

[[ -f "$work/ckpt/config.json" ]] || python3 scripts/make_random_full.py --out "$work/ckpt" --quiet
for dt in f32 f16 bf16; do
  [[ -f "$work/b-$dt/manifest.json" ]] || "$carry/bin/dia-export" "$work/ckpt" --out "$work/b-$dt" --dtype "$dt" > /dev/null
done

gpu_mem() {  # peak GPU memory used while the command runs, sampled every 50 ms
  local peak=0 log="$work/mem.$$"; : > "$log"
  ( while :; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >> "$log"; sleep 0.05; done ) &
  local sampler=$!
  "$@"; local rc=$?
  kill $sampler 2>/dev/null; wait $sampler 2>/dev/null
  peak=$(sort -n "$log" | tail -n 1); echo "gpu_memory_used_peak_mib=$peak" >&2
  return $rc
}
for dt in f16 bf16 f32; do
  echo "== dia-run $dt cuda"
  gpu_mem "$carry/bin/dia-run" --bundle "$work/b-$dt" --ep cuda --text "$text" --temperature 0 \
    --max-tokens "$((frames + 1))" --bench --json
done
echo "== accuracy vs float32 (teacher-forced, 200 steps, CUDA)"
for dt in f16 bf16; do "$carry/bin/compare" "$work/b-f32" "$work/b-$dt" "$text" 200; done
echo "== nari-labs eager"
python3 scripts/bench_nari.py --dia-repo "$carry/dia" --ckpt "$work/ckpt" --frames "$frames"
if [[ "$compile" == "--compile" ]]; then
  echo "== nari-labs torch.compile"
  python3 scripts/bench_nari.py --dia-repo "$carry/dia" --ckpt "$work/ckpt" --frames "$frames" --compile
fi
