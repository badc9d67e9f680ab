#!/usr/bin/env bash
# Builds libdia and runs its examples on the tiny bundle (scripts/test.sh calls this, so CI
# does): the C example (shared and static library) and the Python (ctypes) one must give
# exactly the codes `dia-run --save-codes` gives for the same text and seed, a short script
# and one long enough to be split into segments; the C example runs under valgrind with no
# leak of ours; and a host that loaded ONNX Runtime itself keeps ONE copy in the process.
set -euo pipefail
cd "$(dirname "$0")/../.."

scripts/setup-onnxruntime.sh > /dev/null
cargo build --locked -p dia-capi -p dia-run -p dia-export
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')${CARGO_BUILD_TARGET:+/$CARGO_BUILD_TARGET}
debug="$target_dir/debug"
case "$(uname -s)" in
  Darwin) dylib="$debug/libdia.dylib" ;;
  *) dylib="$debug/libdia.so" ;;
esac

# Installs a missing tool with apt-get when root (CI runs as root on a fresh machine).
need() {
  command -v "$1" > /dev/null && return
  if [[ $(id -u) -eq 0 ]] && command -v apt-get > /dev/null; then
    apt-get update -qq && apt-get install -y -qq "$2" > /dev/null
  else
    echo "capi examples: $1 is missing: install it (apt-get install $2)" >&2
    exit 1
  fi
}

out=build/capi
rm -rf "$out"
mkdir -p "$out"
bundle="$out/bundle"
"$debug/dia-export" tests/fixtures/tiny-nari --dac tests/fixtures/tiny-dac --out "$bundle" > /dev/null

cc="${CC:-cc}"
warn=(-std=c99 -Wall -Wextra -Werror)
cflags=("${warn[@]}" -I capi/include)
"$cc" "${cflags[@]}" capi/examples/speak.c -L "$debug" -ldia -Wl,-rpath,"$debug" -o "$out/speak"
static_libs=(-lpthread -lm)
[[ "$(uname -s)" == Linux ]] && static_libs+=(-ldl -lgcc_s)
"$cc" "${cflags[@]}" capi/examples/speak.c "$debug/libdia.a" "${static_libs[@]}" -o "$out/speak-static"

# name, seed, text: a script of one generation and one the planner splits (the tiny bundle
# has 256 frames, so a few sentences make several segments, each prompted with the last).
cases=(
  "short|7|[S1] Hello there. [S2] Hi!"
  "long|3|[S1] This is a longer script. It has several sentences, so it must be split. [S2] Indeed it does, and the voices carry over. [S1] Good."
)
for c in "${cases[@]}"; do
  IFS='|' read -r name seed text <<< "$c"
  "$debug/dia-run" --bundle "$bundle" --text "$text" --seed "$seed" --save-codes "$out/$name-dia-run.npy" --quiet 2> /dev/null
  "$out/speak" "$bundle" "$text" "$out/$name-c" "$seed"
  "$out/speak-static" "$bundle" "$text" "$out/$name-c-static" "$seed" > /dev/null
  python3 capi/examples/speak.py --lib "$dylib" --seed "$seed" "$bundle" "$text" "$out/$name-py"
  for got in c-push c-pull c-static-push c-static-pull py-push py-pull; do
    if ! cmp -s "$out/$name-dia-run.npy" "$out/$name-$got.npy"; then
      echo "capi examples: $name: the codes of $got differ from dia-run's" >&2
      exit 1
    fi
  done
  echo "capi examples: $name: C (shared, static) and Python codes equal dia-run's"
done

# Three threads generating on one model at once, from C: each gets the codes it gets alone.
"$cc" "${cflags[@]}" capi/tests/threads.c -L "$debug" -ldia -lpthread -Wl,-rpath,"$debug" -o "$out/threads"
"$out/threads" "$bundle"

