#!/usr/bin/env bash
# Run 10 (one `device run` call): several utterances on one model in CUDA-graph mode. The
# embedding example generates three lines from three threads (text buckets 32 and 64, so one
# bucket's captured graph is replayed for a second utterance over refilled buffers); with
# --cuda-graph the codes must equal those of the run without it (fresh state per utterance).
set -uo pipefail
carry=.device-carry; work=/tmp/dia-gpu; mkdir -p $work
bash $carry/unpack-cuda-ep.sh $carry/SHA256 || exit 1
source /opt/ort-gpu/env.sh
[[ -f $work/ckpt/config.json ]] || python3 scripts/make_random_full.py --out $work/ckpt --quiet > /dev/null
$carry/bin/dia-export $work/ckpt --out $work/fused-f16 --dtype f16 > /dev/null 2>&1
sync
$carry/bin/generate $work/fused-f16 $work/plain --ep cuda
$carry/bin/generate $work/fused-f16 $work/graph --ep cuda --cuda-graph
for i in 0 1 2; do
  cmp $work/plain/line-$i.npy $work/graph/line-$i.npy && echo "line $i: identical codes"
done
