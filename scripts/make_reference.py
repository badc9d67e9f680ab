#!/usr/bin/env python3
"""Build tiny random Dia checkpoints and reference outputs for the Rust parity tests.

How to run (CPU only; no GPU, no network, no torchaudio, no DAC needed)::

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install -r scripts/requirements-reference.txt
    /tmp/refvenv/bin/python scripts/make_reference.py --dia-repo PATH_TO_nari-labs/dia_checkout

``--dia-repo`` is a checkout of https://github.com/nari-labs/dia (the directory that contains the
``dia/`` package); it is only put on ``sys.path`` at run time, nothing of it is copied here.
``--out`` (default ``tests/fixtures``, relative to the repository root) is where everything goes:

* ``tiny-hf/``    config.json + model.safetensors (+ generation_config.json) exactly as
                  ``transformers.DiaForConditionalGeneration.save_pretrained`` writes them.
* ``tiny-nari/``  config.json (nari-labs ``DiaConfig.save``) + model.safetensors in the nari-labs
                  DenseGeneral layout, converted from the transformers weights by ``hf_to_nari``;
                  the conversion is proven by running both implementations (asserted).
* ``reference/``  texts.json and ``.npy`` files computed with the official nari-labs code on the
                  tiny-nari checkpoint: encoder outputs, teacher-forced decoder logits, greedy
                  generations (one that runs to max length, one that stops on a natural EOS).
* ``reference/sampling/``  sampling distributions (``make_sampling_reference``): the unmodified
                  nari-labs ``_decoder_step`` teacher-forced along the greedy EOS case's own
                  frames, with ``torch.multinomial`` recorded inside ``dia.model``: per recorded
                  step the decoder logits and, per parameter set (nari-labs' defaults and one
                  where every parameter differs), each channel's final probabilities, including
                  the step where the reference chose EOS.  ``sampling.json`` describes the files.

The script is deterministic: re-running it gives byte-identical files (single CPU thread, fixed
seeds, deterministic candidate search).  Every fixture group has its own function (``make_*``) so
further groups (e.g. DAC) can be added next to them.

Regenerating one group only, from the committed checkpoint and reference files (nothing else is
written; the other fixtures stay byte-identical)::

    /tmp/refvenv/bin/python scripts/make_reference.py --dia-repo PATH_TO_nari-labs/dia_checkout \\
        --only sampling

``--only sampling`` rewrites ``reference/sampling/`` from ``tiny-nari/``, ``reference/texts.json``
(the greedy ``eos`` case) and ``reference/greedy_eos_delayed.npy``; it asserts that the recorded
steps include the reference's EOS step and steps where EOS is not the top token, and that the
group stays below ``SAMPLING_MAX_MIB``.  A full run regenerates it too (after the greedy cases).
The files are what this machine's torch computes: another torch build or CPU may change the
float32 logits in their last bits (the Rust tests' tolerances allow for that).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------------------------
# Tiny configuration (real vocabularies, channels, delay pattern and special tokens)
# --------------------------------------------------------------------------------------------
DELAY_PATTERN = [0, 8, 9, 10, 11, 12, 13, 14, 15]
BOS, EOS, PAD = 1026, 1024, 1025
NORM_EPS = 1e-5
ROPE_THETA = 10000.0

ENC = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    head_dim=16,
    max_position_embeddings=64,
    vocab_size=256,
)
DEC = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=8,
    num_key_value_heads=2,
    head_dim=16,
    cross_num_attention_heads=8,
    cross_num_key_value_heads=8,
    cross_head_dim=16,
    cross_hidden_size=32,
    max_position_embeddings=256,
    vocab_size=1028,
    num_channels=9,
)

# Weight initialisation (std of a fixed-seed normal per tensor kind; norms are 1 + 0.1 * randn).
# A random model rarely ranks channel-0 EOS first: with seed 20250601 none of the 200 candidate
# texts produced a natural EOS.  INIT_SEED = 8 is the smallest seed >= 0 for which one of the
# first 20 candidate texts emits a natural EOS within EOS_STEP_RANGE (offline scan of seeds 0..29
# with this exact recipe).  The EOS still comes out of the unmodified nari-labs generate loop.
INIT_SEED = 8
INIT_STD = {
    "encoder.embedding": 1.0,
    "decoder.embeddings": 0.5,  # 9 channels are summed: the sum has std 1.5
    "q_proj": 0.15,
    "k_proj": 0.15,
    "v_proj": 0.2,
    "o_proj": 0.15,
    "gate_up_proj": 0.2,
    "down_proj": 0.15,
    "logits_dense": 0.3,
}
NORM_NOISE = 0.1

# Generation settings of every greedy case.
CFG_SCALE = 3.0
TEMPERATURE = 0.0
TOP_P = 0.95
CFG_FILTER_TOP_K = 45

# Texts.  ENCODER_TEXT0 is exactly 64 tokens (fills the encoder), ENCODER_TEXT1 is padded.
ENCODER_TEXT0 = "[S1] Dia reads this line aloud. [S2] And I answer it, right away, sir!"
ENCODER_TEXT1 = "[S1] Hello there. [S2] Hi!"
TEACHER_STEPS = 32
TEACHER_SEED = 1234
SEARCH_SEED = 4321
SEARCH_CANDIDATES = 200
LONG_MAX_TOKENS = 150
LONG_MIN_STEPS = 120
EOS_MAX_TOKENS = 200
EOS_STEP_RANGE = (20, 120)

SEARCH_WORDS = (
    "hello world voice speech model quick brown fox jumps over the lazy dog sunny rain music "
    "river stone light tea coffee train station morning evening laugh sing whisper shout "
    "yes no maybe okay really great thanks sorry please wait listen"
).split()


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(msg, flush=True)


def rel_err(a, b) -> float:
    """max |a - b| / max |b| (0 when both are 0)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    den = np.abs(b).max()
    num = np.abs(a - b).max()
    return float(num / den) if den > 0 else float(num)


def save_npy(path: Path, arr: np.ndarray, dtype) -> None:
    arr = np.ascontiguousarray(np.asarray(arr, dtype=dtype))
    np.save(path, arr, allow_pickle=False)


