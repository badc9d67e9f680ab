#!/usr/bin/env bash
# Run 13 (one `device run` call, carrying .device-carry/run): run 12 again after its finding.
# CUDA-graph mode keeps one decoder state per text bucket (graph id = bucket) and utterances
# take turns whole across all buckets, as before issue 10; other modes pool states freely.
# Checks: the embedding example's three concurrent lines give the same codes with and without
# --cuda-graph, later rounds on the refilled states give the first round's codes (tiny fixture
# and full-size random checkpoint, fused f16); one dia-run utterance gives the same codes with
# and without the graph; single-stream speed, 1000 greedy steps twice.
set -uo pipefail
carry=.device-carry/run; work=/tmp/dia-gpu; mkdir -p $work
bash $carry/unpack-cuda-ep.sh $carry/SHA256 || exit 1
source /opt/ort-gpu/env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."
check() {  # BUNDLE: concurrent lines, with and without the graph, several rounds; one CLI run
  $carry/bin/generate $1 $work/plain --ep cuda --rounds 2
  $carry/bin/generate $1 $work/graph --ep cuda --cuda-graph --rounds 3
  for i in 0 1 2; do
    cmp $work/plain/line-$i.npy $work/graph/line-$i.npy && echo "line $i: identical codes with and without the graph"
  done
  for g in "" "--cuda-graph"; do
    $carry/bin/dia-run --bundle $1 --ep cuda $g --text "$text" --temperature 0 --max-tokens 200 \
      --save-codes $work/codes$g.npy --quiet > /dev/null 2>&1
  done
  cmp $work/codes.npy $work/codes--cuda-graph.npy && echo "dia-run: identical codes with and without the graph"
}
echo "== tiny fused f16"
$carry/bin/dia-export tests/fixtures/tiny-nari --out $work/tiny-f16 --dtype f16 > /dev/null 2>&1
check $work/tiny-f16
echo "== full-size fused f16"
[[ -f $work/ckpt/config.json ]] || python3 scripts/make_random_full.py --out $work/ckpt --quiet > /dev/null
$carry/bin/dia-export $work/ckpt --out $work/fused-f16 --dtype f16 > /dev/null 2>&1
sync
check $work/fused-f16
for rep in 1 2; do
  echo "== dia-run fused-f16 --cuda-graph, 1000 steps (run $rep)"
  $carry/bin/dia-run --bundle $work/fused-f16 --ep cuda --cuda-graph --text "$text" --temperature 0 \
    --max-tokens 1001 --bench --json 2>&1 | grep '^{'
done
