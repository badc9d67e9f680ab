//! `encoder.onnx`: text tokens and mask of the CFG pair -> encoder states, plus the
//! cross-attention K and V of every decoder layer (computed once per utterance here, so the
//! decoder step never recomputes them).
//!
//! Inputs: `text_tokens` int64 `[2, T]`, `text_mask` bool `[2, T]` (true on non-pad text; both
//! rows carry the conditional text's mask, as the reference does).
//! Outputs: `encoder_states` float32 `[2, T, E]`, and per decoder layer i `cross_k_{i}`
//! `[2, KVc, d, T]` (transposed) and `cross_v_{i}` `[2, KVc, T, d]` in the bundle dtype.
//!
//! `T` (`text_len`) is dynamic, up to the exported text length. The reference pads every text
//! to that length, but a padded position only ever attends to other padded positions and the
//! decoder never attends to them, so running the text's own tokens alone gives the same
//! results at a fraction of the cost; the runtime does that and pads the cross K/V itself.

use dia_bundle::names::encoder as names;
use dia_bundle::DiaConfig;

use crate::attention::{cross_kv, self_attention_full, Heads, Mask, MASK_BIAS};
use crate::builder::{Builder, DType, Value, DYN};
use crate::checkpoint::CheckpointError;
use crate::mlp::mlp;
use crate::norm::rms_norm;
use crate::rope;
use crate::weights::Weights;
use crate::Target;

/// Rows of the CFG pair: unconditional, conditional.
pub const PAIR: i64 = 2;

/// RMSNorm of `x` cast to the bundle dtype: the float32 pattern (which ONNX Runtime fuses),
/// or for the fused target the fused kernel written out, weight in the bundle dtype.
fn norm(
    b: &mut Builder,
    w: &Weights,
    name: &str,
    x: &Value,
    eps: f64,
    target: Target,
) -> Result<Value, CheckpointError> {
    let dim = *x.shape.last().unwrap() as usize;
    if target == Target::Fused {
        let g = w.norm_in_dtype(b, name, dim)?;
        Ok(b.scoped("rms_norm", |b| b.simplified_layer_norm(x, &g, eps)))
    } else {
        let g = w.norm(b, name, dim)?;
        let h = rms_norm(b, &g, x, eps);
        Ok(b.cast(&h, w.dtype))
    }
}

#[allow(clippy::too_many_arguments)]
fn encoder_layer(
    b: &mut Builder,
    w: &Weights,
    cfg: &DiaConfig,
    x: &Value,
    keep: &Mask,
    cos: &Value,
    sin: &Value,
    target: Target,
) -> Result<Value, CheckpointError> {
    let e = &cfg.encoder_config;
    let heads = Heads {
        q: e.num_attention_heads,
        kv: e.num_key_value_heads,
        dim: e.head_dim,
    };
    let h = norm(b, w, "pre_sa_norm", x, e.norm_eps, target)?;
    let sa = self_attention_full(b, &w.pp("self_attention"), &h, keep, cos, sin, heads)?;
    let x = b.add(x, &sa);

    let h = norm(b, w, "post_sa_norm", &x, e.norm_eps, target)?;
    let m = mlp(b, &w.pp("mlp"), &h, e.hidden_size, e.intermediate_size)?;
    Ok(b.add(&x, &m))
}

