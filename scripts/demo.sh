#!/usr/bin/env bash
# The main job on a fresh machine: set-up (ONNX Runtime library, release build), a tiny demo
# bundle exported from the committed test checkpoints, and dia-run writing a WAV file.
# The tiny model has RANDOM weights: the pipeline is real, the audio is noise.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-onnxruntime.sh
cargo build --release --bins --locked
# The binaries are in cargo's target directory: ./target unless CARGO_TARGET_DIR (or
# .cargo/config.toml) says otherwise, with a triple below it under CARGO_BUILD_TARGET.
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')${CARGO_BUILD_TARGET:+/$CARGO_BUILD_TARGET}
release="$target_dir/release"

bundle=build/demo-bundle
"$release/dia-export" tests/fixtures/tiny-nari --dac tests/fixtures/tiny-dac --out "$bundle"

mkdir -p demo-output
"$release/dia-run" --bundle "$bundle" \
  --text "[S1] Hello from Dia. [S2] Random weights: noise. (laughs)" \
  --seed 1 --out demo-output/demo.wav --save-codes demo-output/demo-codes.npy
echo "wrote demo-output/demo.wav (tiny random-weight model: expect noise, not speech)"
