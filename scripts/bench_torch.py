"""PyTorch baseline for scripts/bench-cpu.sh: the `transformers` Dia implementation
(DiaForConditionalGeneration) on a checkpoint in the transformers layout, greedy with CFG, on the
CPU with all cores. Prints one JSON line: decode frames/s, time to first frame, encoder time,
peak RSS.

    python scripts/bench_torch.py CKPT_DIR --text "..." --frames 60
"""
import argparse
import json
import os
import resource
import time

import torch
from transformers import DiaForConditionalGeneration


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("--text", required=True)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    t = time.perf_counter()
    model = DiaForConditionalGeneration.from_pretrained(args.ckpt, torch_dtype=torch.float32).eval()
    load_s = time.perf_counter() - t

    raw = args.text.encode().replace(b"[S1]", b"\x01").replace(b"[S2]", b"\x02")
    ids = torch.tensor([list(raw)], dtype=torch.long)
    mask = torch.ones_like(ids)
    # The delayed BOS prefill DiaProcessor builds (channel c holds BOS up to its delay); PAD marks
    # slots to generate.
    delay = model.config.delay_pattern
    dec = torch.full((1, 1 + max(delay), len(delay)), 1025, dtype=torch.long)
    for c, d in enumerate(delay):
        dec[0, : d + 1, c] = 1026
    gen_kwargs = dict(
        input_ids=ids,
        attention_mask=mask,
        decoder_input_ids=dec,
        decoder_attention_mask=torch.ones(dec.shape[:2], dtype=torch.long),
        guidance_scale=3.0,
        top_k=45,
        do_sample=False,
    )

    with torch.inference_mode():
        # Encoder alone (both CFG rows, as generate runs it).
        enc_in = torch.cat([torch.zeros_like(ids), ids])
        t = time.perf_counter()
        model.get_encoder()(input_ids=enc_in, attention_mask=torch.cat([mask, mask]))
        encoder_s = time.perf_counter() - t
        # Time to first frame: encoder + prefill + one step.
        t = time.perf_counter()
        first = model.generate(**gen_kwargs, max_new_tokens=1)
        first_s = time.perf_counter() - t
        # Decode: N steps; frames/s from the difference to the 1-step run.
        t = time.perf_counter()
        out = model.generate(**gen_kwargs, max_new_tokens=args.frames, min_new_tokens=args.frames)
        total_s = time.perf_counter() - t
    # Frames/s from the difference of the two runs: independent of how the output counts the
    # prefill frames.
    steps = out.shape[1] - first.shape[1]
    decode_fps = steps / max(total_s - first_s, 1e-9)
    print(
        json.dumps(
            {
                "impl": f"transformers {__import__('transformers').__version__} / torch {torch.__version__}",
                "threads": args.threads,
                "load_seconds": load_s,
                "encoder_seconds": encoder_s,
                "first_frame_seconds": first_s,
                "steps": steps,
                "decode_frames_per_second": decode_fps,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
