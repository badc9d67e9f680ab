#!/usr/bin/env python3
"""Build a tiny random DAC (Descript Audio Codec) and reference outputs for the Rust parity tests
of the DAC graphs (tests/tests/dac_parity.rs).

How to run (CPU only; no GPU, no network, no torchaudio, no descript-audio-codec needed)::

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install -r scripts/requirements-reference.txt
    /tmp/refvenv/bin/python scripts/make_reference_dac.py

The reference is ``transformers.DacModel`` (``transformers/models/dac/modeling_dac.py``).
The model is tiny in width but keeps the real structure of the 44.1 kHz codec: ratios
[2, 4, 8, 8] / [8, 8, 4, 2] (hop 512), 9 codebooks of 1024 entries of dimension 8.
``--out`` (default ``tests/fixtures``, relative to the repository root) receives:

* ``tiny-dac/``           config.json + model.safetensors exactly as ``DacModel.save_pretrained``
                          writes them (plain ``.weight`` tensors, weight norm removed, as on the Hub).
* ``tiny-dac-descript/``  the same weights in the original descript-audio-codec layout
                          (``encoder.block.0.weight_g`` / ``weight_v``, ``decoder.model.1.block.1...``,
                          i.e. the state dict of ``dac.DAC`` saved as safetensors) and a config.json
                          holding descript's own hyper-parameter names (``encoder_dim``, ``encoder_rates``,
                          ``decoder_dim``, ``decoder_rates``, ``latent_dim``, ...: the ``metadata.kwargs``
                          of a descript ``weights.pth``).
* ``reference/dac/``      ``codes.npy`` int64 [1, 9, 20] random codes;
                          ``audio.npy`` float32 [1, 10240] = ``DacModel.decode(audio_codes=codes).audio_values``
                          (transformers squeezes the channel dim; our graph outputs [1, 1, 10240]);
                          ``wave.npy`` float32 [1, 1, 8704] a 0.2 s test waveform (sines + noise;
                          8704 = 17 * 512, so no padding is involved);
                          ``wave_codes.npy`` int64 [1, 9, 17] = ``DacModel.encode(wave).audio_codes``;
                          ``meta.json`` the smallest nearest-neighbour margins of the encoding.

How the weights are made: the model gets weight norm (``DacModel.apply_weight_norm``, torch's
parametrizations), every ``g`` / ``v`` / bias / Snake alpha / codebook is drawn from a fixed-seed
generator, so that activations stay of order one through the tiny network (torch's default
init would make the output vanish). The descript file stores ``g`` and ``v`` as they are; the
transformers file stores ``w = g * v / ||v||`` as torch computes it (``remove_parametrizations``),
and the references are computed with that plain model. Our exporter folds ``g`` and ``v`` of the
descript file itself, so the descript parity test checks that folding too.

Deterministic: re-running gives byte-identical files (one CPU thread, fixed seeds).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch.nn.utils import parametrize

REPO_ROOT = Path(__file__).resolve().parent.parent

SEED = 20250703
SAMPLE_RATE = 44100
CONFIG = dict(
    encoder_hidden_size=4,  # hidden_size (latent) = 4 * 2**4 = 64, derived by DacConfig
    downsampling_ratios=[2, 4, 8, 8],
    decoder_hidden_size=32,
    n_codebooks=9,
    codebook_size=1024,
    codebook_dim=8,
    sampling_rate=SAMPLE_RATE,
)
# Row-norm ranges of g per module name inside blocks and quantizers (default (0.6, 1.4)).
GAIN = {"conv2": (0.15, 0.4), "conv_t1": (0.5, 1.0), "out_proj": (0.2, 0.4)}
CODE_FRAMES = 20
WAVE_FRAMES = 17  # 17 * 512 = 8704 samples, about 0.2 s


# --------------------------------------------------------------------------------------------
# transformers name -> descript name (the inverse of transformers' convert_dac_checkpoint.py)
# --------------------------------------------------------------------------------------------
def descript_module(hf: str) -> str:
    """Module path of a transformers DacModel module in descript's ``dac.DAC``."""
    p = hf.split(".")
    if p[0] == "quantizer":
        return hf
    if p[0] == "encoder":
        top = {"conv1": "encoder.block.0", "snake1": "encoder.block.5", "conv2": "encoder.block.6"}
        if p[1] in top:
            return top[p[1]] + ".".join([""] + p[2:])
        # encoder.block.{b}.{res_unitN.(snake1|conv1|snake2|conv2) | snake1 | conv1}
        b = int(p[2]) + 1
        if p[3].startswith("res_unit"):
            r = int(p[3][len("res_unit"):]) - 1
            inner = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}[p[4]]
            return f"encoder.block.{b}.block.{r}.block.{inner}"
        return f"encoder.block.{b}.block." + {"snake1": "3", "conv1": "4"}[p[3]]
    if p[0] == "decoder":
        top = {"conv1": "decoder.model.0", "snake1": "decoder.model.5", "conv2": "decoder.model.6"}
        if p[1] in top:
            return top[p[1]] + ".".join([""] + p[2:])
        b = int(p[2]) + 1
        if p[3].startswith("res_unit"):
            r = int(p[3][len("res_unit"):]) + 1
            inner = {"snake1": 0, "conv1": 1, "snake2": 2, "conv2": 3}[p[4]]
            return f"decoder.model.{b}.block.{r}.block.{inner}"
        return f"decoder.model.{b}.block." + {"snake1": "0", "conv_t1": "1"}[p[3]]
    raise ValueError(hf)


