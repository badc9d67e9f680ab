#!/usr/bin/env bash
# Batched decoding on the CPU (issue 13): B = 1, 2, 4 utterances of the two-sentence script in
# one batch, fused float32 and int8 bundles of a random full-size checkpoint, and where loading
# each bundle goes (issue 11). Usage: scripts/bench-batch-cpu.sh [WORK_DIR] [FRAMES]
# (WORK_DIR as scripts/bench-cpu.sh leaves it, or made here: ~20 GB of disk; needs numpy.)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/dia-bench}"; frames="${2:-20}"
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."
scripts/setup-onnxruntime.sh > /dev/null
cargo build --release --bins --examples --locked -p dia-run -p dia-export
release=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release
[[ -f "$work/ckpt/config.json" ]] || python3 scripts/make_random_full.py --out "$work/ckpt" --quiet
[[ -f "$work/fused-f32/manifest.json" ]] || "$release/dia-export" "$work/ckpt" --out "$work/fused-f32"
[[ -f "$work/fused-int8/manifest.json" ]] || "$release/dia-export" "$work/ckpt" --out "$work/fused-int8" --quantize int8
lscpu | grep -E '^Model name|^CPU\(s\)'; uptime
for b in fused-f32 fused-int8; do
  for rep in 1 2; do
    echo "== $b: load (run $rep), dia-run --bench --max-tokens 5"
    "$release/dia-run" --bundle "$work/$b" --text "$text" --bench --max-tokens 5 --json | grep -o '"load_seconds":{[^}]*}\|"total_seconds":[0-9.]*'
  done
  echo "== $b: batch_bench B = 1, 2, 4, $frames frames each"
  "$release/examples/batch_bench" "$work/$b" --slots 1,2,4 --frames "$frames" --text-len 128
done
uptime