if [[ "$(uname -s)" == Linux ]]; then
  # A host that dlopens its own copy of ONNX Runtime (another file than .onnxruntime's),
  # then loads a model with no library path: one libonnxruntime mapped, the host's.
  "$cc" "${cflags[@]}" capi/tests/one_ort.c -L "$debug" -ldia -ldl -Wl,-rpath,"$debug" -o "$out/one_ort"
  mkdir -p "$out/host-ort"
  cp .onnxruntime/libonnxruntime.so "$out/host-ort/libonnxruntime.so"
  env -u ORT_DYLIB_PATH "$out/one_ort" "$out/host-ort/libonnxruntime.so" "$bundle"
  # No host copy: DiaModelOptions.ort_library_path is the one loaded, and a wrong one says so.
  env -u ORT_DYLIB_PATH "$out/one_ort" --option "$out/host-ort/libonnxruntime.so" "$bundle"
  env -u ORT_DYLIB_PATH "$out/one_ort" --missing "$out/host-ort/no-such-libonnxruntime.so" "$bundle"

  need valgrind valgrind
  # Possible and definite leaks are errors; the suppressions cover ONNX Runtime's own
  # process-lifetime allocations only (see the file).
  log="$out/valgrind.log"
  if ! valgrind --leak-check=full --show-leak-kinds=definite,possible \
      --errors-for-leak-kinds=definite,possible --error-exitcode=99 \
      --suppressions=capi/examples/valgrind.supp --log-file="$log" \
      "$out/speak" "$bundle" "[S1] Hi." "$out/valgrind" 7 40 > /dev/null; then
    cat "$log" >&2
    echo "capi examples: valgrind found errors or leaks (log above)" >&2
    exit 1
  fi
  if ! grep -qE "definitely lost: 0 bytes|All heap blocks were freed" "$log"; then
    cat "$log" >&2
    echo "capi examples: valgrind's summary does not say 'definitely lost: 0 bytes'" >&2
    exit 1
  fi
  echo "capi examples: valgrind: no leaks and no errors of ours ($(grep -oE 'suppressed: [0-9,]+ bytes' "$log" | head -n 1) of ONNX Runtime's own)"
fi
# The README's C loop, as printed there, run in a directory whose "bundle" is the tiny one.
python3 - "$out/readme.c" <<'PY'
import re, sys
readme = open("README.md").read()
section = readme[readme.index("## Embed from C, C++, Swift or Python"):]
open(sys.argv[1], "w").write(re.search(r"```c\n(.*?)```", section, re.S).group(1))
PY
"$cc" "${cflags[@]}" "$out/readme.c" -L "$debug" -ldia -Wl,-rpath,"$debug" -o "$out/readme"
mkdir -p "$out/readme-run"
ln -s ../bundle "$out/readme-run/bundle"
bytes=$(cd "$out/readme-run" && ../readme | wc -c)
if [[ $bytes -le 0 || $((bytes % 4)) -ne 0 ]]; then
  echo "capi examples: the README's C loop wrote $bytes bytes of samples" >&2
  exit 1
fi
echo "capi examples: the README's C loop streamed $((bytes / 4)) samples"

# Packaging: install into a prefix, then build against it with pkg-config and with CMake
# (the C example shared and static, and a C++ one), as a user of the package would.
prefix="$PWD/$out/prefix"
capi/install.sh "$prefix" debug > /dev/null
short_text="[S1] Hello there. [S2] Hi!"
# shellcheck disable=SC2046 # pkg-config's flags are words
"$cc" "${warn[@]}" capi/examples/speak.c \
  $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs dia) \
  -Wl,-rpath,"$prefix/lib" -o "$out/speak-pkg-config"
"$out/speak-pkg-config" "$bundle" "$short_text" "$out/pkg-config" 7 > /dev/null
need cmake cmake
cmake -S capi/examples -B "$out/cmake" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_FLAGS="-Wall -Wextra -Werror" -DCMAKE_CXX_FLAGS="-Wall -Wextra -Werror" > /dev/null
cmake --build "$out/cmake" > /dev/null
"$out/cmake/speak" "$bundle" "$short_text" "$out/cmake-shared" 7 > /dev/null
"$out/cmake/speak_static" "$bundle" "$short_text" "$out/cmake-static" 7 > /dev/null
for got in pkg-config cmake-shared cmake-static; do
  if ! cmp -s "$out/short-dia-run.npy" "$out/$got-push.npy"; then
    echo "capi examples: the codes of the $got build differ from dia-run's" >&2
    exit 1
  fi
done
"$out/cmake/stream_cxx" "$bundle" "$short_text"
echo "capi examples: pkg-config and CMake (C shared and static, C++) builds work"
echo "capi examples passed"