def descript_name(hf_param: str) -> str:
    module, _, leaf = hf_param.rpartition(".")
    return f"{descript_module(module)}.{leaf}"


# --------------------------------------------------------------------------------------------
def build_model():
    from transformers import DacConfig, DacModel

    torch.manual_seed(SEED)
    cfg = DacConfig(**CONFIG)
    assert cfg.hidden_size == 64 and cfg.hop_length == 512 and list(cfg.upsampling_ratios) == [8, 8, 4, 2]
    model = DacModel(cfg).eval()
    model.apply_weight_norm()
    gen = torch.Generator().manual_seed(SEED)

    def uniform(shape, lo, hi):
        return lo + (hi - lo) * torch.rand(shape, generator=gen)

    with torch.no_grad():
        for name, module in sorted(model.named_modules()):
            if parametrize.is_parametrized(module, "weight"):
                orig = module.parametrizations.weight
                v = torch.randn(orig.original1.shape, generator=gen)
                # Row norms of the folded weight (g): about 1 keeps the variance through a conv;
                # residual branches and the codebook projections get less, so that the sums
                # they feed do not grow from block to block.
                lo, hi = GAIN.get(name.rsplit(".", 1)[-1], (0.6, 1.4)) if "block" in name or "quantizer" in name else (0.6, 1.4)
                g = uniform(orig.original0.shape, lo, hi)
                orig.original0.copy_(g)
                orig.original1.copy_(v)
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=gen))
            elif hasattr(module, "alpha"):
                module.alpha.copy_(uniform(module.alpha.shape, 0.5, 2.0))
            elif isinstance(module, torch.nn.Embedding):
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen))
    return model


def descript_state(model) -> dict[str, torch.Tensor]:
    """The weight-normed model's parameters under descript's names (weight_g / weight_v)."""
    out = {}
    for name, t in model.state_dict().items():
        if ".parametrizations.weight.original" in name:
            module = name.split(".parametrizations.")[0]
            leaf = "weight_g" if name.endswith("original0") else "weight_v"
            out[f"{descript_module(module)}.{leaf}"] = t.detach().clone().contiguous()
        else:
            out[descript_name(name)] = t.detach().clone().contiguous()
    return out


