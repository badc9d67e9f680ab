#!/usr/bin/env bash
# The server's checks from outside, against a real dia-serve on loopback with the tiny bundle:
# the bad-request corpus, the official `openai` Python client, a short concurrent load and the
# web page in headless Chromium (WebDriver). Installs what it needs when missing (Debian's
# chromium and chromium-driver through apt-get, as root; the Python packages of
# scripts/requirements-serve.txt in .venv-serve); a check that cannot run fails, it is never
# skipped. The server runs two generations at once, decoded together on the batching scheduler
# (--max-concurrent 2). Uses the dia-serve and dia-export of cargo's target directory
# (PROFILE=debug by default, as scripts/test.sh builds them).
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${PROFILE:-debug}"

if ! command -v chromium > /dev/null || ! command -v chromedriver > /dev/null; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get > /dev/null; then
    echo "test-server: installing chromium and chromium-driver"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver > /dev/null
  else
    echo "test-server: FAIL: chromium and chromedriver are missing and cannot be installed here (needs root and apt-get); the browser test cannot run" >&2
    exit 1
  fi
fi
venv=.venv-serve
if ! "$venv/bin/python" -c "import openai, selenium" 2> /dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet -r scripts/requirements-serve.txt
fi
py="$venv/bin/python"

if [[ "$profile" == release ]]; then
  cargo build --quiet --locked --release -p dia-serve -p dia-export
else
  cargo build --quiet --locked -p dia-serve -p dia-export
fi
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')${CARGO_BUILD_TARGET:+/$CARGO_BUILD_TARGET}
bin="$target_dir/$profile"
bundle=build/serve-bundle
RUST_LOG=warn "$bin/dia-export" tests/fixtures/tiny-nari --dac tests/fixtures/tiny-dac --out "$bundle" > /dev/null

work=$(mktemp -d)
pid=
cleanup() {
  if [[ -n "$pid" ]]; then kill "$pid" 2> /dev/null || true; wait "$pid" 2> /dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
max_voice=1000000
"$bin/dia-serve" --bundle "$bundle" --ep cpu --port 0 --voices "$work/voices" \
  --max-voice-bytes "$max_voice" --queue 16 --max-concurrent 2 2> "$work/server.log" &
pid=$!
url=
for _ in $(seq 1 600); do
  url=$(sed -n 's/^dia-serve listening on \(http:[^ ]*\)$/\1/p' "$work/server.log")
  [[ -n "$url" ]] && break
  if ! kill -0 "$pid" 2> /dev/null; then
    cat "$work/server.log" >&2
    echo "test-server: FAIL: dia-serve exited before listening" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z "$url" ]]; then
  cat "$work/server.log" >&2
  echo "test-server: FAIL: dia-serve did not start listening within 60 s" >&2
  exit 1
fi
echo "test-server: dia-serve at $url (pid $pid)"

passed=0
run_check() {
  echo "test-server: $1"
  if ! "$py" scripts/server_check.py "$@" --url "$url"; then
    echo "test-server: FAIL: $1 (server log: $work/server.log)" >&2
    tail -n 30 "$work/server.log" >&2
    exit 1
  fi
  passed=$((passed + 1))
}
run_check bad --max-voice-bytes "$max_voice"
run_check openai
run_check load --clients 4 --requests 3
run_check browser --workdir "$work"
# The server is still healthy and has nothing left running.
run_check load --clients 1 --requests 1
if ! kill -0 "$pid" 2> /dev/null; then
  echo "test-server: FAIL: dia-serve died" >&2
  exit 1
fi
echo "server checks: $passed passed, 0 failed"
