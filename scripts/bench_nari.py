"""GPU baseline for scripts/bench-gpu.sh: the official nari-labs/dia code (a checkout given with
--dia-repo; fetched for the benchmark, never vendored here) on a nari-layout checkpoint, float16,
greedy with CFG 3.0, in eager mode and with torch.compile. Prints one JSON line per mode.

Channel-0 EOS is replaced by token 0 after sampling so every run decodes the same number of
frames (random weights may say EOS early); this costs one tensor op per step.

    python scripts/bench_nari.py --dia-repo DIR --ckpt CKPT_DIR --frames 300 [--compile] [--batch B]
"""
import argparse
import json
import signal
import sys
import time
import types


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dia-repo", required=True)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--text", default="[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices.")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--compile-timeout", type=int, default=420)
    ap.add_argument("--batch", type=lambda v: [int(x) for x in v.split(",")], default=[0],
                    help="the official batch generate: B copies of the text at once, sampled (temperature "
                         "1.2), for each B of a comma-separated list; aggregate frames/s")
    args = ap.parse_args()

    # nari-labs imports torchaudio (audio files) and dac (the codec) at module level; neither is
    # needed to generate codes.
    sys.modules.setdefault("torchaudio", types.ModuleType("torchaudio"))
    sys.path.insert(0, args.dia_repo)
    import torch
    from safetensors.torch import load_file

    from dia.config import DiaConfig
    from dia.model import Dia

    cfg = DiaConfig.load(f"{args.ckpt}/config.json")
    t = time.perf_counter()
    dia = Dia(cfg, compute_dtype="float16", device=torch.device("cuda"), load_dac=False)
    dia.model.load_state_dict(load_file(f"{args.ckpt}/model.safetensors"))
    dia.model.to(device="cuda", dtype=torch.float16).eval()
    load_s = time.perf_counter() - t

    if args.compile:
        # What generate(use_torch_compile=True) does, done here so the step counter below
        # wraps the compiled step instead of being traced into it.
        dia._prepare_generation = torch.compile(dia._prepare_generation, dynamic=True, fullgraph=True)
        dia._decoder_step = torch.compile(dia._decoder_step, fullgraph=True, mode="max-autotune")
        dia._compiled = True

    steps = {"n": 0, "first": None}
    inner = dia._decoder_step

    def counting_step(*a, **k):
        pred = inner(*a, **k)
        pred[:, 0] = torch.where(pred[:, 0] == cfg.eos_token_id, torch.zeros_like(pred[:, 0]), pred[:, 0])
        steps["n"] += 1
        if steps["first"] is None:
            torch.cuda.synchronize()
            steps["first"] = time.perf_counter()
        return pred

    dia._decoder_step = counting_step
    mode = "torch.compile" if args.compile else "eager"

    def run(n, batch):
        steps["n"], steps["first"] = 0, None
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        if batch:
            dia.generate([args.text] * batch, max_tokens=n, cfg_scale=3.0, temperature=1.2, top_p=0.95, cfg_filter_top_k=45, use_torch_compile=args.compile)
        else:
            dia.generate(args.text, max_tokens=n, cfg_scale=3.0, temperature=0.0, top_p=0.95, cfg_filter_top_k=45, use_torch_compile=args.compile)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        return t0, steps["first"], t1, steps["n"]

    if args.compile:
        signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("compile timeout")))
        signal.alarm(args.compile_timeout)
        try:
            run(40, 0)  # compiles
        except TimeoutError:
            print(json.dumps({"impl": "nari-labs/dia", "mode": mode, "error": f"not compiled within {args.compile_timeout}s"}))
            return
        signal.alarm(0)
    for batch in args.batch:
        run(20, batch)  # warm-up (and, with --compile, the batch shape)
        torch.cuda.reset_peak_memory_stats()
        t0, first, t1, n = run(args.frames, batch)
        b = batch or 1
        print(json.dumps({
            "impl": "nari-labs/dia",
            "mode": mode,
            "torch": torch.__version__,
            "load_seconds": load_s,
            "batch": b,
            "steps": n,
            "first_frame_seconds": first - t0,
            "decode_frames_per_second": (n - 1) / (t1 - first),
            "aggregate_frames_per_second": b * (n - 1) / (t1 - first),
            "gpu_peak_allocated_mb": torch.cuda.max_memory_allocated() / 2**20,
        }), flush=True)


if __name__ == "__main__":
    main()
