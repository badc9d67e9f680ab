#!/usr/bin/env bash
# Streaming against one-shot decoding on this machine (issue 11): time to first audio and
# decode throughput of `dia-run --stream` next to a plain run that decodes the codec once at the
# end, alternating, on full-size fused float32 and int8 bundles that carry a codec.
# Usage: scripts/bench-stream-cpu.sh WORK_DIR [STEPS] [REPS]
#   WORK_DIR holds ckpt-nari/ (scripts/make_random_full.py) and dac-random/ (a DAC of the
#   44.1 kHz shape with random weights: transformers' DacModel(DacConfig(sampling_rate=44100))
#   saved with save_pretrained); the bundles stream-fused-{f32,int8} are exported once.
set -euo pipefail
cd "$(dirname "$0")/.."
w="$1"; steps="${2:-121}"; reps="${3:-2}"
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
release="$target_dir/release"
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."
for q in f32 int8; do
  extra=(); [[ $q == int8 ]] && extra=(--quantize int8)
  [[ -f "$w/stream-fused-$q/manifest.json" ]] ||
    "$release/dia-export" "$w/ckpt-nari" --dac "$w/dac-random" --out "$w/stream-fused-$q" "${extra[@]}" > /dev/null
done
sync
show() {
  python3 -c 'import json, sys
d = json.loads(sys.stdin.readline())
fa = d["first_audio_seconds"]
# Steps and codec together: streaming decodes the codec between steps, one-shot after them.
both = d["steps"] / (d["decode_seconds"] + d["dac_seconds"])
print("%.3f steps/s with the codec, first audio %s, encoder %.2f s, DAC after %.2f s, %d frames, total %.1f s" % (
    both, "%.2f s" % fa if fa is not None else "-", d["encoder_seconds"],
    d["dac_seconds"], d["frames"], d["total_seconds"]))'
}
for rep in $(seq "$reps"); do
  for q in f32 int8; do
    for mode in one-shot stream; do
      flag=(); [[ $mode == stream ]] && flag=(--stream)
      r=$("$release/dia-run" --bundle "$w/stream-fused-$q" --text "$text" --temperature 0 \
        --max-tokens "$steps" --out "$w/out-$mode.wav" --json "${flag[@]}" 2>/dev/null | show)
      echo "rep $rep fused-$q $mode: $r"
    done
  done
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
