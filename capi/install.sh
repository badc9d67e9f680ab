#!/usr/bin/env bash
# Installs libdia (shared and static), dia.h, dia.pc and the CMake package under PREFIX:
#   cargo build -p dia-capi --release && capi/install.sh PREFIX [PROFILE]
# PROFILE is cargo's profile directory (release by default; debug for a debug build).
set -euo pipefail
[[ $# -ge 1 ]] || { echo "usage: capi/install.sh PREFIX [release|debug]" >&2; exit 2; }
cd "$(dirname "$0")/.."
prefix="$(mkdir -p "$1" && cd "$1" && pwd)"
profile="${2:-release}"
target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')${CARGO_BUILD_TARGET:+/$CARGO_BUILD_TARGET}
libs="$target_dir/$profile"
version=$(sed -n 's/^#define DIA_VERSION_STRING "\(.*\)"$/\1/p' capi/include/dia.h)
mkdir -p "$prefix/lib/pkgconfig" "$prefix/lib/cmake/dia" "$prefix/include"
found=0
for f in libdia.so libdia.dylib libdia.a; do
  if [[ -f "$libs/$f" ]]; then
    cp "$libs/$f" "$prefix/lib/"
    found=1
  fi
done
[[ $found == 1 ]] || { echo "install.sh: no libdia in $libs: build it first (cargo build -p dia-capi, with --release for release)" >&2; exit 1; }
cp capi/include/dia.h "$prefix/include/"
sed -e "s|@PREFIX@|$prefix|" -e "s|@VERSION@|$version|" capi/dia.pc.in | grep -v '^#' > "$prefix/lib/pkgconfig/dia.pc"
cp capi/cmake/diaConfig.cmake "$prefix/lib/cmake/dia/"
echo "libdia $version installed in $prefix"
