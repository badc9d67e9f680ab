#!/usr/bin/env bash
# Speed of two builds of dia-run on the same machine, alternating, so a change can be judged
# against the machine's own noise: each build exports its own fused float32 and int8 bundles
# of the same full-size random checkpoint (scripts/bench-cpu.sh makes it) and runs 61 greedy
# steps on each, EOS ignored, REPS times.
# Usage: scripts/bench-cpu-ab.sh OLD_RELEASE_DIR NEW_RELEASE_DIR [WORK_DIR] [REPS]
#   e.g. for the commit before a change, built apart (its own target directory: cargo does not
#   put the source path into artifact hashes, so two trees must not share one):
#   git worktree add /tmp/old REV && (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target \
#     cargo build --release --bins) && scripts/bench-cpu-ab.sh /tmp/old-target/release target/release
set -euo pipefail
old="$1"; new="$2"; w="${3:-/tmp/dia-bench}"; reps="${4:-5}"
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."
[[ -f "$w/ckpt-nari/config.json" ]] || { echo "no $w/ckpt-nari: run scripts/bench-cpu.sh $w first" >&2; exit 1; }
for side in old new; do
  bin=${!side}
  [[ -f "$w/ab-$side-f32/manifest.json" ]] || "$bin/dia-export" "$w/ckpt-nari" --out "$w/ab-$side-f32" > /dev/null 2>&1
  [[ -f "$w/ab-$side-int8/manifest.json" ]] || "$bin/dia-export" "$w/ckpt-nari" --out "$w/ab-$side-int8" --quantize int8 > /dev/null 2>&1
done
sync
run() {
  "$1/dia-run" --bundle "$2" --text "$text" --temperature 0 --max-tokens 61 --bench --json 2>/dev/null |
    python3 -c 'import json, sys; d = json.loads(sys.stdin.readline()); print("%.3f steps/s, encoder %.2f s" % (d["steps_per_second"], d["encoder_seconds"]))'
}
for rep in $(seq "$reps"); do
  for q in f32 int8; do
    echo "rep $rep fused-$q old: $(run "$old" "$w/ab-old-$q")"
    echo "rep $rep fused-$q new: $(run "$new" "$w/ab-new-$q")"
  done
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