def margins(model, wave: torch.Tensor) -> list[float]:
    """Per codebook, the smallest gap between the best and second-best score of the encoding."""
    gaps = []
    with torch.no_grad():
        residual = model.encoder(wave)
        for q in model.quantizer.quantizers:
            z = q.in_proj(residual)
            b, d, t = z.shape
            e = torch.nn.functional.normalize(z.permute(0, 2, 1).reshape(b * t, d))
            c = torch.nn.functional.normalize(q.codebook.weight)
            dist = -(e.pow(2).sum(1, keepdim=True) - 2 * e @ c.t()) + c.pow(2).sum(1, keepdim=True).t()
            top = dist.topk(2, dim=1).values
            gaps.append(float((top[:, 0] - top[:, 1]).min()))
            zq, _ = q.decode_latents(z)
            zq = z + (zq - z)
            residual = residual - q.out_proj(zq)
    return gaps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "tests" / "fixtures")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out: Path = args.out

    model = build_model()
    desc = descript_state(model)
    for module in list(model.modules()):
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)

    hf_dir = out / "tiny-dac"
    if hf_dir.exists():
        shutil.rmtree(hf_dir)
    model.save_pretrained(hf_dir)

    d_dir = out / "tiny-dac-descript"
    if d_dir.exists():
        shutil.rmtree(d_dir)
    d_dir.mkdir(parents=True)
    save_file(dict(sorted(desc.items())), str(d_dir / "model.safetensors"))
    cfg = model.config
    (d_dir / "config.json").write_text(
        json.dumps(
            {
                "encoder_dim": cfg.encoder_hidden_size,
                "encoder_rates": list(cfg.downsampling_ratios),
                "latent_dim": cfg.hidden_size,
                "decoder_dim": cfg.decoder_hidden_size,
                "decoder_rates": list(cfg.upsampling_ratios),
                "n_codebooks": cfg.n_codebooks,
                "codebook_size": cfg.codebook_size,
                "codebook_dim": cfg.codebook_dim,
                "quantizer_dropout": 0.0,
                "sample_rate": SAMPLE_RATE,
            },
            indent=2,
        )
        + "\n"
    )

    ref = out / "reference" / "dac"
    ref.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    codes = rng.integers(0, cfg.codebook_size, size=(1, cfg.n_codebooks, CODE_FRAMES), dtype=np.int64)
    n = WAVE_FRAMES * cfg.hop_length
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    wave = (
        0.5 * np.sin(2 * math.pi * 220.0 * t)
        + 0.3 * np.sin(2 * math.pi * 1375.0 * t + 1.0)
        + 0.05 * rng.standard_normal(n)
    ).astype(np.float32)[None, None, :]

    with torch.no_grad():
        audio = model.decode(audio_codes=torch.from_numpy(codes)).audio_values.numpy()
        enc = model.encode(torch.from_numpy(wave))
        wave_codes = enc.audio_codes.numpy().astype(np.int64)
    assert audio.shape == (1, CODE_FRAMES * cfg.hop_length), audio.shape
    assert wave_codes.shape == (1, cfg.n_codebooks, WAVE_FRAMES), wave_codes.shape
    gaps = margins(model, torch.from_numpy(wave))
    np.save(ref / "codes.npy", codes)
    np.save(ref / "audio.npy", audio.astype(np.float32))
    np.save(ref / "wave.npy", wave)
    np.save(ref / "wave_codes.npy", wave_codes)
    (ref / "meta.json").write_text(
        json.dumps(
            {
                "audio_shape": list(audio.shape),
                "audio_std": round(float(audio.std()), 6),
                "audio_absmax": round(float(np.abs(audio).max()), 6),
                "distinct_wave_codes_per_codebook": [int(len(np.unique(c))) for c in wave_codes[0]],
                "min_nearest_neighbour_margin_per_codebook": [float(f"{g:.3e}") for g in gaps],
            },
            indent=2,
        )
        + "\n"
    )
    total = sum(p.stat().st_size for d in (hf_dir, d_dir, ref) for p in d.iterdir())
    print(f"audio {audio.shape} std {audio.std():.4f} absmax {np.abs(audio).max():.4f}")
    print(f"wave codes {wave_codes.shape}, margins {[f'{g:.2e}' for g in gaps]}")
    print(f"DAC fixtures: {total} bytes")


if __name__ == "__main__":
    main()
