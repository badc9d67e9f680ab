#!/usr/bin/env bash
# Export time and peak RSS of dia-export on a random checkpoint of the real Dia-1.6B shape
# (scripts/make_random_full.py, 6.4 GB float32), then a short greedy run of dia-run on the CPU.
# Usage: scripts/bench-export.sh [WORK_DIR] [nari|hf]   (needs ~14 GB of free disk)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/dia-bench}"
layout="${2:-nari}"
mkdir -p "$work"

scripts/setup-onnxruntime.sh
if [[ ! -x .venv-check/bin/python ]]; then
  python3 -m venv .venv-check
  .venv-check/bin/pip install --quiet -r scripts/requirements-check.txt
fi
cargo build --release --bins --locked
# The binaries are in cargo's target directory: ./target unless CARGO_TARGET_DIR (or
# .cargo/config.toml) says otherwise, with a triple below it under CARGO_BUILD_TARGET.
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')${CARGO_BUILD_TARGET:+/$CARGO_BUILD_TARGET}
release="$target_dir/release"

ckpt="$work/ckpt-$layout"
[[ -f "$ckpt/config.json" ]] || .venv-check/bin/python scripts/make_random_full.py --out "$ckpt" --layout "$layout" --quiet
echo "checkpoint: $(du -b "$ckpt/model.safetensors" | cut -f1) bytes ($layout layout)"

/usr/bin/time -v "$release/dia-export" "$ckpt" --out "$work/bundle-$layout" 2> "$work/export.time"
grep -E "Elapsed|Maximum resident" "$work/export.time"

/usr/bin/time -v "$release/dia-run" --bundle "$work/bundle-$layout" \
  --text "[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices." \
  --temperature 0 --max-tokens 20 --save-codes "$work/codes.npy" --json 2> "$work/run.time"
grep -E "Elapsed|Maximum resident" "$work/run.time"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
