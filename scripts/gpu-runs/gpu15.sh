#!/usr/bin/env bash
# Run 15 on the lent H200 (issues 11 and 13), carrying .device-carry/run (release binaries
# dia-export, dia-run, examples stream and batch_bench; nari-labs/dia's dia/ package; pydantic
# wheels; the ONNX Runtime CUDA parts' unpack-cuda-ep.sh and SHA256).
#   stage a: full-size random checkpoint and DAC, fused f16 bundle with the codec; batched
#            decoding B = 1..256 with the CUDA graph, and a few B without it.
#   stage b: nari-labs/dia's own batch generate (eager f16) B = 1, 8, 32, 64 in the same
#            session; streaming first audio with the codec's cuDNN settings varied, and an ONNX
#            Runtime profile of the codec.
# Usage (one `device run` call per stage, back to back): bash scripts/gpu-runs/gpu15.sh a|b
set -uo pipefail
stage="$1"
carry=.device-carry/run; work=/tmp/dia-gpu; mkdir -p $work
bash $carry/unpack-cuda-ep.sh $carry/SHA256 || exit 1
source /opt/ort-gpu/env.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
text="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices."

if [[ $stage == a ]]; then
  t=$(date +%s)
  [[ -f $work/ckpt/config.json ]] || python3 scripts/make_random_full.py --out $work/ckpt --quiet > /dev/null
  [[ -f $work/dac/config.json ]] || python3 -c "
import sys, torch
from transformers import DacConfig, DacModel
torch.manual_seed(0)
DacModel(DacConfig(sampling_rate=44100)).save_pretrained(sys.argv[1])" $work/dac > /dev/null 2>&1
  [[ -f $work/fused-f16/manifest.json ]] || $carry/bin/dia-export $work/ckpt --dac $work/dac --out $work/fused-f16 --dtype f16 > /dev/null 2>&1
  sync
  echo "set-up took $(( $(date +%s) - t )) s"
  echo "== batch_bench --cuda-graph, 300 frames each, text bucket 128"
  $carry/bin/batch_bench $work/fused-f16 --ep cuda --cuda-graph --slots 1,2,4,8,16,32,64,128,256 --frames 300 --text-len 128
  echo "== batch_bench without the CUDA graph"
  $carry/bin/batch_bench $work/fused-f16 --ep cuda --slots 1,8,64 --frames 300 --text-len 128
  echo "== batch_bench --cuda-graph, text bucket 1024 (the bundle's maximum)"
  $carry/bin/batch_bench $work/fused-f16 --ep cuda --cuda-graph --slots 1,64 --frames 300
fi

if [[ $stage == b ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $carry/whl/*.whl && export PYTHONPATH=/tmp/site
  echo "== nari-labs/dia batch generate, eager float16, 300 frames"
  python3 scripts/bench_nari.py --dia-repo $carry --ckpt $work/ckpt --frames 300 --batch 1,8,32,64 2>&1 | grep '^{'
  for v in "" "--conv-heuristic" "--conv1d-nc1d" "--conv-heuristic --conv1d-nc1d"; do
    echo "== stream example --cuda-graph $v"
    $carry/bin/stream $work/fused-f16 --ep cuda --cuda-graph --utterances 3 $v
  done
  echo "== codec profile (stream example, --cuda-graph, 2 utterances)"
  rm -f /tmp/prof_*; $carry/bin/stream $work/fused-f16 --ep cuda --cuda-graph --utterances 2 --profile /tmp/prof > /dev/null
  python3 - <<'EOF'
import collections, glob, json
for f in sorted(glob.glob("/tmp/prof_dac_decoder*.json")) + sorted(glob.glob("/tmp/prof_encoder*.json")):
    ev = json.load(open(f))
    runs = [e for e in ev if e.get("name") == "model_run"]
    nodes = [e for e in ev if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per = collections.defaultdict(lambda: [0, 0.0])
    prov = collections.Counter()
    for n in nodes:
        a = n.get("args", {})
        k = (a.get("op_name", "?"), a.get("provider", "?"))
        per[k][0] += 1; per[k][1] += n["dur"] / 1e3
        prov[a.get("provider", "?")] += 1
    print(f, "runs:", len(runs), "run ms:", [round(r["dur"] / 1e3, 1) for r in runs][:12])
    print("  nodes by provider:", dict(prov))
    for (op, p), (c, ms) in sorted(per.items(), key=lambda kv: -kv[1][1])[:12]:
        print(f"  {op:28s} {p:24s} {c:6d} calls {ms:10.1f} ms")
EOF
fi
