#!/usr/bin/env bash
# Runs every check of the project on this machine: formatting, lints, unit and end-to-end
# tests (parity against the committed reference fixtures), and the Python ONNX checks of an
# exported bundle. Works on a fresh clone: it fetches what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-onnxruntime.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --bins --locked
cargo test --workspace --locked
# The API docs build without warnings (broken intra-doc links, private items, bad HTML).
RUSTDOCFLAGS="${RUSTDOCFLAGS:-} -D warnings" cargo doc --workspace --no-deps --locked

# Python's ONNX tools must accept the bundles too (onnx.checker, onnxruntime sessions).
venv=.venv-check
if [[ ! -x "$venv/bin/python" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r scripts/requirements-check.txt
fi
# The binaries are in cargo's target directory: ./target unless CARGO_TARGET_DIR (or
# .cargo/config.toml) says otherwise, with a triple below it under CARGO_BUILD_TARGET.
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')${CARGO_BUILD_TARGET:+/$CARGO_BUILD_TARGET}
debug="$target_dir/debug"
bundle=build/check-bundle
# The default (fused) bundle: onnxruntime checks its contrib-op graphs, onnx.checker the codec.
"$debug/dia-export" tests/fixtures/tiny-nari --dac tests/fixtures/tiny-dac --out "$bundle" > /dev/null
"$venv/bin/python" scripts/check_bundle.py "$bundle"
# The embedding example of the README runs on it too.
cargo run --quiet --locked -p dia-run --example generate -- "$bundle" build/example-out
# And the streaming example: chunks while generating, time to first audio, twice on one model.
cargo run --quiet --locked -p dia-run --example stream -- "$bundle" --utterances 2 --text "[S1] Hello. [S2] Hi!"
# The C API: C and Python (ctypes) examples give dia-run's codes, valgrind finds no leak of
# ours, a host's own ONNX Runtime stays the only one in the process.
capi/examples/run.sh
# The speech server from outside: bad requests, the openai client, load, the page in Chromium.
scripts/test-server.sh
# A portable (standard operators only) float16 bundle: onnx.checker on every graph.
"$debug/dia-export" tests/fixtures/tiny-hf --dac tests/fixtures/tiny-dac-descript --out "$bundle" --target portable --dtype f16 > /dev/null
"$venv/bin/python" scripts/check_bundle.py "$bundle"
echo "all checks passed"