def write_json(path: Path, obj) -> None:
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def import_nari(dia_repo: str):
    """Import the nari-labs package from a checkout, with stubs for modules we do not need."""
    repo = os.path.abspath(dia_repo)
    if not os.path.isfile(os.path.join(repo, "dia", "model.py")):
        raise SystemExit(f"--dia-repo {repo}: no dia/model.py there (need a nari-labs/dia checkout)")
    # dia/model.py imports torchaudio at the top (only used for loading audio prompts) and imports
    # dac lazily (only with load_dac=True).  Neither is needed here: stub them while importing.
    # The stubs are removed again afterwards, because transformers probes sys.modules for
    # torchaudio (find_spec) and a spec-less stub breaks it.
    import transformers.models.dia.modeling_dia  # noqa: F401  (import before the stubs exist)

    stubbed = [name for name in ("torchaudio", "dac") if name not in sys.modules]
    for name in stubbed:
        sys.modules[name] = types.ModuleType(name)
    sys.path.insert(0, repo)
    try:
        import dia.audio as nari_audio  # noqa: E402
        import dia.config as nari_config  # noqa: E402
        import dia.model as nari_model  # noqa: E402
        import dia.state as nari_state  # noqa: E402
    finally:
        for name in stubbed:
            del sys.modules[name]

    return types.SimpleNamespace(config=nari_config, model=nari_model, state=nari_state, audio=nari_audio)


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------
def make_hf_config():
    from transformers import DiaConfig
    from transformers.models.dia.configuration_dia import DiaDecoderConfig, DiaEncoderConfig

    rope = {"rope_type": "default", "rope_theta": ROPE_THETA}
    enc = DiaEncoderConfig(**ENC, norm_eps=NORM_EPS, hidden_act="silu", rope_parameters=dict(rope))
    dec = DiaDecoderConfig(
        **DEC,
        norm_eps=NORM_EPS,
        hidden_act="silu",
        rope_parameters=dict(rope),
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )
    # The top-level token ids are deprecated in transformers but present in the published
    # checkpoints' config.json; keep them so the fixture looks like the real thing.
    return DiaConfig(
        encoder_config=enc,
        decoder_config=dec,
        delay_pattern=list(DELAY_PATTERN),
        norm_eps=NORM_EPS,
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
    )


def make_nari_config(nari):
    c = nari.config
    enc = c.EncoderConfig(**ENC, norm_eps=NORM_EPS, rope_theta=ROPE_THETA, hidden_act="silu")
    dec = c.DecoderConfig(**DEC, norm_eps=NORM_EPS, rope_theta=ROPE_THETA, hidden_act="silu")
    return c.DiaConfig(
        encoder_config=enc,
        decoder_config=dec,
        delay_pattern=list(DELAY_PATTERN),
        bos_token_id=BOS,
        eos_token_id=EOS,
        pad_token_id=PAD,
        norm_eps=NORM_EPS,
    )


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------
def init_std(name: str) -> float | None:
    """Std of the normal init for a transformers parameter name; None for RMSNorm weights."""
    if name.endswith("norm.weight"):
        return None
    for key, std in INIT_STD.items():
        if key in name:
            return std
    raise KeyError(f"no init rule for {name}")


def build_hf_model(cfg):
    from transformers import DiaForConditionalGeneration

    torch.manual_seed(0)
    model = DiaForConditionalGeneration(cfg)
    gen = torch.Generator().manual_seed(INIT_SEED)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            std = init_std(name)
            if std is None:
                p.copy_(1.0 + NORM_NOISE * noise)
            else:
                p.copy_(std * noise)
    model.eval()
    return model


