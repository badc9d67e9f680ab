#!/usr/bin/env bash
# Load, soak and bad requests against a release dia-serve with the tiny bundle, on loopback
# only; every run is bounded in requests and time and stops by itself. The results (one JSON
# line per check) go to OUT_DIR (default build/server-load) and stdout; benchmarks/server.md
# records them.
#
#   scripts/server-load.sh [OUT_DIR]
#
# 0. one client x 20 requests (no queueing: the baseline);
# 1. 16 concurrent clients x 10 streamed requests, --max-concurrent 1 --queue 16 (all fit);
# 2. the same with --queue 4: the excess gets 503 by design;
# 3. 500 sequential requests, resident memory (VmRSS) sampled every 25: <= 5% growth after
#    the 50-request warm-up;
# 4. the bad-request corpus, then a good request (the server is still healthy).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/server-load}"
mkdir -p "$out"

scripts/setup-onnxruntime.sh > /dev/null
venv=.venv-serve
if ! "$venv/bin/python" -c "import openai, selenium" 2> /dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r scripts/requirements-serve.txt
fi
py="$venv/bin/python"
cargo build --quiet --locked --release -p dia-serve -p dia-export
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')${CARGO_BUILD_TARGET:+/$CARGO_BUILD_TARGET}
bin="$target_dir/release"
bundle=build/serve-load-bundle
"$bin/dia-export" tests/fixtures/tiny-nari --dac tests/fixtures/tiny-dac --out "$bundle" > /dev/null 2>&1

work=$(mktemp -d)
pid=
stop_server() {
  if [[ -n "$pid" ]]; then kill "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true; fi
  pid=
}
trap 'stop_server; rm -rf "$work"' EXIT

# start_server ARGS...: sets pid and url.
start_server() {
  "$bin/dia-serve" --bundle "$bundle" --ep cpu --port 0 --voices "$work/voices" "$@" 2> "$work/server.log" &
  pid=$!
  url=
  for _ in $(seq 1 600); do
    url=$(sed -n 's/^dia-serve listening on \(http:[^ ]*\)$/\1/p' "$work/server.log")
    [[ -n "$url" ]] && return 0
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  cat "$work/server.log" >&2
  echo "server-load: dia-serve did not start" >&2
  exit 1
}

{
  echo "{\"machine\": \"$(uname -srm)\", \"cpu\": \"$(lscpu | sed -n 's/^Model name: *//p' | head -n 1)\", \"cores\": $(nproc), \"memory_gb\": $(awk '/MemTotal/ {printf "%.1f", $2 / 1048576}' /proc/meminfo), \"commit\": \"$(git rev-parse --short HEAD)\"}"
} | tee "$out/machine.json"

start_server --max-concurrent 1 --queue 16
"$py" scripts/server_check.py load --url "$url" --clients 1 --requests 20 --timeout 300 | tee "$out/load-single.json"
"$py" scripts/server_check.py load --url "$url" --clients 16 --requests 10 --timeout 300 | tee "$out/load-queue16.json"
curl -s "$url/metrics" > "$out/metrics-after-load.txt"
stop_server

start_server --max-concurrent 1 --queue 4
"$py" scripts/server_check.py load --url "$url" --clients 16 --requests 10 --timeout 300 | tee "$out/load-queue4.json"
stop_server

start_server --max-concurrent 1 --queue 16
"$py" scripts/server_check.py soak --url "$url" --pid "$pid" --requests 500 --warmup 50 --every 25 --max-seconds 1500 | tee "$out/soak.json"
"$py" scripts/server_check.py bad --url "$url" | tee "$out/bad.json"
curl -s "$url/metrics" > "$out/metrics-after-soak.txt"
stop_server
echo "server-load: results in $out"
