#!/usr/bin/env bash
set -uo pipefail
carry=.device-carry; work=/tmp/dia-gpu; frames=300
bash $carry/unpack-cuda-ep.sh $carry/SHA256 || exit 1
source /opt/ort-gpu/env.sh
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $carry/whl/*.whl && export PYTHONPATH=/tmp/site
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
[[ -f $work/ckpt/config.json ]] || python3 scripts/make_random_full.py --out $work/ckpt --quiet
for dt in f32 f16; do [[ -f $work/b-$dt/manifest.json ]] || $carry/bin/dia-export $work/ckpt --out $work/b-$dt --dtype $dt > /dev/null 2>&1; done
run() { # peak GPU memory sampled while dia-run runs
  ( while :; do nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits; sleep 0.05; done ) > $work/mem.log & s=$!
  $carry/bin/dia-run --ep cuda --text "$text" --temperature 0 --bench --json "$@" 2>&1 | grep -v "^   \|^  [0-9]\|WARN"
  kill $s; echo "gpu_memory_used_peak_mib=$(sort -n $work/mem.log | tail -1)"
}
for g in "" "--cuda-graph"; do
  echo "== dia-run f16 cuda $g"; run --bundle $work/b-f16 --max-tokens $((frames+1)) $g
  echo "== dia-run f16 cuda $g, 1000 frames"; run --bundle $work/b-f16 --max-tokens 1001 $g
done
echo "== dia-run f32 cuda --cuda-graph"; run --bundle $work/b-f32 --max-tokens $((frames+1)) --cuda-graph
echo "== f16 vs f32 accuracy (teacher-forced, 200 steps)"; $carry/bin/compare $work/b-f32 $work/b-f16 "$text" 200
echo "== nari-labs eager"; python3 scripts/bench_nari.py --dia-repo $carry/dia --ckpt $work/ckpt --frames $frames
echo "== nari-labs torch.compile"
timeout 330 python3 scripts/bench_nari.py --dia-repo $carry/dia --ckpt $work/ckpt --frames $frames --compile --compile-timeout 300
