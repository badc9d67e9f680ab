#!/usr/bin/env bash
# dia-serve with and without the batching scheduler: for each setting, a fresh server and
# CLIENTS concurrent clients x REQUESTS streamed requests (scripts/server_check.py load, same
# seed), then the server's /metrics. Prints one JSON line per setting: the client's summary
# and the server's frames, batch steps and utterance steps, frames/s over the wall time.
#
#   scripts/bench-serve-batch.sh BIN_DIR BUNDLE EP CLIENTS REQUESTS MAX_TOKENS 'SETTING' ...
#
# BIN_DIR holds dia-serve; a SETTING is dia-serve flags, e.g. '--max-concurrent 4 --batch 0'.
# benchmarks/server.md records the runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$1" bundle="$2" ep="$3" clients="$4" requests="$5" max_tokens="$6"
shift 6
work=$(mktemp -d)
pid=
stop_server() {
  if [[ -n "$pid" ]]; then kill "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true; fi
  pid=
}
trap 'stop_server; rm -rf "$work"' EXIT
metrics() {
  python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1] + "/metrics").read().decode())' "$url"
}
for setting in "$@"; do
  # shellcheck disable=SC2086
  "$bin/dia-serve" --bundle "$bundle" --ep "$ep" --port 0 --queue 256 $setting 2> "$work/server.log" &
  pid=$!
  url=
  for _ in $(seq 1 1200); do
    url=$(sed -n 's/^dia-serve listening on \(http:[^ ]*\)$/\1/p' "$work/server.log")
    [[ -n "$url" ]] && break
    kill -0 "$pid" 2> /dev/null || break
    sleep 0.1
  done
  if [[ -z "$url" ]]; then
    cat "$work/server.log" >&2
    echo "bench-serve-batch: dia-serve did not start ($setting)" >&2
    exit 1
  fi
  # Warm-up: one request (first runs allocate, CUDA graphs are captured).
  python3 scripts/server_check.py load --url "$url" --clients 1 --requests 1 \
    --max-tokens "$max_tokens" --timeout 600 > /dev/null || true
  before=$(metrics)
  load=$(python3 scripts/server_check.py load --url "$url" --clients "$clients" \
    --requests "$requests" --max-tokens "$max_tokens" --timeout 600 || true)
  after=$(metrics)
  stop_server
  python3 - "$setting" "$load" "$before" "$after" << 'PY'
import json, sys
setting, load, before, after = sys.argv[1:]
def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None
load = json.loads(load.strip().splitlines()[-1])
out = {"setting": setting, **{k: load[k] for k in ("wall_seconds", "latency_p50", "latency_p99",
       "first_audio_p50", "first_audio_p99", "audio_seconds_each", "by_status", "provider")}}
for name in ("dia_frames_total", "dia_batch_steps_total", "dia_batch_utterance_steps_total"):
    a, b = metric(after, name), metric(before, name)
    out[name.removeprefix("dia_")] = None if a is None else a - (b or 0)
out["frames_per_second"] = round(out["frames_total"] / load["wall_seconds"], 1)
if out["batch_steps_total"]:
    out["mean_batch"] = round(out["batch_utterance_steps_total"] / out["batch_steps_total"], 2)
out["batch_peak"] = metric(after, "dia_batch_peak")
print(json.dumps(out))
PY
done
