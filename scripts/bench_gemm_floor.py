#!/usr/bin/env python3
"""What one Dia decoder step costs at the least on this GPU, measured with PyTorch (cuBLAS)
under CUDA graphs: (1) the step's 108 GEMMs alone (batch 2, the CFG pair; float16), with the
weight stored [K, N] (as our ONNX MatMuls take it) and [N, K] (as torch.nn.Linear keeps it);
(2) the launch floor: N back-to-back tiny elementwise kernels.

    python3 scripts/bench_gemm_floor.py [--kernels 350]

Used for the profile in benchmarks/gpu.md; needs torch with CUDA.
"""
import argparse

import torch


def graph_time(fn, iters=200):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    for _ in range(10):
        g.replay()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        g.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kernels", type=int, default=350)
    ap.add_argument("--layers", type=int, default=18)
    args = ap.parse_args()
    dev, dt = "cuda", torch.float16
    d, inter, heads, kv, hd = 2048, 8192, 16, 4, 128
    # (in, out) of every projection a decoder step runs, per layer, then the logits head.
    per_layer = [(d, (heads + 2 * kv) * hd), (heads * hd, d), (d, heads * hd), (heads * hd, d),
                 (d, 2 * inter), (inter, d)]
    shapes = per_layer * args.layers + [(d, 9 * 1028)]
    nbytes = sum(k * n for k, n in shapes) * 2
    print(f"GPU: {torch.cuda.get_device_name()}; {len(shapes)} GEMMs, {nbytes / 1e9:.2f} GB of float16 weights")
    x = {k: torch.randn(2, k, device=dev, dtype=dt) for k in {k for k, _ in shapes}}
    w_kn = [torch.randn(k, n, device=dev, dtype=dt) * 0.02 for k, n in shapes]
    w_nk = [w.t().contiguous() for w in w_kn]

    def gemms_kn():
        for (k, _), w in zip(shapes, w_kn):
            torch.matmul(x[k], w)

    def gemms_nk():
        for (k, _), w in zip(shapes, w_nk):
            torch.nn.functional.linear(x[k], w)

    for name, fn in [("weights [K,N] (x @ W)", gemms_kn), ("weights [N,K] (linear)", gemms_nk)]:
        ms = graph_time(fn)
        print(f"GEMMs only, {name}: {ms:.3f} ms per step = {nbytes / ms / 1e6:.0f} GB/s")
    a = torch.randn(2, d, device=dev, dtype=dt)

    def tiny():
        for _ in range(args.kernels):
            a.add_(1.0)

    ms = graph_time(tiny)
    print(f"{args.kernels} tiny kernels: {ms:.3f} ms ({ms / args.kernels * 1000:.2f} us each)")


if __name__ == "__main__":
    main()
