#!/usr/bin/env python3
"""Write a random Dia checkpoint with the real Dia-1.6B shapes, streaming, without torch.

    python3 scripts/make_random_full.py --out /tmp/dia-random            # nari-labs layout, ~6.4 GB
    python3 scripts/make_random_full.py --out /tmp/dia-random-hf --layout hf
    python3 scripts/make_random_full.py --out /tmp/dia-small --scale 16 --enc-layers 2 --dec-layers 2

Needs only numpy (>= 1.17).  Writes ``config.json`` and ``model.safetensors`` (float32) to
``--out``; with ``--layout hf`` also ``generation_config.json``.

* ``--layout nari`` (default): nari-labs DenseGeneral names and shapes
  (``decoder.layers.0.self_attention.q_proj.weight`` [D, heads, hd], ...), config as written by
  nari-labs ``DiaConfig.save``.
* ``--layout hf``: the transformers ``DiaForConditionalGeneration`` names and shapes
  (``model.decoder.layers.0.self_attention.q_proj.weight`` [heads*hd, D], merged decoder embedding,
  ...), config as written by transformers 5.x ``save_pretrained``.

Both layouts hold the SAME model for the same ``--seed``/``--scale``: every value is drawn for
its nari-labs tensor (a generator seeded by (seed, crc32(nari name))) and transposed / reshaped /
merged into the transformers layout the same way ``make_reference.hf_to_nari`` undoes it.

Values: normal with std ``--std`` (0.02) for projections and embeddings (q_proj further scaled by
1/sqrt(head_dim), the attention scale the real model's q_proj carries), exactly 1.0 for
RMSNorm weights.  The safetensors header is written first (all offsets are known from the shapes),
then the tensors one by one, so at most one tensor (plus its transposed copy) is in memory.
``--scale S`` divides every width (hidden, intermediate, head_dim) by S, keeping head counts,
vocabularies, text length and frame count; ``--enc-layers``/``--dec-layers`` override depths.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import time
import zlib

import numpy as np

DELAY_PATTERN = [0, 8, 9, 10, 11, 12, 13, 14, 15]
BOS, EOS, PAD = 1026, 1024, 1025


def dims(scale: int, enc_layers: int | None, dec_layers: int | None) -> dict:
    def div(x):
        if x % scale:
            raise SystemExit(f"--scale {scale} does not divide {x}")
        return x // scale

    enc = dict(
        hidden_size=div(1024),
        intermediate_size=div(4096),
        num_hidden_layers=enc_layers if enc_layers is not None else 12,
        num_attention_heads=16,
        num_key_value_heads=16,
        head_dim=div(128),
        max_position_embeddings=1024,
        vocab_size=256,
    )
    dec = dict(
        hidden_size=div(2048),
        intermediate_size=div(8192),
        num_hidden_layers=dec_layers if dec_layers is not None else 18,
        num_attention_heads=16,
        num_key_value_heads=4,
        head_dim=div(128),
        cross_num_attention_heads=16,
        cross_num_key_value_heads=16,
        cross_head_dim=div(128),
        cross_hidden_size=enc["hidden_size"],
        max_position_embeddings=3072,
        vocab_size=1028,
        num_channels=9,
    )
    return {"enc": enc, "dec": dec}


# ------------------------------------------------------------------------------------------------
# Configs (key sets mirror tests/fixtures/tiny-nari/config.json and tiny-hf/config.json)
# ------------------------------------------------------------------------------------------------
def nari_config(d: dict) -> dict:
    enc, dec = d["enc"], d["dec"]
    return {
        "architectures": ["DiaForConditionalGeneration"],
        "bos_token_id": BOS,
        "decoder_config": {
            "cross_head_dim": dec["cross_head_dim"],
            "cross_hidden_size": dec["cross_hidden_size"],
            "cross_num_attention_heads": dec["cross_num_attention_heads"],
            "cross_num_key_value_heads": dec["cross_num_key_value_heads"],
            "head_dim": dec["head_dim"],
            "hidden_act": "silu",
            "hidden_size": dec["hidden_size"],
            "initializer_range": 0.02,
            "intermediate_size": dec["intermediate_size"],
            "max_position_embeddings": dec["max_position_embeddings"],
            "model_type": "dia_decoder",
            "norm_eps": 1e-05,
            "num_attention_heads": dec["num_attention_heads"],
            "num_channels": dec["num_channels"],
            "num_hidden_layers": dec["num_hidden_layers"],
            "num_key_value_heads": dec["num_key_value_heads"],
            "rope_scaling": None,
            "rope_theta": 10000.0,
            "vocab_size": dec["vocab_size"],
        },
        "delay_pattern": DELAY_PATTERN,
        "encoder_config": {
            "head_dim": enc["head_dim"],
            "hidden_act": "silu",
            "hidden_size": enc["hidden_size"],
            "initializer_range": 0.02,
            "intermediate_size": enc["intermediate_size"],
            "max_position_embeddings": enc["max_position_embeddings"],
            "model_type": "dia_encoder",
            "norm_eps": 1e-05,
            "num_attention_heads": enc["num_attention_heads"],
            "num_hidden_layers": enc["num_hidden_layers"],
            "num_key_value_heads": enc["num_key_value_heads"],
            "rope_scaling": None,
            "rope_theta": 10000.0,
            "vocab_size": enc["vocab_size"],
        },
        "eos_token_id": EOS,
        "initializer_range": 0.02,
        "is_encoder_decoder": True,
        "model_type": "dia",
        "norm_eps": 1e-05,
        "pad_token_id": PAD,
        "torch_dtype": "float32",
        "transformers_version": "4.53.0.dev0",
    }


def hf_config(d: dict) -> dict:
    enc, dec = d["enc"], d["dec"]
    rope = {"rope_theta": 10000.0, "rope_type": "default"}
    return {
        "architectures": ["DiaForConditionalGeneration"],
        "bos_token_id": BOS,
        "decoder_config": {
            "bos_token_id": BOS,
            "cross_head_dim": dec["cross_head_dim"],
            "cross_hidden_size": dec["cross_hidden_size"],
            "cross_num_attention_heads": dec["cross_num_attention_heads"],
            "cross_num_key_value_heads": dec["cross_num_key_value_heads"],
            "eos_token_id": EOS,
            "head_dim": dec["head_dim"],
            "hidden_act": "silu",
            "hidden_size": dec["hidden_size"],
            "initializer_range": 0.02,
            "intermediate_size": dec["intermediate_size"],
            "max_position_embeddings": dec["max_position_embeddings"],
            "model_type": "dia_decoder",
            "norm_eps": 1e-05,
            "num_attention_heads": dec["num_attention_heads"],
            "num_channels": dec["num_channels"],
            "num_hidden_layers": dec["num_hidden_layers"],
            "num_key_value_heads": dec["num_key_value_heads"],
            "pad_token_id": PAD,
            "rope_parameters": dict(rope),
            "use_cache": True,
            "vocab_size": dec["vocab_size"],
        },
        "delay_pattern": DELAY_PATTERN,
        "dtype": "float32",
        "encoder_config": {
            "head_dim": enc["head_dim"],
            "hidden_act": "silu",
            "hidden_size": enc["hidden_size"],
            "initializer_range": 0.02,
            "intermediate_size": enc["intermediate_size"],
            "max_position_embeddings": enc["max_position_embeddings"],
            "model_type": "dia_encoder",
            "norm_eps": 1e-05,
            "num_attention_heads": enc["num_attention_heads"],
            "num_hidden_layers": enc["num_hidden_layers"],
            "num_key_value_heads": enc["num_key_value_heads"],
            "rope_parameters": dict(rope),
            "vocab_size": enc["vocab_size"],
        },
        "eos_token_id": EOS,
        "initializer_range": 0.02,
        "is_encoder_decoder": True,
        "model_type": "dia",
        "norm_eps": 1e-05,
        "pad_token_id": PAD,
        "transformers_version": "5.23.0",
        "use_cache": True,
    }


HF_GENERATION_CONFIG = {
    "_from_model_config": True,
    "bos_token_id": BOS,
    "eos_token_id": EOS,
    "output_attentions": False,
    "output_hidden_states": False,
    "pad_token_id": PAD,
    "transformers_version": "5.23.0",
    "use_cache": True,
}


# ------------------------------------------------------------------------------------------------
# Tensor plans
# ------------------------------------------------------------------------------------------------
def nari_tensors(d: dict) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of every nari-labs tensor, in nari-labs module order."""
    enc, dec = d["enc"], d["dec"]
    E, I_e = enc["hidden_size"], enc["intermediate_size"]
    D, I_d = dec["hidden_size"], dec["intermediate_size"]
    out = [("encoder.embedding.weight", (enc["vocab_size"], E))]
    for i in range(enc["num_hidden_layers"]):
        p = f"encoder.layers.{i}"
        h, kv, hd = enc["num_attention_heads"], enc["num_key_value_heads"], enc["head_dim"]
        out += [
            (f"{p}.pre_sa_norm.weight", (E,)),
            (f"{p}.self_attention.q_proj.weight", (E, h, hd)),
            (f"{p}.self_attention.k_proj.weight", (E, kv, hd)),
            (f"{p}.self_attention.v_proj.weight", (E, kv, hd)),
            (f"{p}.self_attention.o_proj.weight", (h, hd, E)),
            (f"{p}.post_sa_norm.weight", (E,)),
            (f"{p}.mlp.wi_fused.weight", (E, 2, I_e)),
            (f"{p}.mlp.wo.weight", (I_e, E)),
        ]
    out.append(("encoder.norm.weight", (E,)))
    for c in range(dec["num_channels"]):
        out.append((f"decoder.embeddings.{c}.weight", (dec["vocab_size"], D)))
    for i in range(dec["num_hidden_layers"]):
        p = f"decoder.layers.{i}"
        h, kv, hd = dec["num_attention_heads"], dec["num_key_value_heads"], dec["head_dim"]
        ch, ckv, chd = dec["cross_num_attention_heads"], dec["cross_num_key_value_heads"], dec["cross_head_dim"]
        Ec = dec["cross_hidden_size"]
        out += [
            (f"{p}.pre_sa_norm.weight", (D,)),
            (f"{p}.self_attention.q_proj.weight", (D, h, hd)),
            (f"{p}.self_attention.k_proj.weight", (D, kv, hd)),
            (f"{p}.self_attention.v_proj.weight", (D, kv, hd)),
            (f"{p}.self_attention.o_proj.weight", (h, hd, D)),
            (f"{p}.pre_ca_norm.weight", (D,)),
            (f"{p}.cross_attention.q_proj.weight", (D, ch, chd)),
            (f"{p}.cross_attention.k_proj.weight", (Ec, ckv, chd)),
            (f"{p}.cross_attention.v_proj.weight", (Ec, ckv, chd)),
            (f"{p}.cross_attention.o_proj.weight", (ch, chd, D)),
            (f"{p}.pre_mlp_norm.weight", (D,)),
            (f"{p}.mlp.wi_fused.weight", (D, 2, I_d)),
            (f"{p}.mlp.wo.weight", (I_d, D)),
        ]
    out.append(("decoder.norm.weight", (D,)))
    out.append(("decoder.logits_dense.weight", (D, dec["num_channels"], dec["vocab_size"])))
    return out


