#!/usr/bin/env bash
# Puts ONNX Runtime's shared library (from the official `onnxruntime` wheel on PyPI) into
# .onnxruntime/ at the repository root. Idempotent: does nothing when the library is there.
# dia-run finds it there by itself; ORT_DYLIB_PATH overrides the location.
set -euo pipefail
ORT_VERSION="${ORT_VERSION:-1.31.1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.onnxruntime"
case "$(uname -s)" in
  Darwin) lib="$dest/libonnxruntime.dylib" ;;
  *) lib="$dest/libonnxruntime.so" ;;
esac
stamp="$dest/VERSION"

if [[ -f "$lib" && -f "$stamp" && "$(cat "$stamp")" == "$ORT_VERSION" ]]; then
  echo "onnxruntime $ORT_VERSION already in $dest"
  exit 0
fi

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) plat=(--platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64) ;;
  Linux-aarch64) plat=(--platform manylinux_2_27_aarch64 --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64) ;;
  Darwin-arm64) plat=(--platform macosx_13_0_arm64 --platform macosx_14_0_arm64 --platform macosx_11_0_arm64) ;;
  *) echo "setup-onnxruntime: no onnxruntime wheel known for $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: "${plat[@]}" \
  --python-version 3.11 --implementation cp -d "$tmp" "onnxruntime==$ORT_VERSION"
wheel="$(ls "$tmp"/onnxruntime-*.whl)"
python3 - "$wheel" "$tmp/unpacked" <<'PY'
import sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if "/capi/libonnxruntime" in n]
    if not names:
        sys.exit(f"no libonnxruntime in {wheel}")
    for n in names:
        z.extract(n, out)
PY
mkdir -p "$dest"
# The wheel's main library (not a provider plugin such as libonnxruntime_providers_*).
src="$(find "$tmp/unpacked" -name 'libonnxruntime*' -type f ! -name '*providers*' | head -n 1)"
# Copy to a temporary name and rename, so an interrupted run leaves no half-written library.
cp "$src" "$dest/.libonnxruntime.tmp"
mv "$dest/.libonnxruntime.tmp" "$lib"
echo "$ORT_VERSION" > "$stamp"
echo "onnxruntime $ORT_VERSION -> $lib"
