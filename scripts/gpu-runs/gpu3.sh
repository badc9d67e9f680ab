#!/usr/bin/env bash
set -uo pipefail
carry=.device-carry; work=/tmp/dia-gpu
bash $carry/unpack-cuda-ep.sh $carry/SHA256 || exit 1
source /opt/ort-gpu/env.sh
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."
[[ -f $work/ckpt/config.json ]] || python3 scripts/make_random_full.py --out $work/ckpt --quiet
for dt in f16; do [[ -f $work/b-$dt/manifest.json ]] || $carry/bin/dia-export $work/ckpt --out $work/b-$dt --dtype $dt > /dev/null 2>&1; done
[[ -f $work/b-f16-256/manifest.json ]] || $carry/bin/dia-export $work/ckpt --out $work/b-f16-256 --dtype f16 --max-text-len 256 --max-frames 1024 > /dev/null 2>&1
for g in "" "--cuda-graph"; do
  for b in b-f16 b-f16-256; do
    echo "== dia-run $b cuda $g, 1000 frames"
    $carry/bin/dia-run --bundle $work/$b --ep cuda $g --text "$text" --temperature 0 --max-tokens 1001 --bench --json 2>&1 | grep -v "^   \|^  [0-9]\|WARN"
  done
done
