#!/usr/bin/env python3
"""Summarise an ONNX Runtime profile written by `dia-run --ort-profile PREFIX`: per run of the
decoder step, how many nodes ran, of which op types and providers, and the time ONNX Runtime
spent in each op type (on the CPU provider that is the kernels' time; on the CUDA provider it
is the host time to launch them, since the GPU runs them asynchronously).

    python3 scripts/ort_profile_summary.py PROFILE.json [--skip 5]
"""
import argparse
import collections
import json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("profile")
    ap.add_argument("--skip", type=int, default=5, help="first runs left out (warm-up)")
    args = ap.parse_args()
    events = json.load(open(args.profile))
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    runs = runs[args.skip:]
    if not runs:
        raise SystemExit("no model_run events after the skipped warm-up runs")
    nodes = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    per_op = collections.defaultdict(lambda: [0, 0.0])
    providers = collections.Counter()
    counted = 0
    for run in runs:
        lo, hi = run["ts"], run["ts"] + run["dur"]
        for n in nodes:
            if lo <= n["ts"] <= hi:
                op = n["args"].get("op_name", "?")
                per_op[op][0] += 1
                per_op[op][1] += n["dur"]
                providers[n["args"].get("provider", "?")] += 1
                counted += 1
    k = len(runs)
    run_us = sum(r["dur"] for r in runs) / k
    print(f"{k} runs, {run_us / 1000:.3f} ms per run, {counted / k:.0f} nodes per run")
    print("providers: " + ", ".join(f"{p} {c / k:.0f}" for p, c in providers.most_common()))
    print(f"{'op':40} {'nodes/run':>9} {'us/run':>9}")
    for op, (c, us) in sorted(per_op.items(), key=lambda kv: -kv[1][1]):
        print(f"{op:40} {c / k:9.1f} {us / k:9.1f}")


if __name__ == "__main__":
    main()
