#!/usr/bin/env python3
"""Plots batched decoding throughput from a GPU run's log (the JSON lines of batch_bench and
bench_nari.py --batch): aggregate and per-stream frames/s against B, ours and nari-labs'.

    python3 scripts/plot_batch.py benchmarks/gpu-run15a.log benchmarks/gpu-run15b.log --out benchmarks/batch-curve.png
(needs matplotlib)
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(paths):
    for p in paths:
        section = ""
        for line in open(p):
            if line.startswith("== "):
                section = line.strip()
            elif line.startswith("{"):
                yield section, json.loads(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("logs", nargs="+")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="Batched decoding, fused float16, 300 frames each")
    args = ap.parse_args()
    ours, nari = {}, {}
    for section, r in rows(args.logs):
        if "slots" in r and r.get("cuda_graph") and r.get("text_len") == 128 and "--cuda-graph" in section:
            ours[r["slots"]] = r
        elif r.get("impl") == "nari-labs/dia" and "batch" in r:
            nari[r["batch"]] = r
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    bs = sorted(ours)
    key = "decode_aggregate_frames_per_second" if all("decode_aggregate_frames_per_second" in ours[x] for x in bs) else "aggregate_frames_per_second"
    a.plot(bs, [ours[x]["aggregate_frames_per_second"] for x in bs], "o-", label="dia-run batch (end to end)")
    if key != "aggregate_frames_per_second":
        a.plot(bs, [ours[x][key] for x in bs], "o--", label="dia-run batch (steady decoding)")
    nb = sorted(nari)
    a.plot(nb, [nari[x]["aggregate_frames_per_second"] for x in nb], "s-", label="nari-labs batch generate (eager)")
    a.set_xscale("log", base=2); a.set_xlabel("utterances in the batch (B)"); a.set_ylabel("aggregate frames/s")
    a.axhline(10000, color="grey", lw=0.8, ls=":"); a.legend(); a.grid(alpha=0.3)
    b.plot(bs, [ours[x]["per_stream_frames_per_second"] for x in bs], "o-", label="dia-run batch (end to end)")
    b.plot(nb, [nari[x]["decode_frames_per_second"] for x in nb], "s-", label="nari-labs batch generate")
    b.axhline(150, color="grey", lw=0.8, ls=":"); b.axhline(86, color="red", lw=0.8, ls=":", label="realtime (86 frames/s)")
    b.set_xscale("log", base=2); b.set_xlabel("utterances in the batch (B)"); b.set_ylabel("frames/s per stream"); b.legend(); b.grid(alpha=0.3)
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
