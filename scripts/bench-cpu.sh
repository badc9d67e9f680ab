#!/usr/bin/env bash
# CPU speed of dia-run (float32 and int8 bundles) next to the `transformers` PyTorch Dia, in one
# run, on a random checkpoint of the real Dia-1.6B shape: same text, same number of frames,
# greedy with CFG, all cores. Also the int8 bundle's accuracy against float32.
# Usage: scripts/bench-cpu.sh [WORK_DIR] [FRAMES]   (needs ~27 GB of disk; the PyTorch side
# needs torch + transformers: REF_PYTHON=/path/to/venv/bin/python, see scripts/make_reference.py)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-/tmp/dia-bench}"
frames="${2:-60}"
py="${REF_PYTHON:-python3}"
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."
mkdir -p "$work"

scripts/setup-onnxruntime.sh
cargo build --release --bins --examples --locked
[[ -f "$work/ckpt-nari/config.json" ]] || "$py" scripts/make_random_full.py --out "$work/ckpt-nari" --quiet
[[ -f "$work/ckpt-hf/config.json" ]] || "$py" scripts/make_random_full.py --out "$work/ckpt-hf" --layout hf --quiet
[[ -f "$work/bundle-f32/manifest.json" ]] || target/release/dia-export "$work/ckpt-nari" --out "$work/bundle-f32"
[[ -f "$work/bundle-int8/manifest.json" ]] || target/release/dia-export "$work/ckpt-nari" --out "$work/bundle-int8" --quantize int8

ours() {
  target/release/dia-run --bundle "$1" --text "$text" --temperature 0 --max-tokens "$((frames + 1))" --bench --json
}
echo "== dia-run float32";  f32=$(ours "$work/bundle-f32");  echo "$f32"
echo "== dia-run int8";     i8=$(ours "$work/bundle-int8");  echo "$i8"
echo "== transformers";     pt=$("$py" scripts/bench_torch.py "$work/ckpt-hf" --text "$text" --frames "$frames" 2>/dev/null | tail -n 1); echo "$pt"
echo "== int8 accuracy vs float32 (teacher-forced, 200 steps)"
acc=$(target/release/examples/compare "$work/bundle-f32" "$work/bundle-int8" "$text" 200); echo "$acc"

"$py" - "$f32" "$i8" "$pt" "$acc" <<'PY'
import json, sys
f32, i8, pt, acc = (json.loads(x) for x in sys.argv[1:])
base = pt["decode_frames_per_second"]
rows = [
    ("transformers (PyTorch) f32", pt["decode_frames_per_second"], pt["first_frame_seconds"], pt["encoder_seconds"], pt["peak_rss_mb"]),
    ("dia-run f32", f32["steps_per_second"], f32["encoder_seconds"] + f32["first_step_seconds"], f32["encoder_seconds"], f32["peak_rss_mb"]),
    ("dia-run int8", i8["steps_per_second"], i8["encoder_seconds"] + i8["first_step_seconds"], i8["encoder_seconds"], i8["peak_rss_mb"]),
]
print("| implementation | decode frames/s | time to first frame (s) | encoder (s) | peak RSS (MB) | frames/s vs PyTorch |")
print("|---|---|---|---|---|---|")
for name, fps, ttff, enc, rss in rows:
    print(f"| {name} | {fps:.2f} | {ttff:.2f} | {enc:.2f} | {rss:.0f} | {fps / base:.2f}x |")
print(f"\nint8 vs float32 over {acc['steps']} teacher-forced steps: max relative logit error "
      f"{acc['max_rel_logit_err']:.4f}, mean {acc['mean_rel_logit_err']:.4f}, greedy token agreement "
      f"{100 * acc['greedy_token_agreement']:.1f}%")
PY
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
