#!/usr/bin/env bash
set -uo pipefail
carry=.device-carry; work=/tmp/dia-gpu
bash $carry/unpack-cuda-ep.sh $carry/SHA256 || exit 1
source /opt/ort-gpu/env.sh
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."
[[ -f $work/ckpt/config.json ]] || python3 scripts/make_random_full.py --out $work/ckpt --quiet
$carry/bin/dia-export $work/ckpt --out $work/b-f16 --dtype f16 > /dev/null 2>&1
for g in "" "--cuda-graph"; do
  echo "== dia-run f16 cuda $g (fused RMSNorm), 1000 frames"
  $carry/bin/dia-run --bundle $work/b-f16 --ep cuda $g --text "$text" --temperature 0 --max-tokens 1001 --bench --json 2>&1 | grep -v "^   \|^  [0-9]\|WARN"
done