def hf_to_nari(state_dict: dict, cfg) -> dict:
    """Convert a transformers DiaForConditionalGeneration state dict to the nari-labs layout.

    transformers stores nn.Linear weights [out, in]; nari-labs stores DenseGeneral kernels with
    the contracted input dims first: q/k/v [in, heads, hd], o [heads, hd, out], wi_fused
    [in, 2, I] (0 = gate, 1 = up), wo [I, out], logits_dense [D, C, V]; the merged decoder
    embedding [C*V, D] is split into one [V, D] table per channel.
    ``cfg`` is the transformers DiaConfig (attributes) of the checkpoint.
    """
    enc, dec = cfg.encoder_config, cfg.decoder_config
    sd = {k: v.detach().to(torch.float32).cpu() for k, v in state_dict.items()}
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(name):
        used.add(name)
        return sd[name]

    def lin_to_dense_in(w, heads, hd):  # [heads*hd, in] -> [in, heads, hd]
        return w.t().reshape(w.shape[1], heads, hd)

    def lin_to_dense_out(w, heads, hd):  # [out, heads*hd] -> [heads, hd, out]
        return w.t().reshape(heads, hd, w.shape[0])

    def mlp(src, dst, inter):
        gu = take(f"{src}.mlp.gate_up_proj.weight")  # [2I, in], gate rows first
        out[f"{dst}.mlp.wi_fused.weight"] = gu.t().reshape(gu.shape[1], 2, inter)
        out[f"{dst}.mlp.wo.weight"] = take(f"{src}.mlp.down_proj.weight").t()

    def attn(src, dst, nq, nkv, hd):
        out[f"{dst}.q_proj.weight"] = lin_to_dense_in(take(f"{src}.q_proj.weight"), nq, hd)
        out[f"{dst}.k_proj.weight"] = lin_to_dense_in(take(f"{src}.k_proj.weight"), nkv, hd)
        out[f"{dst}.v_proj.weight"] = lin_to_dense_in(take(f"{src}.v_proj.weight"), nkv, hd)
        out[f"{dst}.o_proj.weight"] = lin_to_dense_out(take(f"{src}.o_proj.weight"), nq, hd)

    out["encoder.embedding.weight"] = take("model.encoder.embedding.weight")
    for i in range(enc.num_hidden_layers):
        s, d = f"model.encoder.layers.{i}", f"encoder.layers.{i}"
        out[f"{d}.pre_sa_norm.weight"] = take(f"{s}.pre_sa_norm.weight")
        out[f"{d}.post_sa_norm.weight"] = take(f"{s}.post_sa_norm.weight")
        attn(f"{s}.self_attention", f"{d}.self_attention", enc.num_attention_heads, enc.num_key_value_heads, enc.head_dim)
        mlp(s, d, enc.intermediate_size)
    out["encoder.norm.weight"] = take("model.encoder.norm.weight")

    emb = take("model.decoder.embeddings.embed.weight")  # [C*V, D]
    V, C = dec.vocab_size, dec.num_channels
    for c in range(C):
        out[f"decoder.embeddings.{c}.weight"] = emb[c * V : (c + 1) * V]
    for i in range(dec.num_hidden_layers):
        s, d = f"model.decoder.layers.{i}", f"decoder.layers.{i}"
        for n in ("pre_sa_norm", "pre_ca_norm", "pre_mlp_norm"):
            out[f"{d}.{n}.weight"] = take(f"{s}.{n}.weight")
        attn(f"{s}.self_attention", f"{d}.self_attention", dec.num_attention_heads, dec.num_key_value_heads, dec.head_dim)
        attn(
            f"{s}.cross_attention",
            f"{d}.cross_attention",
            dec.cross_num_attention_heads,
            dec.cross_num_key_value_heads,
            dec.cross_head_dim,
        )
        mlp(s, d, dec.intermediate_size)
    out["decoder.norm.weight"] = take("model.decoder.norm.weight")
    ld = take("logits_dense.weight")  # [C*V, D]
    out["decoder.logits_dense.weight"] = ld.t().reshape(ld.shape[1], C, V)

    unused = sorted(set(sd) - used)
    if unused:
        raise ValueError(f"hf_to_nari: unused transformers tensors: {unused}")
    return {k: v.contiguous().clone() for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# Fixture group: checkpoints
# --------------------------------------------------------------------------------------------
def make_tiny_hf(model, out_dir: Path) -> None:
    if out_dir.exists():
        shutil.rmtree(out_dir)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    allowed = {"config.json", "model.safetensors", "generation_config.json"}
    for f in sorted(os.listdir(out_dir)):
        if f not in allowed:
            os.remove(out_dir / f)
    log(f"wrote {out_dir}: {sorted(os.listdir(out_dir))}")


def make_tiny_nari(nari, nari_cfg, nari_sd: dict, out_dir: Path) -> None:
    from safetensors.torch import save_file

    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    nari_cfg.save(str(out_dir / "config.json"))
    save_file(nari_sd, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    log(f"wrote {out_dir}: {sorted(os.listdir(out_dir))}")


def load_nari_dia(nari, nari_dir: Path):
    """Dia (nari-labs) on CPU, float32, no DAC, weights from our tiny-nari checkpoint (strict)."""
    from safetensors.torch import load_file

    cfg = nari.config.DiaConfig.load(str(nari_dir / "config.json"))
    dia = nari.model.Dia(cfg, compute_dtype="float32", device=torch.device("cpu"), load_dac=False)
    sd = load_file(str(nari_dir / "model.safetensors"))
    expected = set(dia.model.state_dict().keys())
    if set(sd) != expected:
        raise AssertionError(
            f"nari key mismatch: missing {sorted(expected - set(sd))}, extra {sorted(set(sd) - expected)}"
        )
    dia.model.load_state_dict(sd, strict=True)
    dia.model.to(torch.device("cpu"))
    dia.model.eval()
    return dia


# --------------------------------------------------------------------------------------------
# nari-labs helpers
# --------------------------------------------------------------------------------------------
def nari_text_tokens(dia, text: str) -> torch.Tensor:
    """[1, 1, T] padded conditional tokens exactly as Dia.generate builds them."""
    return dia._pad_text_input([dia._encode_text(text)])


def nari_encoder_out(dia, text: str, max_tokens: int | None = None):
    """(tokens [1,1,T], dec_state) from Dia._prepare_generation; dec_state.enc_out is [2, T, E]."""
    tokens = nari_text_tokens(dia, text)
    with torch.inference_mode():
        dec_state, dec_output = dia._prepare_generation(tokens, [None], max_tokens=max_tokens)
    return tokens, dec_state, dec_output


def nari_teacher_logits(dia, text: str, teacher_tokens: np.ndarray) -> np.ndarray:
    """Per-step decode_step logits [S, 2, C, V] for teacher-forced decoder input tokens [S, C]."""
    _, dec_state, _ = nari_encoder_out(dia, text)
    steps = teacher_tokens.shape[0]
    out = []
    with torch.inference_mode():
        for t in range(steps):
            dec_state.prepare_step(t)
            tok = torch.from_numpy(teacher_tokens[t]).long().view(1, 1, -1).repeat_interleave(2, dim=0)
            logits = dia.model.decoder.decode_step(tok, dec_state, torch.tensor([t]))  # [2, 1, C, V]
            out.append(logits[:, -1].float().numpy().copy())
    return np.stack(out, axis=0)


def make_teacher_tokens(nari, steps: int, channels: int) -> np.ndarray:
    """BOS frame, then random codes 0..1023, with the delay pattern applied by nari's own code."""
    g = torch.Generator().manual_seed(TEACHER_SEED)
    frames = torch.randint(0, 1024, (1, steps, channels), generator=g, dtype=torch.long)
    frames[:, 0, :] = BOS
    precomp = nari.audio.build_delay_indices(B=1, T=steps, C=channels, delay_pattern=DELAY_PATTERN)
    delayed = nari.audio.apply_audio_delay(frames, pad_value=PAD, bos_value=BOS, precomp=precomp)
    return delayed[0].numpy().astype(np.int64)


def nari_greedy(dia, text: str, max_tokens: int, audio_prompt=None):
    """Run nari-labs Dia.generate greedily; return (codes [frames, C] int64, info dict).

    ``_decoder_step`` is wrapped on the instance (the nari code on disk is untouched) to record the
    raw sampled channel-0 token of each step, before generate's EOS countdown overwrites it.
    """
    raw = []
    captured = {}
    cls_step = type(dia)._decoder_step
    cls_prepare = type(dia)._prepare_generation

    def capturing_prepare(*args, **kwargs):
        dec_state, dec_output = cls_prepare(dia, *args, **kwargs)
        captured["dec_output"] = dec_output
        return dec_state, dec_output

    def recording_step(*args, **kwargs):
        current_idx = args[-1] if len(args) >= 7 else kwargs["current_idx"]
        step = int(current_idx.reshape(-1)[0].item())
        pred = cls_step(dia, *args, **kwargs)
        raw.append((step, pred[0].clone()))
        return pred

    dia._decoder_step = recording_step
    dia._prepare_generation = capturing_prepare
    try:
        codes = dia.generate(
            text,
            audio_prompt=audio_prompt,
            max_tokens=max_tokens,
            cfg_scale=CFG_SCALE,
            temperature=TEMPERATURE,
            top_p=TOP_P,
            cfg_filter_top_k=CFG_FILTER_TOP_K,
        )
    finally:
        del dia._decoder_step
        del dia._prepare_generation
    max_delay = max(DELAY_PATTERN)
    steps = [s for s, _ in raw]
    first = 0 if audio_prompt is None else int(audio_prompt.shape[0])
    assert steps == list(range(first, first + len(steps))), "decoder steps are not consecutive"
    # The first step whose raw channel-0 token is EOS, before the max-length trigger
    # (dec_step + 1 >= max_tokens - max_delay) would force one.
    eos_step = None
    prefill = 0 if audio_prompt is None else int(audio_prompt.shape[0])
    for s, pred in raw:
        if s + 1 >= max_tokens - max_delay:
            break
        if int(pred[0]) == EOS:
            eos_step = s
            break
    codes = None if codes is None else np.asarray(codes).astype(np.int64)
    # Delayed frame stream: frame 0 = BOS, frame t + 1 = what step t wrote (after EOS/PAD forcing
    # and prefill masking); the input of step t is frame t.
    delayed = captured["dec_output"].generated_tokens[0, : prefill + len(raw) + 1].numpy().astype(np.int64)
    assert (delayed >= 0).all()
    info = {
        "eos_step": eos_step,
        "decoder_steps": len(raw),
        "raw": torch.stack([p for _, p in raw]).numpy(),
        "delayed": delayed,
    }
    return codes, info


def search_texts():
    rng = random.Random(SEARCH_SEED)
    for _ in range(SEARCH_CANDIDATES):
        a = " ".join(rng.choice(SEARCH_WORDS) for _ in range(rng.randint(2, 8)))
        b = " ".join(rng.choice(SEARCH_WORDS) for _ in range(rng.randint(2, 8)))
        p1, p2 = rng.choice(".!?"), rng.choice(".!?")
        yield f"[S1] {a.capitalize()}{p1} [S2] {b.capitalize()}{p2}"


# --------------------------------------------------------------------------------------------
# Fixture group: conversion proof (transformers vs nari-labs)
# --------------------------------------------------------------------------------------------
def verify_conversion(hf_model, dia, nari, teacher_tokens: np.ndarray) -> dict:
    """Assert that the nari-labs model with converted weights equals the transformers model."""
    report = {}
    with torch.inference_mode():
        for idx, text in enumerate((ENCODER_TEXT0, ENCODER_TEXT1)):
            tokens, dec_state, _ = nari_encoder_out(dia, text)
            cond = tokens[:, 0, :]  # [1, T]
            ids = torch.cat([torch.zeros_like(cond), cond], dim=0)  # [uncond, cond]
            mask = (cond != 0).long().repeat(2, 1)
            hf_enc = hf_model.model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            nari_enc = dec_state.enc_out
            valid = (cond[0] != 0).numpy()
            e_valid = rel_err(nari_enc[:, valid].numpy(), hf_enc[:, valid].numpy())
            e_pad = rel_err(nari_enc[:, ~valid].numpy(), hf_enc[:, ~valid].numpy()) if (~valid).any() else 0.0
            report[f"encoder_text{idx}_valid_rel_err"] = e_valid
            report[f"encoder_text{idx}_pad_rel_err"] = e_pad
            log(f"[verify] encoder text{idx}: valid positions rel err {e_valid:.3e}, pad positions {e_pad:.3e}")
            assert e_valid < 1e-5, f"encoder mismatch on non-pad positions: {e_valid}"

        # Teacher-forced decoder logits: nari step by step (KV cache) vs transformers in one pass.
        nari_logits = nari_teacher_logits(dia, ENCODER_TEXT1, teacher_tokens)  # [S, 2, C, V]
        tokens = nari_text_tokens(dia, ENCODER_TEXT1)[:, 0, :]
        ids = torch.cat([torch.zeros_like(tokens), tokens], dim=0)
        mask = (tokens != 0).long().repeat(2, 1)
        dec_in = torch.from_numpy(teacher_tokens).long()[None].repeat(2, 1, 1)  # [2, S, C]
        out = hf_model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_in, use_cache=False)
        S, C = teacher_tokens.shape
        hf_logits = out.logits.view(2, C, S, -1).permute(2, 0, 1, 3).numpy()  # [S, 2, C, V]
        e_dec = rel_err(nari_logits, hf_logits)
        report["decoder_teacher_logits_rel_err"] = e_dec
        log(f"[verify] decoder teacher-forced logits ({S} steps, both CFG rows): rel err {e_dec:.3e}")
        assert e_dec < 1e-5, f"decoder logits mismatch: {e_dec}"
    return report


# --------------------------------------------------------------------------------------------
# Fixture group: reference outputs
# --------------------------------------------------------------------------------------------
def make_encoder_reference(dia, ref_dir: Path) -> dict:
    rows, meta = [], {}
    for idx, text in enumerate((ENCODER_TEXT0, ENCODER_TEXT1)):
        tokens, dec_state, _ = nari_encoder_out(dia, text)
        n = int((tokens != 0).sum())
        if idx == 0:
            assert len(dia._encode_text(text)) == ENC["max_position_embeddings"] == n, (
                f"text0 must be exactly {ENC['max_position_embeddings']} tokens, is {len(dia._encode_text(text))}"
            )
        else:
            assert n < ENC["max_position_embeddings"]
        rows.append(tokens[0, 0].numpy())
        enc_out = dec_state.enc_out.float().numpy()
        assert enc_out.shape == (2, ENC["max_position_embeddings"], ENC["hidden_size"])
        save_npy(ref_dir / f"encoder_out_{idx}.npy", enc_out, np.float32)
        meta[f"text{idx}_len"] = n
    save_npy(ref_dir / "encoder_tokens.npy", np.stack(rows), np.int64)
    log(f"[encoder] token lengths {meta}")
    return meta


def make_teacher_reference(dia, nari, ref_dir: Path) -> np.ndarray:
    tokens = make_teacher_tokens(nari, TEACHER_STEPS, DEC["num_channels"])
    logits = nari_teacher_logits(dia, ENCODER_TEXT1, tokens)
    assert logits.shape == (TEACHER_STEPS, 2, DEC["num_channels"], DEC["vocab_size"])
    assert np.isfinite(logits).all()
    save_npy(ref_dir / "teacher_tokens.npy", tokens, np.int64)
    save_npy(ref_dir / "teacher_logits.npy", logits, np.float32)
    log(f"[teacher] logits std {logits.std():.3f}, cond-uncond max diff {np.abs(logits[:, 1] - logits[:, 0]).max():.3f}")
    return tokens


def _greedy_case(name, text, max_tokens, codes, info) -> dict:
    return {
        "name": name,
        "text": text,
        "max_tokens": max_tokens,
        "cfg_scale": CFG_SCALE,
        "temperature": TEMPERATURE,
        "top_p": TOP_P,
        "cfg_filter_top_k": CFG_FILTER_TOP_K,
        "frames": int(codes.shape[0]),
        "eos_step": info["eos_step"],
        "decoder_steps": info["decoder_steps"],
    }


def _check_varied(codes: np.ndarray, name: str) -> None:
    uniq = [len(np.unique(codes[:, c])) for c in range(codes.shape[1])]
    log(f"[greedy:{name}] unique codes per channel {uniq}")
    assert min(uniq) > 1, f"greedy case {name} is degenerate (constant channel)"


def make_greedy_reference(dia, ref_dir: Path) -> tuple[list, dict]:
    max_delay = max(DELAY_PATTERN)
    cases = []
    found = {}
    candidates = [ENCODER_TEXT1] + list(search_texts())
    tried = {"long": 0, "eos": 0}

    # (a) long: no natural EOS, the max-length trigger ends it.
    for text in candidates:
        tried["long"] += 1
        codes, info = nari_greedy(dia, text, LONG_MAX_TOKENS)
        if info["eos_step"] is None and codes is not None and codes.shape[0] >= LONG_MIN_STEPS:
            found["long"] = (text, LONG_MAX_TOKENS, codes, info)
            break
    # (b) eos: channel-0 EOS fires naturally within EOS_STEP_RANGE.
    for text in candidates[1:]:
        tried["eos"] += 1
        codes, info = nari_greedy(dia, text, EOS_MAX_TOKENS)
        s = info["eos_step"]
        if s is not None and EOS_STEP_RANGE[0] <= s <= EOS_STEP_RANGE[1]:
            found["eos"] = (text, EOS_MAX_TOKENS, codes, info)
            break
    log(f"[greedy] candidates tried: {tried}")

    for name in ("long", "eos"):
        if name not in found:
            log(f"[greedy] WARNING: no text found for case {name!r} within {tried[name]} candidates")
            continue
        text, max_tokens, codes, info = found[name]
        again, info2 = nari_greedy(dia, text, max_tokens)
        assert np.array_equal(codes, again) and info["eos_step"] == info2["eos_step"], f"{name} not deterministic"
        assert np.array_equal(info["delayed"], info2["delayed"]), f"{name} not deterministic"
        _check_varied(codes, name)
        if name == "eos":
            # finished_step = eos_step + 1 and the output length is finished_step - prefill_steps(1).
            assert codes.shape[0] == info["eos_step"], (codes.shape, info["eos_step"])
        else:
            assert codes.shape[0] == max_tokens - max_delay - 1, codes.shape
        assert codes.min() >= 0 and codes.max() <= 1023
        save_npy(ref_dir / f"greedy_{name}.npy", codes, np.int64)
        save_npy(ref_dir / f"greedy_{name}_delayed.npy", info["delayed"], np.int64)
        case = _greedy_case(name, text, max_tokens, codes, info)
        cases.append(case)
        log(f"[greedy:{name}] frames {case['frames']}, eos_step {case['eos_step']}, text {text!r}")
    return cases, found


PROMPT_FRAMES = 20
PROMPT_TEXT = "[S1] The voice to continue. "
PROMPT_CONTINUATION = "[S2] What it says next."
PROMPT_MAX_TOKENS = 120


def make_prompt_reference(dia, ref_dir: Path) -> dict:
    """Greedy generation conditioned on a voice prompt given as DAC codes ([T, 9], the form
    nari-labs `generate(audio_prompt=tensor)` takes after encoding a WAV): checks the prefill
    (prompt frames delayed behind BOS and run through the decoder before the first sampled step)."""
    g = torch.Generator().manual_seed(1234)
    prompt = torch.randint(0, 1024, (PROMPT_FRAMES, len(DELAY_PATTERN)), generator=g, dtype=torch.int64)
    text = PROMPT_TEXT + PROMPT_CONTINUATION
    assert len(text.encode()) - 6 <= ENC["max_position_embeddings"], "prompt text must fit the encoder"
    codes, info = nari_greedy(dia, text, PROMPT_MAX_TOKENS, audio_prompt=prompt)
    again, _ = nari_greedy(dia, text, PROMPT_MAX_TOKENS, audio_prompt=prompt)
    assert np.array_equal(codes, again), "prompt case not deterministic"
    _check_varied(codes, "prompt")
    save_npy(ref_dir / "prompt_codes.npy", prompt.numpy(), np.int64)
    save_npy(ref_dir / "greedy_prompt.npy", codes, np.int64)
    case = _greedy_case("prompt", text, PROMPT_MAX_TOKENS, codes, info)
    case["prompt_codes"] = "prompt_codes.npy"
    case["prompt_text"] = PROMPT_TEXT
    log(f"[greedy:prompt] frames {case['frames']}, eos_step {case['eos_step']}")
    return case


def compare_hf_generate(hf_model, dia, nari, found: dict) -> dict:
    """transformers greedy generate on the tiny-hf weights vs the nari-labs result (report only).

    Two decoder prefills are tried: the one DiaProcessor builds (BOS frame + 15 delay frames, so
    channel 8 holds BOS at frames 0..15) and the one nari-labs builds (channel 8 holds BOS at frames
    0..14 only: `_prepare_audio_prompt` allocates prompt_len + max_delay frames, one short, so frame
    15 of channel 8 is a sampled token).  Codes are extracted like DiaProcessor.batch_decode.
    """
    result = {}
    if "long" not in found:
        return result
    text, max_tokens, nari_codes, nari_info = found["long"]
    C, max_delay = DEC["num_channels"], max(DELAY_PATTERN)
    cond = nari_text_tokens(dia, text)[:, 0, :]
    mask = (cond != 0).long()
    prefill = torch.full((1, 1 + max_delay, C), PAD, dtype=torch.long)
    prefill[:, 0] = BOS
    precomp = nari.audio.build_delay_indices(B=1, T=1 + max_delay, C=C, delay_pattern=DELAY_PATTERN)
    processor_style = nari.audio.apply_audio_delay(prefill, pad_value=PAD, bos_value=BOS, precomp=precomp)
    nari_style = processor_style.clone()
    nari_style[0, max_delay, C - 1] = PAD  # PAD = "free, to be generated" in transformers' delay mask
    for label, dec_in in (("processor_prefill", processor_style), ("nari_style_prefill", nari_style)):
        try:
            with torch.inference_mode():
                seq = hf_model.generate(
                    input_ids=cond,
                    attention_mask=mask,
                    decoder_input_ids=dec_in,
                    decoder_attention_mask=torch.ones((1, 1 + max_delay), dtype=torch.long),
                    guidance_scale=CFG_SCALE,
                    top_k=CFG_FILTER_TOP_K,
                    do_sample=False,
                    max_new_tokens=max_tokens,
                )
            seq = seq[0].numpy()  # [T, C] delayed, frame 0 = BOS
            start = int((seq[:, 0] == BOS).sum())
            end = seq.shape[0] - int((seq[:, 0] == PAD).sum()) - 1
            T = seq.shape[0]
            reverted = np.stack([seq[np.minimum(np.arange(T) + d, T - 1), c] for c, d in enumerate(DELAY_PATTERN)], 1)
            hf_codes = reverted[start:end]
            m = min(hf_codes.shape[0], nari_codes.shape[0])
            same = (hf_codes[:m] == nari_codes[:m]).all(axis=1)
            n_delayed = min(seq.shape[0], nari_info["delayed"].shape[0])
            same_delayed = (seq[:n_delayed] == nari_info["delayed"][:n_delayed]).all(axis=1)
            result[label] = {
                "hf_frames": int(hf_codes.shape[0]),
                "nari_frames": int(nari_codes.shape[0]),
                "equal_code_frames_prefix": int(m if same.all() else np.argmin(same)),
                "equal_delayed_frames_prefix": int(n_delayed if same_delayed.all() else np.argmin(same_delayed)),
                "identical": bool(same.all() and hf_codes.shape[0] == nari_codes.shape[0]),
            }
        except Exception as e:  # noqa: BLE001 - report only
            result[label] = {"error": f"{type(e).__name__}: {e}"}
        log(f"[hf-generate] transformers vs nari-labs greedy 'long', {label}: {result[label]}")
    return result


# --------------------------------------------------------------------------------------------
# Fixture group: sampling distributions (reference/sampling/)
# --------------------------------------------------------------------------------------------
# Parameter sets of the sampling fixtures: nari-labs' defaults, and one where every parameter
# differs (so a sampler that ignores or hard-codes one of them fails).
SAMPLING_SETS = (
    {"name": "default", "cfg_scale": 3.0, "temperature": 1.2, "top_p": 0.95, "cfg_filter_top_k": 45},
    {"name": "narrow", "cfg_scale": 2.0, "temperature": 0.8, "top_p": 0.8, "cfg_filter_top_k": 10},
)
# Teacher-forced along the greedy "eos" case (its delayed frames are the decoder inputs); the
# recorded steps: the first step (channels 1..8 read BOS), both sides of the delay boundary
# (15/16), steps where EOS is a channel-0 candidate but not the top one (4, 8, 17, 26, 34, 45,
# 56, 65), the step where the reference chose EOS (73) and steps of the EOS countdown after it.
# Every step before the last recorded one runs (KV cache); only these are stored.
SAMPLING_CASE = "eos"
SAMPLING_STEPS = (0, 4, 8, 15, 16, 17, 26, 34, 45, 56, 65, 72, 73, 74, 80, 87)
SAMPLING_MAX_MIB = 2.0


class _TorchWithMultinomial:
    """``torch`` as ``dia.model`` sees it while recording: every attribute is torch's own except
    ``multinomial``, which records its input (the final probabilities) and then draws with the
    real ``torch.multinomial``."""

    def __init__(self, record):
        real = torch.multinomial

        def multinomial(input, *args, **kwargs):  # noqa: A002 - torch's own parameter name
            record.append(input.detach().float().clone())
            return real(input, *args, **kwargs)

        self.multinomial = multinomial

    def __getattr__(self, name):
        return getattr(torch, name)


def nari_teacher_sampling(dia, nari, text: str, tokens: np.ndarray, params: dict) -> dict:
    """Runs the unmodified nari-labs ``Dia._decoder_step`` teacher-forced on ``tokens`` [S, C]
    (step t reads frame t at position t, as ``generate`` and ``nari_teacher_logits`` do) and
    records, per step, what its code computed:

    * ``probs`` [S, C, V]: the tensor ``_sample_next_token`` hands to ``torch.multinomial``
      (``torch`` is swapped for a recording view inside ``dia.model`` for the duration);
    * ``filtered`` [S, C, V]: the logits ``_decoder_step`` hands to ``_sample_next_token``
      (after CFG, the CFG top-k filter and the EOS/PAD masks);
    * ``logits`` [S, 2, C, V]: what ``decode_step`` returned inside ``_decoder_step``.
    """
    from unittest import mock

    probs, filtered, logits = [], [], []
    real_sample = nari.model._sample_next_token
    real_decode = dia.model.decoder.decode_step

    def recording_sample(logits_BCxV, *args, **kwargs):
        filtered.append(logits_BCxV.detach().float().clone())
        return real_sample(logits_BCxV, *args, **kwargs)

    def recording_decode(*args, **kwargs):
        out = real_decode(*args, **kwargs)
        logits.append(out[:, -1].detach().float().clone())
        return out

    _, dec_state, _ = nari_encoder_out(dia, text)
    C = tokens.shape[1]
    with (
        mock.patch.object(nari.model, "torch", _TorchWithMultinomial(probs)),
        mock.patch.object(nari.model, "_sample_next_token", recording_sample),
        mock.patch.object(dia.model.decoder, "decode_step", recording_decode),
        torch.inference_mode(),
    ):
        for t in range(tokens.shape[0]):
            dec_state.prepare_step(t)
            tok = torch.from_numpy(tokens[t]).long().view(1, 1, -1).repeat_interleave(2, dim=0)
            pred = dia._decoder_step(
                tok,
                dec_state,
                params["cfg_scale"],
                params["temperature"],
                params["top_p"],
                params["cfg_filter_top_k"],
                torch.tensor([t]),
            )
            assert pred.shape == (1, C)
            n = t + 1
            assert len(probs) == len(filtered) == len(logits) == n, "one multinomial call per step"
    assert nari.model.torch is torch and "decode_step" not in vars(dia.model.decoder), "patches undone"
    out = {
        "probs": torch.stack(probs).numpy(),
        "filtered": torch.stack(filtered).numpy(),
        "logits": torch.stack(logits).numpy(),
    }
    S, V = tokens.shape[0], DEC["vocab_size"]
    assert out["probs"].shape == out["filtered"].shape == (S, C, V), out["probs"].shape
    assert out["logits"].shape == (S, 2, C, V), out["logits"].shape
    return out


def _sparse(dense: np.ndarray, keep: np.ndarray, fill: float, dtype) -> tuple[np.ndarray, np.ndarray]:
    """[..., V] -> (index [..., K] int64, value [..., K]) of the entries where ``keep``, in
    ascending index order, padded with index -1 and ``fill``; checked to expand back exactly."""
    K = int(keep.sum(-1).max())
    lead = dense.shape[:-1]
    index = np.full(lead + (K,), -1, dtype=np.int64)
    value = np.full(lead + (K,), fill, dtype=dtype)
    for pos in np.ndindex(*lead):
        idx = np.flatnonzero(keep[pos])
        index[pos][: len(idx)] = idx
        value[pos][: len(idx)] = dense[pos][idx]
    back = np.full(dense.shape, fill, dtype=dtype)
    for pos in np.ndindex(*lead):
        n = int((index[pos] >= 0).sum())
        back[pos][index[pos][:n]] = value[pos][:n]
    assert np.array_equal(back, dense), "sparse form does not expand back"
    return index, value


def make_sampling_reference(dia, nari, ref_dir: Path) -> dict:
    """Reference sampling distributions (``reference/sampling/``), teacher-forced along the
    greedy ``eos`` case's delayed frames (``greedy_eos_delayed.npy``, ``texts.json``), for every
    parameter set of ``SAMPLING_SETS`` at the steps ``SAMPLING_STEPS``.

    Files (R = len(steps), C = 9, V = 1028; ``sampling.json`` describes them):

    * ``tokens.npy`` int64 [S, C]: decoder input of steps 0..S-1 (S = last step + 1);
    * ``logits.npy`` float32 [R, 2, C, V]: decoder logits of the recorded steps (row 0
      unconditional, row 1 conditional), from ``nari_teacher_logits`` (asserted equal to what
      ``decode_step`` returned inside ``_decoder_step``);
    * ``<set>_probs_index.npy`` int64 / ``<set>_probs.npy`` float32 [R, C, K]: the nonzero entries
      of the final probability vector passed to ``torch.multinomial`` (ascending token id, padded
      with -1 / 0; every entry not listed is exactly 0);
    * ``<set>_filtered_index.npy`` / ``<set>_filtered.npy`` [R, C, k]: the finite entries of the
      logits ``_decoder_step`` passes to ``_sample_next_token`` (padded with -1 / -inf; every entry
      not listed is -inf).
    """
    out_dir = ref_dir / "sampling"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)

    cases = {c["name"]: c for c in json.loads((ref_dir / "texts.json").read_text())["greedy"]}
    case = cases[SAMPLING_CASE]
    text, eos_step = case["text"], case["eos_step"]
    delayed = np.load(ref_dir / f"greedy_{SAMPLING_CASE}_delayed.npy")
    steps = list(SAMPLING_STEPS)
    assert eos_step in steps, f"the reference's EOS step {eos_step} must be recorded"
    S = steps[-1] + 1
    assert steps == sorted(set(steps)) and S <= delayed.shape[0], (steps, delayed.shape)
    tokens = delayed[:S].astype(np.int64)
    C, V = tokens.shape[1], DEC["vocab_size"]

    logits = nari_teacher_logits(dia, text, tokens)  # [S, 2, C, V]
    save_npy(out_dir / "tokens.npy", tokens, np.int64)
    save_npy(out_dir / "logits.npy", logits[steps], np.float32)

    max_delay = max(DELAY_PATTERN)
    sets = []
    for params in SAMPLING_SETS:
        name = params["name"]
        rec = nari_teacher_sampling(dia, nari, text, tokens, params)
        assert np.array_equal(rec["logits"], logits), f"{name}: _decoder_step saw other logits"
        probs, filtered = rec["probs"], rec["filtered"]
        assert (probs >= 0).all() and np.abs(probs.sum(-1) - 1).max() < 1e-5, f"{name}: not distributions"
        # Support of the final distribution inside the finite filtered logits, as the code says.
        assert not ((probs > 0) & ~np.isfinite(filtered)).any(), f"{name}: mass outside the filter"
        if params is SAMPLING_SETS[0]:
            # The default set's most likely tokens replay the greedy run (temperature only
            # rescales): the decoder inputs really are the reference's own generation, up to
            # the step where it chose EOS (channel 0) and while no prefill/countdown forced them.
            top = probs.argmax(-1)
            assert (top[max_delay:eos_step] == delayed[max_delay + 1 : eos_step + 1]).all(), name
            assert (top[: eos_step + 1, 0] == delayed[1 : eos_step + 2, 0]).all(), name
        # EOS (channel 0) gets mass only when it is the top logit, and then all of it.
        eos_p = probs[:, 0, EOS]
        assert np.isin(eos_p, (0.0, 1.0)).all(), f"{name}: EOS probability {eos_p}"
        eos_top = [s for s in steps if eos_p[s] == 1.0]
        eos_candidate = [s for s in steps if eos_p[s] == 0.0 and np.isfinite(filtered[s, 0, EOS])]
        eos_absent = [s for s in steps if not np.isfinite(filtered[s, 0, EOS])]
        log(
            f"[sampling:{name}] EOS top at {eos_top}, a candidate but not top at {eos_candidate}, "
            f"filtered out at {eos_absent}; support sizes {(probs[steps] > 0).sum(-1).min()}.."
            f"{(probs[steps] > 0).sum(-1).max()}"
        )
        assert eos_step in eos_top, f"{name}: the reference's EOS step {eos_step} is not an EOS-top step"
        assert eos_candidate and eos_absent, f"{name}: need steps where EOS is not the top token"
        for kind, dense, keep, fill in (
            ("probs", probs[steps], probs[steps] > 0, 0.0),
            ("filtered", filtered[steps], np.isfinite(filtered[steps]), -np.inf),
        ):
            index, value = _sparse(dense, keep, fill, np.float32)
            save_npy(out_dir / f"{name}_{kind}_index.npy", index, np.int64)
            save_npy(out_dir / f"{name}_{kind}.npy", value, np.float32)
        sets.append(
            dict(
                params,
                eos_top_steps=eos_top,
                eos_candidate_not_top_steps=eos_candidate,
                eos_filtered_out_steps=eos_absent,
            )
        )

    meta = {
        "case": SAMPLING_CASE,
        "text": text,
        "eos_step": eos_step,
        "steps": steps,
        "channels": C,
        "vocab_size": V,
        "eos_token_id": EOS,
        "sets": sets,
        "conventions": {
            "tokens": "tokens.npy [S, C] int64: the decoder input of step t is row t (= "
            f"greedy_{SAMPLING_CASE}_delayed.npy rows 0..S-1), at position t",
            "logits": "logits.npy [R, 2, C, V] float32: decoder logits of steps[r] (row 0 unconditional, 1 conditional)",
            "probs": "<set>_probs_index.npy int64 / <set>_probs.npy float32 [R, C, K]: nonzero entries of the "
            "probabilities nari-labs _sample_next_token passed to torch.multinomial at steps[r], channel c "
            "(padding index -1; every other entry is exactly 0)",
            "filtered": "<set>_filtered_index.npy / <set>_filtered.npy [R, C, k]: finite entries of the logits "
            "_decoder_step passed to _sample_next_token (CFG top-k, EOS/PAD masks; padding index -1; every "
            "other entry is -inf)",
        },
    }
    write_json(out_dir / "sampling.json", meta)
    check_fixture_size(out_dir, SAMPLING_MAX_MIB)
    return meta



