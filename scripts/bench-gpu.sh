#!/usr/bin/env bash
# GPU benchmark, run ON the GPU machine (benchmarks/gpu.md says how it was carried there):
# dia-run on the CUDA provider next to the official nari-labs/dia code (eager and
# torch.compile), same random full-size checkpoint, same text and frame count; the accuracy of
# the float16/bfloat16 bundles against float32; the GEMM and launch floors of a step.
# Usage: scripts/bench-gpu.sh CARRY_DIR [FRAMES] [--compile]
#   CARRY_DIR holds bin/{dia-export,dia-run,compare,batch_bench}, dia/ (a nari-labs/dia checkout), whl/
#   (pydantic wheels) and the ONNX Runtime CUDA parts with unpack-cuda-ep.sh and SHA256.
set -uo pipefail
carry="$1"; frames="${2:-1000}"; compile="${3:-}"
work=/tmp/dia-gpu; mkdir -p "$work"
bash "$carry/unpack-cuda-ep.sh" "$carry/SHA256" || exit 1
source /opt/ort-gpu/env.sh
if [[ -d "$carry/whl" ]]; then  # nari-labs needs pydantic, which that machine lacks
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$carry"/whl/*.whl && export PYTHONPATH=/tmp/site
fi
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader

[[ -f "$work/ckpt/config.json" ]] || python3 scripts/make_random_full.py --out "$work/ckpt" --quiet > /dev/null
# The fused target in float16 and bfloat16; the portable float16 graph for comparison; portable
# float32 as the accuracy reference. (Runs 5-9 of benchmarks/gpu.md called the fused target
# `--target cuda`.)
for spec in "fused-f16 --target fused --dtype f16" "fused-bf16 --target fused --dtype bf16" \
            "portable-f16 --target portable --dtype f16" "portable-f32 --target portable --dtype f32"; do
  set -- $spec; name=$1; shift
  [[ -f "$work/$name/manifest.json" ]] || "$carry/bin/dia-export" "$work/ckpt" --out "$work/$name" "$@" > /dev/null
done
# The exports leave ~10 GB of dirty pages; their writeback slowed the first timed runs by up to
# 50% (benchmarks/gpu.md, runs 7-8), so flush them first.
sync

gpu_mem() {  # peak GPU memory used while the command runs, sampled every 50 ms
  local log="$work/mem.$$"; : > "$log"
  ( while :; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits >> "$log"; sleep 0.05; done ) &
  local sampler=$!
  "$@"; local rc=$?
  kill $sampler 2>/dev/null; wait $sampler 2>/dev/null
  echo "gpu_memory_used_peak_mib=$(sort -n "$log" | tail -n 1)"
  return $rc
}
run() {  # BUNDLE [dia-run flags]: one greedy generation of $frames frames, EOS ignored
  "$carry/bin/dia-run" --bundle "$work/$1" --ep cuda "${@:2}" --text "$text" --temperature 0 \
    --max-tokens "$((frames + 1))" --bench --json 2>&1 | grep '^{'
}
for b in fused-f16 fused-bf16; do
  for rep in 1 2; do echo "== dia-run $b --cuda-graph (run $rep)"; gpu_mem run $b --cuda-graph; done
done
echo "== dia-run fused-f16, no CUDA graph"; run fused-f16
echo "== dia-run portable-f16 --cuda-graph"; run portable-f16 --cuda-graph

echo "== the same codes with and without the CUDA graph (greedy, 300 frames)"
for g in "" "--cuda-graph"; do
  "$carry/bin/dia-run" --bundle "$work/fused-f16" --ep cuda $g --text "$text" --temperature 0 \
    --max-tokens 300 --save-codes "$work/codes$g.npy" --quiet > /dev/null 2>&1
done
cmp "$work/codes.npy" "$work/codes--cuda-graph.npy" && echo "codes identical"

echo "== accuracy vs float32 on the CPU provider (teacher-forced, 200 steps)"
for b in fused-f16 fused-bf16; do
  "$carry/bin/compare" "$work/portable-f32" "$work/$b" "$text" 200 --ref-ep cpu --test-ep cuda --test-cuda-graph
done

echo "== floors: the step's GEMMs alone and back-to-back tiny kernels (PyTorch, CUDA graphs)"
python3 scripts/bench_gemm_floor.py --kernels 350

echo "== nari-labs eager"
python3 scripts/bench_nari.py --dia-repo "$carry/dia" --ckpt "$work/ckpt" --frames "$frames"
if [[ "$compile" == "--compile" ]]; then
  echo "== nari-labs torch.compile"
  python3 scripts/bench_nari.py --dia-repo "$carry/dia" --ckpt "$work/ckpt" --frames "$frames" --compile
fi

# Batched decoding (issue 13): B utterances in one batch, 300 sampled frames each, text bucket
# 128, with the CUDA graph; then the official batch generate in the same session. CARRY_DIR/bin
# needs the batch_bench example. `scripts/plot_batch.py LOG --out PNG` plots the two.
echo "== batch_bench --cuda-graph, 300 frames each, text bucket 128"
"$carry/bin/batch_bench" "$work/fused-f16" --ep cuda --cuda-graph --slots 1,2,4,8,16,32,48,64,96,128,192,256 --frames 300 --text-len 128
echo "== nari-labs/dia batch generate, eager float16, 300 frames"
python3 scripts/bench_nari.py --dia-repo "$carry/dia" --ckpt "$work/ckpt" --frames 300 --batch 1,8,32,64 2>&1 | grep '^{'
