#!/usr/bin/env bash
# For a Mac user: decode speed of a bundle on the CPU, on CoreML with all compute units, and on
# CoreML with the CPU and the Neural Engine only. Prints frames/s and the realtime factor.
# Usage: scripts/bench-mac.sh BUNDLE_DIR [FRAMES]
# First check what CoreML will take: cargo run --release --bin dia-export -- check BUNDLE_DIR --ep coreml
# (nodes it does not take run on the CPU, with copies between the two).
set -euo pipefail
cd "$(dirname "$0")/.."
bundle="${1:?usage: scripts/bench-mac.sh BUNDLE_DIR [FRAMES]}"
frames="${2:-200}"
scripts/setup-onnxruntime.sh
cargo build --release --bins --locked
# The binaries are in cargo's target directory: ./target unless CARGO_TARGET_DIR (or
# .cargo/config.toml) says otherwise, with a triple below it under CARGO_BUILD_TARGET.
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')${CARGO_BUILD_TARGET:+/$CARGO_BUILD_TARGET}
release="$target_dir/release"
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."
printf '%-34s %12s %10s %10s\n' "provider" "frames/s" "realtime" "ran on"
for ep in "cpu" "coreml --coreml-units all" "coreml --coreml-units cpu-and-ne"; do
  # shellcheck disable=SC2086
  json=$("$release/dia-run" --bundle "$bundle" --ep $ep --text "$text" --temperature 0 \
    --max-tokens "$((frames + 1))" --bench --json)
  python3 - "$ep" "$json" <<'PY'
import json, sys
ep, s = sys.argv[1], json.loads(sys.argv[2])
print(f"{ep:<34} {s['steps_per_second']:12.2f} {s['realtime_factor']:9.2f}x {s['provider']:>10}")
PY
done
echo "machine: $(sysctl -n machdep.cpu.brand_string 2>/dev/null || uname -m), $(sw_vers -productVersion 2>/dev/null || uname -sr)"