class Values:
    """Deterministic values of each nari-labs tensor (one generator per tensor name)."""

    def __init__(self, seed: int, std: float, shapes: dict):
        self.seed, self.std, self.shapes = seed, std, shapes

    def __call__(self, name: str) -> np.ndarray:
        shape = self.shapes[name]
        if name.endswith("norm.weight"):
            return np.ones(shape, dtype="<f4")
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode())])
        a = rng.standard_normal(int(np.prod(shape)), dtype=np.float32)
        a *= np.float32(self.std)
        if name.endswith("q_proj.weight"):
            # Dia runs attention with scale 1.0: its q_proj carries the 1/sqrt(head_dim). Without
            # it a random model's attention is nearly one-hot and chaotic (any perturbation,
            # float16 or int8, flips it), unlike the real model.
            a *= np.float32(1.0 / np.sqrt(shape[-1]))
        return a.reshape(shape).astype("<f4", copy=False)


def plan_nari(d: dict, values: Values):
    """[(name, shape, [producer, ...])]: the bytes of a tensor are its producers' arrays in order."""
    return [(n, s, [lambda n=n: values(n)]) for n, s in nari_tensors(d)]


def plan_hf(d: dict, values: Values):
    enc, dec = d["enc"], d["dec"]
    C, V, D = dec["num_channels"], dec["vocab_size"], dec["hidden_size"]

    def lin_in(n):  # nari [in, heads, hd] -> transformers [heads*hd, in]
        def f():
            w = values(n)
            return np.ascontiguousarray(w.reshape(w.shape[0], -1).T)

        return f

    def lin_out(n):  # nari [heads, hd, out] -> transformers [out, heads*hd]
        def f():
            w = values(n)
            return np.ascontiguousarray(w.reshape(-1, w.shape[-1]).T)

        return f

    def gate_up(n):  # nari [in, 2, I] -> transformers [2I, in] (gate rows first)
        def f():
            w = values(n)
            return np.ascontiguousarray(w.reshape(w.shape[0], -1).T)

        return f

    def down(n):  # nari [I, out] -> transformers [out, I]
        return lambda: np.ascontiguousarray(values(n).T)

    def same(n):
        return lambda: values(n)

    shapes = dict(nari_tensors(d))
    plan = []

    def add(hf_name, shape, producers):
        plan.append((hf_name, tuple(shape), producers))

    def attn(src, dst):
        for proj in ("q_proj", "k_proj", "v_proj"):
            s = shapes[f"{src}.{proj}.weight"]
            add(f"{dst}.{proj}.weight", (s[1] * s[2], s[0]), [lin_in(f"{src}.{proj}.weight")])
        s = shapes[f"{src}.o_proj.weight"]
        add(f"{dst}.o_proj.weight", (s[2], s[0] * s[1]), [lin_out(f"{src}.o_proj.weight")])

    def mlp(src, dst):
        s = shapes[f"{src}.mlp.wi_fused.weight"]
        add(f"{dst}.mlp.gate_up_proj.weight", (2 * s[2], s[0]), [gate_up(f"{src}.mlp.wi_fused.weight")])
        s = shapes[f"{src}.mlp.wo.weight"]
        add(f"{dst}.mlp.down_proj.weight", (s[1], s[0]), [down(f"{src}.mlp.wo.weight")])

    add("model.encoder.embedding.weight", shapes["encoder.embedding.weight"], [same("encoder.embedding.weight")])
    for i in range(enc["num_hidden_layers"]):
        s, t = f"encoder.layers.{i}", f"model.encoder.layers.{i}"
        for n in ("pre_sa_norm", "post_sa_norm"):
            add(f"{t}.{n}.weight", shapes[f"{s}.{n}.weight"], [same(f"{s}.{n}.weight")])
        attn(f"{s}.self_attention", f"{t}.self_attention")
        mlp(s, t)
    add("model.encoder.norm.weight", shapes["encoder.norm.weight"], [same("encoder.norm.weight")])
    add(
        "model.decoder.embeddings.embed.weight",
        (C * V, D),
        [same(f"decoder.embeddings.{c}.weight") for c in range(C)],  # channel c at rows c*V..
    )
    for i in range(dec["num_hidden_layers"]):
        s, t = f"decoder.layers.{i}", f"model.decoder.layers.{i}"
        for n in ("pre_sa_norm", "pre_ca_norm", "pre_mlp_norm"):
            add(f"{t}.{n}.weight", shapes[f"{s}.{n}.weight"], [same(f"{s}.{n}.weight")])
        attn(f"{s}.self_attention", f"{t}.self_attention")
        attn(f"{s}.cross_attention", f"{t}.cross_attention")
        mlp(s, t)
    add("model.decoder.norm.weight", shapes["decoder.norm.weight"], [same("decoder.norm.weight")])
    add(
        "logits_dense.weight",
        (C * V, D),
        [lambda: np.ascontiguousarray(values("decoder.logits_dense.weight").reshape(D, C * V).T)],
    )
    return plan


