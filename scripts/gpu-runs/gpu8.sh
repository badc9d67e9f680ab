#!/usr/bin/env bash
# Run 8 (one `device run` call): how much the cuda-target step varies between runs on one
# machine: the same float16 CUDA-graph benchmark five times back to back, then once after 20 s
# idle, with the GPU's clocks and performance state before each.
set -uo pipefail
carry=.device-carry; work=/tmp/dia-gpu; mkdir -p $work
bash $carry/unpack-cuda-ep.sh $carry/SHA256 || exit 1
source /opt/ort-gpu/env.sh
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."
[[ -f $work/ckpt/config.json ]] || python3 scripts/make_random_full.py --out $work/ckpt --quiet > /dev/null
$carry/bin/dia-export $work/ckpt --out $work/cuda-f16 --target cuda > /dev/null 2>&1
sync
state() { nvidia-smi --query-gpu=pstate,clocks.sm,clocks.mem,power.draw,temperature.gpu --format=csv,noheader; }
for rep in 1 2 3 4 5 idle; do
  [[ $rep == idle ]] && sleep 20
  echo "== run $rep; before: $(state)"
  $carry/bin/dia-run --bundle $work/cuda-f16 --ep cuda --cuda-graph --text "$text" --temperature 0 \
    --max-tokens 1001 --bench --json 2>&1 | grep '^{' | cut -c1-400
done
