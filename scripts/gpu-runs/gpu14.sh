#!/usr/bin/env bash
# Run 14 (one `device run` call, carrying .device-carry/run): streaming on the H200 (issue 11).
# Full-size random Dia checkpoint and a random DAC of the 44.1 kHz shape (transformers'
# DacModel, made there), fused f16 bundle with the codec. The stream example loads the model
# once and streams the same two-sentence script three times (greedy, 200 frames, EOS ignored),
# with and without the CUDA graph: the first utterance is the cold one, the others are what an
# app or a server sees. Then the CLI's cold run (`dia-run --stream --out -`).
set -uo pipefail
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
$carry/bin/dia-export $work/ckpt --dac $work/dac --out $work/fused-f16 --dtype f16 > /dev/null 2>&1
sync
echo "== stream example, --cuda-graph"
$carry/bin/stream $work/fused-f16 --ep cuda --cuda-graph --utterances 3
echo "== stream example, no graph"
$carry/bin/stream $work/fused-f16 --ep cuda --utterances 3
echo "== dia-run --stream --out - (cold), --cuda-graph"
$carry/bin/dia-run --bundle $work/fused-f16 --ep cuda --cuda-graph --text "$text" --temperature 0 \
  --max-tokens 200 --out - --json 2>&1 > /dev/null | grep '^{'
