"""Checks a bundle written by dia-export with the Python ONNX tools users may also use:
`onnx.checker.check_model` (full check, external data resolved) and a Python
`onnxruntime` session per graph, run once on valid inputs (the DAC graphs, when the bundle has
them, on two lengths: their frames/samples dims are dynamic).

    python scripts/check_bundle.py BUNDLE_DIR
"""
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "int64": np.int64,
    "int32": np.int32,
    "bool": np.bool_,
}


def main(bundle: Path) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    enc_spec = manifest["graphs"]["encoder"]
    dec_spec = manifest["graphs"]["decoder_step"]
    if manifest.get("target") == "fused":
        # ONNX Runtime's contrib ops (SimplifiedLayerNormalization is registered in the default
        # domain) are unknown to onnx.checker: onnxruntime's loader below checks these graphs.
        print("fused bundle: encoder and decoder_step checked by onnxruntime only")
    else:
        for spec in (enc_spec, dec_spec):
            onnx.checker.check_model(str(bundle / spec["file"]), full_check=True)
            print(f"onnx.checker: {spec['file']} ok")

    t = manifest["max_text_len"]
    tokens = np.zeros((2, t), np.int64)
    tokens[1, :5] = [1, 72, 105, 46, 32]
    mask = np.broadcast_to(tokens[1] != 0, (2, t)).copy()
    enc = ort.InferenceSession(str(bundle / enc_spec["file"]), providers=["CPUExecutionProvider"])
    names = [o.name for o in enc.get_outputs()]
    outs = dict(zip(names, enc.run(None, {"text_tokens": tokens, "text_mask": mask})))
    for o in enc_spec["outputs"]:
        # -1 in the manifest is a dynamic dim (the encoder's text length): here the full length.
        want = [t if d == -1 else d for d in o["shape"]]
        assert list(outs[o["name"]].shape) == want, o
    print(f"onnxruntime {ort.__version__}: encoder ran, {len(outs)} outputs as the manifest says")

    dec = ort.InferenceSession(str(bundle / dec_spec["file"]), providers=["CPUExecutionProvider"])

    def concrete(shape):
        # The fused step's dynamic dims: the rows first (here one utterance's CFG pair), then
        # the text length (the encoder ran at the full length).
        return [(2 if k == 0 else t) if d == -1 else d for k, d in enumerate(shape)]

    feeds = {}
    for i in dec_spec["inputs"]:
        name = i["name"]
        shape = concrete(i["shape"])
        if name == "cross_mask":
            feeds[name] = mask
        elif name.startswith("cross_k") or name.startswith("cross_v"):
            feeds[name] = outs[name]
        elif name == "tokens":
            feeds[name] = np.full(shape, manifest["config"]["bos_token_id"], np.int64)
        else:  # step, cross_bias (all text positions allowed), caches
            feeds[name] = np.zeros(shape, DTYPES[i["dtype"]])
    res = dict(zip([o.name for o in dec.get_outputs()], dec.run(None, feeds)))
    for o in dec_spec["outputs"]:
        assert list(res[o["name"]].shape) == concrete(o["shape"]), o
    assert np.isfinite(res["logits"]).all()
    print("onnxruntime: decoder_step ran, logits finite")

    if manifest["graphs"].get("dac_decoder"):
        check_dac(bundle, manifest)


def check_dac(bundle: Path, manifest: dict) -> None:
    """The codec graphs (dia-export --dac): dynamic frames/samples, so run two lengths each."""
    dac = manifest["dac"]
    hop, n_cb = dac["hop_length"], dac["n_codebooks"]
    dec_spec = manifest["graphs"]["dac_decoder"]
    enc_spec = manifest["graphs"]["dac_encoder"]
    for spec in (dec_spec, enc_spec):
        onnx.checker.check_model(str(bundle / spec["file"]), full_check=True)
        print(f"onnx.checker: {spec['file']} ok")
    dec = ort.InferenceSession(str(bundle / dec_spec["file"]), providers=["CPUExecutionProvider"])
    enc = ort.InferenceSession(str(bundle / enc_spec["file"]), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for frames in (1, 5):
        codes = rng.integers(0, dac["codebook_size"], size=(1, n_cb, frames), dtype=np.int64)
        (audio,) = dec.run(["audio"], {"codes": codes})
        assert audio.shape == (1, 1, frames * hop), audio.shape
        assert np.isfinite(audio).all() and np.abs(audio).max() <= 1.0
        wave = np.sin(np.arange(frames * hop, dtype=np.float32) * 0.05)[None, None, :].astype(np.float32)
        (out,) = enc.run(["codes"], {"audio": wave})
        assert out.shape == (1, n_cb, frames) and out.dtype == np.int64, (out.shape, out.dtype)
        assert ((out >= 0) & (out < dac["codebook_size"])).all()
    print(f"onnxruntime: dac_decoder and dac_encoder ran on 1 and 5 frames ({dac['source_layout']} layout)")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
