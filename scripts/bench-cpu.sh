#!/usr/bin/env bash
# CPU speed of dia-run (the fused and portable targets, float32 and int8 each) next to the
# `transformers` PyTorch Dia, in one run, on a random checkpoint of the real Dia-1.6B shape: same
# text, same number of frames, greedy with CFG, all cores. Also the fused bundles' accuracy
# against the portable float32 one.
# Usage: scripts/bench-cpu.sh [WORK_DIR] [FRAMES]   (needs ~31 GB of disk; the PyTorch side
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
# The binaries are in cargo's target directory: ./target unless CARGO_TARGET_DIR (or
# .cargo/config.toml) says otherwise, with a triple below it under CARGO_BUILD_TARGET.
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')${CARGO_BUILD_TARGET:+/$CARGO_BUILD_TARGET}
release="$target_dir/release"
[[ -f "$work/ckpt-nari/config.json" ]] || "$py" scripts/make_random_full.py --out "$work/ckpt-nari" --quiet
[[ -f "$work/ckpt-hf/config.json" ]] || "$py" scripts/make_random_full.py --out "$work/ckpt-hf" --layout hf --quiet
# The default (fused) target and the portable one, float32 and int8 each.
for t in fused portable; do
  [[ -f "$work/bundle-$t-f32/manifest.json" ]] || "$release/dia-export" "$work/ckpt-nari" --target $t --out "$work/bundle-$t-f32"
  [[ -f "$work/bundle-$t-int8/manifest.json" ]] || "$release/dia-export" "$work/ckpt-nari" --target $t --out "$work/bundle-$t-int8" --quantize int8
done

ours() {
  "$release/dia-run" --bundle "$1" --text "$text" --temperature 0 --max-tokens "$((frames + 1))" --bench --json
}
declare -A res acc
for b in fused-f32 fused-int8 portable-f32 portable-int8; do
  echo "== dia-run $b"; res[$b]=$(ours "$work/bundle-$b"); echo "${res[$b]}"
done
echo "== transformers";     pt=$("$py" scripts/bench_torch.py "$work/ckpt-hf" --text "$text" --frames "$frames" 2>/dev/null | tail -n 1); echo "$pt"
echo "== accuracy vs portable float32 (teacher-forced, 200 steps)"
for b in fused-f32 fused-int8; do
  acc[$b]=$("$release/examples/compare" "$work/bundle-portable-f32" "$work/bundle-$b" "$text" 200); echo "${acc[$b]}"
done

"$py" - "$pt" "${res[fused-f32]}" "${res[fused-int8]}" "${res[portable-f32]}" "${res[portable-int8]}" \
  "${acc[fused-f32]}" "${acc[fused-int8]}" <<'PY'
import json, sys
pt, *rest = (json.loads(x) for x in sys.argv[1:])
runs, accs = rest[:4], rest[4:]
names = ["dia-run fused f32", "dia-run fused int8", "dia-run portable f32", "dia-run portable int8"]
base = pt["decode_frames_per_second"]
rows = [("transformers (PyTorch) f32", base, pt["first_frame_seconds"], pt["encoder_seconds"], pt["peak_rss_mb"])]
rows += [(n, r["steps_per_second"], r["encoder_seconds"] + r["first_step_seconds"], r["encoder_seconds"], r["peak_rss_mb"])
         for n, r in zip(names, runs)]
print("| implementation | decode frames/s | time to first frame (s) | encoder (s) | peak RSS (MB) | frames/s vs PyTorch |")
print("|---|---|---|---|---|---|")
for name, fps, ttff, enc, rss in rows:
    print(f"| {name} | {fps:.2f} | {ttff:.2f} | {enc:.2f} | {rss:.0f} | {fps / base:.2f}x |")
for name, acc in zip(["fused f32", "fused int8"], accs):
    print(f"\n{name} vs portable float32 over {acc['steps']} teacher-forced steps: max relative logit "
          f"error {acc['max_rel_logit_err']:.4f}, mean {acc['mean_rel_logit_err']:.4f}, greedy token "
          f"agreement {100 * acc['greedy_token_agreement']:.1f}%")
PY
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
