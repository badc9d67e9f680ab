#!/usr/bin/env bash
# Run 16 (issues 11 and 13), carrying .device-carry/run as run 15 did, after run 15's findings:
# the codec now defaults to cuDNN's heuristic algorithm choice and [N, C, 1, L] 1-D convolutions,
# and batch_bench reports steady decoding apart from the utterances' admission (encoder runs).
#   stage a: set-up (as run 15); batched decoding B = 1..128 with the CUDA graph; nari-labs/dia's
#            batch generate B = 1, 8, 32, 64 in the same session.
#   stage b: streaming first audio with the new codec defaults (64-frame windows, heuristic
#            search), first chunk of 2 and 4 frames, exhaustive search, exact-length calls;
#            the CLI's cold start (load timings per graph, first audio).
# Usage (one `device run` call per stage, back to back): bash scripts/gpu-runs/gpu16.sh a|b
set -uo pipefail
stage="$1"
carry=.device-carry/run; work=/tmp/dia-gpu; mkdir -p $work
bash $carry/unpack-cuda-ep.sh $carry/SHA256 || exit 1
source /opt/ort-gpu/env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."
[[ -f $work/ckpt/config.json ]] || python3 scripts/make_random_full.py --out $work/ckpt --quiet > /dev/null
[[ -f $work/dac/config.json ]] || python3 -c "
import sys, torch
from transformers import DacConfig, DacModel
torch.manual_seed(0)
DacModel(DacConfig(sampling_rate=44100)).save_pretrained(sys.argv[1])" $work/dac > /dev/null 2>&1
[[ -f $work/fused-f16/manifest.json ]] || $carry/bin/dia-export $work/ckpt --dac $work/dac --out $work/fused-f16 --dtype f16 > /dev/null 2>&1
sync

if [[ $stage == a ]]; then
  echo "== batch_bench --cuda-graph, 300 frames each, text bucket 128"
  $carry/bin/batch_bench $work/fused-f16 --ep cuda --cuda-graph --slots 1,2,4,8,16,32,48,64,96,128 --frames 300 --text-len 128
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $carry/whl/*.whl && export PYTHONPATH=/tmp/site
  echo "== nari-labs/dia batch generate, eager float16, 300 frames"
  python3 scripts/bench_nari.py --dia-repo $carry --ckpt $work/ckpt --frames 300 --batch 1,8,32,64 2>&1 | grep '^{'
fi

if [[ $stage == b ]]; then
  for v in "--first-chunk 4" "--first-chunk 4 --conv-exhaustive" "--first-chunk 2 --conv-exhaustive" "--first-chunk 4 --codec-window 0"; do
    echo "== stream example --cuda-graph $v (default codec: 64-frame windows, heuristic search, [N, C, 1, L])"
    $carry/bin/stream $work/fused-f16 --ep cuda --cuda-graph --utterances 3 $v
  done
  for rep in 1; do
    echo "== dia-run --stream --out - (cold process), --cuda-graph, run $rep"
    $carry/bin/dia-run --bundle $work/fused-f16 --ep cuda --cuda-graph --text "$text" --temperature 0 \
      --max-tokens 200 --out - --json 2>&1 > /dev/null | grep '^{'
  done
fi