/// Builds the encoder graph for texts of up to `text_len` tokens.
///
/// For [`Target::CoreMl`] the text length is fixed at `text_len` (texts padded to it),
/// `text_tokens` is int32 and `text_mask` float32 (1 text, 0 padding).
pub fn build_encoder(
    b: &mut Builder,
    w: &Weights,
    cfg: &DiaConfig,
    text_len: usize,
    target: Target,
) -> Result<(), CheckpointError> {
    let e = &cfg.encoder_config;
    let d = &cfg.decoder_config;
    let t = text_len as i64;
    let coreml = target == Target::CoreMl;
    let (tokens, mask) = if coreml {
        (
            b.input(names::TEXT_TOKENS, DType::I32, &[PAIR, t]),
            b.input(names::TEXT_MASK, DType::F32, &[PAIR, t]),
        )
    } else {
        (
            b.input_dyn(names::TEXT_TOKENS, DType::I64, &[PAIR, DYN], &["text_len"]),
            b.input_dyn(names::TEXT_MASK, DType::Bool, &[PAIR, DYN], &["text_len"]),
        )
    };
    let dims: &[&str] = if coreml { &[] } else { &["text_len"] };

    let enc = w.pp("encoder");
    let emb = enc.tensor("embedding", &[e.vocab_size, e.hidden_size])?;
    let emb = enc.add(b, "embedding", &emb, w.dtype);
    let mut x = b.scoped("encoder.embedding", |b| b.gather(&emb, &tokens, 0));

    // A query attends a key when both are text or both are padding.
    let keep = b.scoped("encoder.mask", |b| {
        let q = b.unsqueeze(&mask, &[2]);
        let k = b.unsqueeze(&mask, &[1]);
        if coreml {
            // same = q·k + (1-q)(1-k); bias = (same - 1) · 30000.
            let one = b.scalar(1.0, DType::F32);
            let qk = b.mul(&q, &k);
            let nq = b.sub(&one, &q);
            let nk = b.sub(&one, &k);
            let nqk = b.mul(&nq, &nk);
            let same = b.add(&qk, &nqk);
            let off = b.sub(&same, &one);
            let scale = b.scalar(-MASK_BIAS, DType::F32);
            let bias = b.mul(&off, &scale);
            Mask::Bias(b.unsqueeze(&bias, &[1]))
        } else {
            let m = b.equal(&q, &k);
            Mask::Keep(b.unsqueeze(&m, &[1]))
        }
    });
    let half = (e.head_dim / 2) as i64;
    let (cos, sin) = rope::tables(text_len, e.head_dim, e.rope_theta);
    let cos = b.initializer(
        "encoder.rope.cos",
        DType::F32,
        &[t, 1, half],
        &f32_bytes(&cos),
    );
    let sin = b.initializer(
        "encoder.rope.sin",
        DType::F32,
        &[t, 1, half],
        &f32_bytes(&sin),
    );
    // The table rows of this text's positions (all of them at a fixed length).
    let (cos, sin) = if coreml {
        (cos, sin)
    } else {
        b.scoped("encoder.rope", |b| {
            let shape = b.shape_of(&tokens);
            let len = b.slice(&shape, 0, 1, 2);
            (b.slice_to(&cos, 0, &len), b.slice_to(&sin, 0, &len))
        })
    };

    for i in 0..e.num_hidden_layers {
        let lw = enc.pp(format!("layers.{i}"));
        x = b.scoped(lw.prefix(), |b| {
            encoder_layer(b, &lw, cfg, &x, &keep, &cos, &sin, target)
        })?;
    }
    // The states leave in float32 (the reference's encoder output) and feed the cross K/V
    // projections in the bundle dtype.
    let states = if target == Target::Fused {
        let s = b.scoped("encoder", |b| norm(b, &enc, "norm", &x, e.norm_eps, target))?;
        b.cast(&s, DType::F32) // exact: the norm's output is in the bundle dtype
    } else {
        let g = enc.norm(b, "norm", e.hidden_size)?;
        b.scoped("encoder.norm", |b| rms_norm(b, &g, &x, e.norm_eps))
    };
    let states = b.output_dyn(&states, names::STATES, dims);
    let states = b.cast(&states, w.dtype);

    let heads = Heads {
        q: d.cross_num_attention_heads,
        kv: d.cross_num_key_value_heads,
        dim: d.cross_head_dim,
    };
    for i in 0..d.num_hidden_layers {
        let cw = w.pp(format!("decoder.layers.{i}.cross_attention"));
        let (k, v) = cross_kv(b, &cw, &states, heads, target != Target::Fused)?;
        b.output_dyn(&k, &names::cross_k(i), dims);
        b.output_dyn(&v, &names::cross_v(i), dims);
    }
    Ok(())
}

pub(crate) fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
