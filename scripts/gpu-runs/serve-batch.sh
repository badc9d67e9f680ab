#!/usr/bin/env bash
# Not yet run: dia-serve on the lent GPU with and without the batching scheduler (issue 14),
# carrying .device-carry/serve (release dia-serve and dia-export; the ONNX Runtime CUDA parts'
# unpack-cuda-ep.sh and SHA256; the parts themselves carried to /opt/parts first, as
# ../shared/device/README.md says). A random full-size checkpoint, a fused f16 bundle with the
# tiny DAC (the codec is not what is measured), then 8 concurrent streamed requests of 300
# frames against each server setting (scripts/bench-serve-batch.sh). About 5 minutes.
# Usage (one `device run` call, results in $OUT): bash scripts/gpu-runs/serve-batch.sh
set -uo pipefail
c=.device-carry/serve
bash $c/unpack-cuda-ep.sh $c/SHA256 || exit 1
source /opt/ort-gpu/env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee $OUT/gpu.txt
w=/tmp/sb; mkdir -p $w
t0=$(date +%s)
[[ -f $w/ckpt/config.json ]] || python3 scripts/make_random_full.py --out $w/ckpt --quiet > /dev/null
t1=$(date +%s)
[[ -f $w/b/manifest.json ]] || $c/bin/dia-export $w/ckpt --dac tests/fixtures/tiny-dac --out $w/b --target fused --dtype f16 > /dev/null 2>&1
t2=$(date +%s); sync
echo "ckpt $((t1-t0)) s, export $((t2-t1)) s" | tee -a $OUT/gpu.txt
scripts/bench-serve-batch.sh $c/bin $w/b cuda 8 1 300 \
  '--max-concurrent 1 --batch 0' '--max-concurrent 8 --batch 0' '--max-concurrent 8' \
  '--max-concurrent 8 --batch-text-len 128' 2>&1 | tee $OUT/bench.jsonl