# ------------------------------------------------------------------------------------------------
# Streaming safetensors writer
# ------------------------------------------------------------------------------------------------
def write_safetensors(path: str, plan, metadata: dict | None = None, verbose: bool = True) -> int:
    """Header first (offsets from the shapes), then each tensor's bytes; returns the file size."""
    order = sorted(plan, key=lambda t: t[0])  # data laid out in name order, like the header keys
    header: dict = {"__metadata__": metadata or {"format": "pt"}}
    offset = 0
    for name, shape, _ in order:
        nbytes = 4 * int(np.prod(shape))
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    hbytes = json.dumps(header, separators=(",", ":")).encode()
    hbytes += b" " * ((8 - len(hbytes) % 8) % 8)
    total = 8 + len(hbytes) + offset
    t0 = time.time()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for k, (name, shape, producers) in enumerate(order):
            start, end = header[name]["data_offsets"]
            written = 0
            for produce in producers:
                a = produce()
                assert a.dtype == np.dtype("<f4") and a.flags["C_CONTIGUOUS"], name
                a.tofile(f)  # raw little-endian float32 bytes, no copy
                written += a.nbytes
                del a
            if written != end - start:
                raise AssertionError(f"{name}: wrote {written} bytes, header says {end - start}")
            if verbose and (k % 25 == 0 or k == len(order) - 1):
                print(f"  [{k + 1}/{len(order)}] {name} {list(shape)}  {f.tell() / 2**30:.2f} GiB  "
                      f"{time.time() - t0:.0f}s", flush=True)
    assert os.path.getsize(path) == total
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--layout", choices=("nari", "hf"), default="nari")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--std", type=float, default=0.02)
    ap.add_argument("--scale", type=int, default=1, help="divide widths and head_dim by this (smoke runs)")
    ap.add_argument("--enc-layers", type=int, default=None)
    ap.add_argument("--dec-layers", type=int, default=None)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()

    d = dims(args.scale, args.enc_layers, args.dec_layers)
    values = Values(args.seed, args.std, dict(nari_tensors(d)))
    os.makedirs(args.out, exist_ok=True)
    if args.layout == "nari":
        cfg, plan = nari_config(d), plan_nari(d, values)
    else:
        cfg, plan = hf_config(d), plan_hf(d, values)
        with open(os.path.join(args.out, "generation_config.json"), "w") as f:
            json.dump(HF_GENERATION_CONFIG, f, indent=2, sort_keys=True)
            f.write("\n")
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    n_params = sum(int(np.prod(s)) for _, s, _ in plan)
    print(f"writing {len(plan)} tensors, {n_params:,} parameters ({4 * n_params / 1e9:.2f} GB) "
          f"in the {args.layout} layout to {args.out}", flush=True)
    size = write_safetensors(os.path.join(args.out, "model.safetensors"), plan, verbose=not args.quiet)
    print(f"done: model.safetensors {size:,} bytes", flush=True)


if __name__ == "__main__":
    sys.exit(main())