def check_fixture_size(out: Path, limit_mb: float = 12.0) -> int:
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    log(f"[size] {out}: {total} bytes ({total / 2**20:.2f} MiB)")
    assert total < limit_mb * 2**20, f"fixtures exceed {limit_mb} MiB"
    return total


# --------------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dia-repo", default="/work/ref/dia", help="nari-labs/dia checkout (contains dia/)")
    ap.add_argument("--out", default="tests/fixtures", help="output root (relative to the repo root)")
    ap.add_argument(
        "--only",
        choices=["sampling"],
        help="regenerate only this fixture group, from the checkpoint and reference files already "
        "under --out (sampling: reference/sampling/ from tiny-nari/, reference/texts.json and "
        "reference/greedy_eos_delayed.npy); nothing else is written",
    )
    args = ap.parse_args()

    out = Path(args.out)
    if not out.is_absolute():
        out = REPO_ROOT / out
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(0)

    nari = import_nari(args.dia_repo)

    if args.only == "sampling":
        dia = load_nari_dia(nari, out / "tiny-nari")
        make_sampling_reference(dia, nari, out / "reference")
        for p in sorted((out / "reference" / "sampling").iterdir()):
            log(f"  {hashlib.sha256(p.read_bytes()).hexdigest()[:16]}  {p.stat().st_size:>9}  {p.relative_to(out)}")
        return

    # Checkpoints.
    hf_cfg = make_hf_config()
    hf_model = build_hf_model(hf_cfg)
    make_tiny_hf(hf_model, out / "tiny-hf")
    nari_sd = hf_to_nari(hf_model.state_dict(), hf_cfg)
    make_tiny_nari(nari, make_nari_config(nari), nari_sd, out / "tiny-nari")
    dia = load_nari_dia(nari, out / "tiny-nari")

    # References (nari-labs code on the tiny-nari checkpoint).
    ref = out / "reference"
    # Only this script's own files: subfolders (reference/dac) belong to other scripts.
    ref.mkdir(parents=True, exist_ok=True)
    for f in ref.iterdir():
        if f.is_file():
            f.unlink()
    make_encoder_reference(dia, ref)
    teacher_tokens = make_teacher_reference(dia, nari, ref)
    verify = verify_conversion(hf_model, dia, nari, teacher_tokens)
    cases, found = make_greedy_reference(dia, ref)
    cases.append(make_prompt_reference(dia, ref))
    write_json(
        ref / "texts.json",
        {
            "encoder_texts": [ENCODER_TEXT0, ENCODER_TEXT1],
            "teacher_text": ENCODER_TEXT1,
            "greedy": cases,
            "conventions": {
                "encoder_out": "[2, T, E]: row 0 unconditional (all-zero text), row 1 conditional; both use "
                "the conditional padding mask (nari-labs: pad queries attend only pad keys)",
                "teacher_logits": "[step, cfg_row, channel, vocab], cfg_row 0 = unconditional, 1 = conditional; "
                "decode_step at position = step with teacher_tokens[step] as input, KV cache filled step by step",
                "eos_step": "0-based decoder step (position of the input frame) whose channel-0 token was a "
                "natural EOS; the EOS sits in delayed frame eos_step + 1; frames == eos_step; null when the "
                "max-length trigger (step + 1 >= max_tokens - 15) ended generation",
                "greedy_codes": "nari-labs Dia.generate output with load_dac=False: [frames, 9] delay-reverted codes",
                "greedy_delayed": "greedy_<name>_delayed.npy [decoder_steps + 1, 9]: nari-labs generated_tokens, "
                "frame 0 = BOS, frame t + 1 written by decoder step t (after prefill masking and EOS/PAD "
                "forcing); the input of step t is frame t. nari-labs quirk: channel 8 (delay 15) holds BOS "
                "only at frames 0..14; frame 15 of channel 8 is a sampled token (prefill is max_delay frames "
                "long, one short of the delayed BOS)",
            },
        },
    )
    make_sampling_reference(dia, nari, ref)
    hf_gen = compare_hf_generate(hf_model, dia, nari, found)
    check_fixture_size(out)

    log("[summary] " + json.dumps({"verify": verify, "hf_generate": hf_gen}, sort_keys=True))
    for p in sorted(out.rglob("*")):
        if p.is_file():
            log(f"  {hashlib.sha256(p.read_bytes()).hexdigest()[:16]}  {p.stat().st_size:>9}  {p.relative_to(out)}")


if __name__ == "__main__":
    main()
