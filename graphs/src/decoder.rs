//! `decoder_step.onnx`: one fixed-shape decoder step for the CFG pair.
//!
//! Inputs:
//! - `tokens` int64 `[2, C]`: this step's token of every channel (same for both rows);
//! - `step` int64 `[1]`: the position of this step (0-based);
//! - `cross_mask` bool `[2, T]`: non-pad text positions (the encoder's `text_mask`);
//! - per layer i: `self_k_{i}` `[2, KV, d, F]` and `self_v_{i}` `[2, KV, F, d]`, the
//!   self-attention cache (K transposed) with slots `0..step` filled; `cross_k_{i}` and
//!   `cross_v_{i}` as the encoder wrote them (padded to `T` with zeros).
//!
//! Outputs: `logits` float32 `[2, C, V]`; per layer `present_k_{i}` and `present_v_{i}`: the
//! cache with slot `step` written. The runtime binds each layer's cache buffer as both
//! `self_k_{i}` and `present_k_{i}` (likewise V), so the step writes one slot in place and
//! the cache is never copied, on the CPU or on a GPU; see `attention::self_attention_step`.

use dia_bundle::names::step as names;
use dia_bundle::DiaConfig;

use crate::attention::{
    cross_attention_step, cross_attention_step_fused, self_attention_step,
    self_attention_step_fused, self_attention_step_rows, CacheSlot, FusedStep, Heads, Mask,
};
use crate::builder::{Builder, DType, Value, DYN};
use crate::checkpoint::CheckpointError;
use crate::encoder::{f32_bytes, PAIR};
use crate::mlp::mlp;
use crate::norm::rms_norm;
use crate::rope;
use crate::tensor::{encode_f32, Tensor};
use crate::weights::Weights;
use crate::Target;

/// How a step adds its key/value to the cache.
enum CacheUpdate {
    /// Scattered into slot `step` inside the graph (the buffers are input and output).
    InPlace(CacheSlot),
    /// Returned as rows for the runtime to write; the mask covers the slots before `step`.
    Rows(Mask),
}

/// Per-step values shared by every layer.
struct StepContext {
    update: CacheUpdate,
    cross_keep: Mask,
    cos: Value,
    sin: Value,
}

#[allow(clippy::too_many_arguments)]
fn decoder_layer(
    b: &mut Builder,
    w: &Weights,
    cfg: &DiaConfig,
    ctx: &StepContext,
    x: &Value,
    cache: (&Value, &Value),
    cross: (&Value, &Value),
) -> Result<(Value, Value, Value), CheckpointError> {
    let d = &cfg.decoder_config;
    let (self_heads, cross_heads) = layer_heads(cfg);
    let pre_sa = w.norm(b, "pre_sa_norm", d.hidden_size)?;
    let pre_ca = w.norm(b, "pre_ca_norm", d.hidden_size)?;
    let pre_mlp = w.norm(b, "pre_mlp_norm", d.hidden_size)?;

    let h = rms_norm(b, &pre_sa, x, d.norm_eps);
    let h = b.cast(&h, w.dtype);
    let sw = w.pp("self_attention");
    let (sa, new_k, new_v) = match &ctx.update {
        CacheUpdate::InPlace(slot) => self_attention_step(
            b, &sw, &h, cache.0, cache.1, slot, &ctx.cos, &ctx.sin, self_heads,
        )?,
        CacheUpdate::Rows(before) => self_attention_step_rows(
            b, &sw, &h, cache.0, cache.1, before, &ctx.cos, &ctx.sin, self_heads,
        )?,
    };
    let x = b.add(x, &sa);

    let h = rms_norm(b, &pre_ca, &x, d.norm_eps);
    let h = b.cast(&h, w.dtype);
    let ca = cross_attention_step(
        b,
        &w.pp("cross_attention"),
        &h,
        cross.0,
        cross.1,
        &ctx.cross_keep,
        cross_heads,
    )?;
    let x = b.add(&x, &ca);

    let h = rms_norm(b, &pre_mlp, &x, d.norm_eps);
    let h = b.cast(&h, w.dtype);
    let m = mlp(b, &w.pp("mlp"), &h, d.hidden_size, d.intermediate_size)?;
    Ok((b.add(&x, &m), new_k, new_v))
}

fn layer_heads(cfg: &DiaConfig) -> (Heads, Heads) {
    let d = &cfg.decoder_config;
    (
        Heads {
            q: d.num_attention_heads,
            kv: d.num_key_value_heads,
            dim: d.head_dim,
        },
        Heads {
            q: d.cross_num_attention_heads,
            kv: d.cross_num_key_value_heads,
            dim: d.cross_head_dim,
        },
    )
}

/// A decoder layer of the fused target. The residual stream arrives as `(x, pending)`: the
/// previous layer's MLP output is added by this layer's first fused skip-norm, so every
/// residual add and the RMSNorm after it are one `SkipSimplifiedLayerNormalization`.
/// Returns `(x, pending)` for the next layer, and the present K/V.
#[allow(clippy::too_many_arguments)]
fn decoder_layer_fused(
    b: &mut Builder,
    w: &Weights,
    cfg: &DiaConfig,
    step: &FusedStep,
    cross_bias: &Value,
    (x, pending): (&Value, &Value),
    cache: (&Value, &Value),
    cross: (&Value, &Value),
) -> Result<(Value, Value, Value, Value), CheckpointError> {
    let d = &cfg.decoder_config;
    let (self_heads, cross_heads) = layer_heads(cfg);
    let pre_sa = w.norm_in_dtype(b, "pre_sa_norm", d.hidden_size)?;
    let pre_ca = w.norm_in_dtype(b, "pre_ca_norm", d.hidden_size)?;
    let pre_mlp = w.norm_in_dtype(b, "pre_mlp_norm", d.hidden_size)?;

    let (h, x) = b.skip_simplified_layer_norm(x, pending, &pre_sa, d.norm_eps);
    let (sa, new_k, new_v) = self_attention_step_fused(
        b,
        &w.pp("self_attention"),
        &h,
        cache.0,
        cache.1,
        step,
        self_heads,
    )?;
    let (h, x) = b.skip_simplified_layer_norm(&x, &sa, &pre_ca, d.norm_eps);
    let ca = cross_attention_step_fused(
        b,
        &w.pp("cross_attention"),
        &h,
        cross.0,
        cross.1,
        cross_bias,
        cross_heads,
    )?;
    let (h, x) = b.skip_simplified_layer_norm(&x, &ca, &pre_mlp, d.norm_eps);
    let m = mlp(b, &w.pp("mlp"), &h, d.hidden_size, d.intermediate_size)?;
    Ok((x, m, new_k, new_v))
}

/// The summed embeddings `[2, 1, D]` of this step's 9 tokens. `offset` says whether `tokens`
/// already carry the channel offsets `c·V` (Core ML has no integer Add, so its runtime adds
/// them).
fn embeddings(
    b: &mut Builder,
    dec: &Weights,
    cfg: &DiaConfig,
    tokens: &Value,
    offset: bool,
) -> Result<Value, CheckpointError> {
    let d = &cfg.decoder_config;
    let (c, v, dim) = (d.num_channels, d.vocab_size, d.hidden_size);
    // The 9 channel tables as one [C·V, D] table: channel c's token id is offset by c·V, so one
    // Gather and a sum replace nine lookups.
    let mut table = Vec::with_capacity(c * v * dim);
    for ch in 0..c {
        table.extend(dec.tensor(&format!("embeddings.{ch}"), &[v, dim])?.data);
    }
    let table = dec.add(
        b,
        "embeddings",
        &Tensor::new(vec![c * v, dim], table),
        dec.dtype,
    );
    Ok(b.scoped("decoder.embeddings", |b| {
        let ids = if offset {
            tokens.clone()
        } else {
            let offsets: Vec<i64> = (0..c as i64).map(|ch| ch * v as i64).collect();
            let offsets = b.const_i64(&offsets, &[1, c as i64]);
            b.add(tokens, &offsets)
        };
        let e = b.gather(&table, &ids, 0); // [2, C, D]
        b.reduce_sum(&e, &[1], true) // [2, 1, D]
    }))
}

/// The logits head on the normalised last hidden state `h` `[2, 1, D]`: float32 `[2, C, V]`.
fn logits(
    b: &mut Builder,
    dec: &Weights,
    cfg: &DiaConfig,
    h: &Value,
) -> Result<Value, CheckpointError> {
    let d = &cfg.decoder_config;
    let (c, v, dim) = (d.num_channels, d.vocab_size, d.hidden_size);
    let logits_w = dec.matrix(b, "logits_dense", &[dim, c, v], 1)?;
    Ok(b.scoped("decoder.logits", |b| {
        let h = b.cast(h, dec.dtype);
        let l = b.matmul(&h, &logits_w); // [2, 1, C·V]
        let l = b.cast(&l, DType::F32);
        b.reshape(&l, &[-1, c as i64, v as i64])
    }))
}

/// Builds the single-step decoder for texts of `text_len` tokens and a cache of `max_frames`.
///
/// For [`Target::CoreMl`] the inputs differ: `tokens` int32 `[2, C]` already offset by `c·V`
/// (channel c's id plus c times the vocabulary), `step` int32 `[1]`, `self_bias` float32 `[F]`
/// (0 for the slots before `step`, -30000 from it on) and `cross_bias` float32 `[2, T]` (0 on
/// text, -30000 on padding) instead of `cross_mask`; the outputs are `logits`, `new_k_{i}`
/// `[2, KV, d, 1]` and `new_v_{i}` `[2, KV, 1, d]`.
///
/// For [`Target::Fused`] see [`build_decoder_step_fused`].
pub fn build_decoder_step(
    b: &mut Builder,
    w: &Weights,
    cfg: &DiaConfig,
    text_len: usize,
    max_frames: usize,
    target: Target,
) -> Result<(), CheckpointError> {
    if target == Target::Fused {
        return build_decoder_step_fused(b, w, cfg, max_frames);
    }
    let coreml = target == Target::CoreMl;
    let d = &cfg.decoder_config;
    let c = d.num_channels;
    let (t, f) = (text_len as i64, max_frames as i64);
    let (kv, hd) = (d.num_key_value_heads as i64, d.head_dim as i64);
    let (ckv, chd) = (d.cross_num_key_value_heads as i64, d.cross_head_dim as i64);

    let ids = if coreml { DType::I32 } else { DType::I64 };
    let tokens = b.input(names::TOKENS, ids, &[PAIR, c as i64]);
    let step = b.input(names::STEP, ids, &[1]);
    let (cross_mask, self_bias) = if coreml {
        (
            b.input(names::CROSS_BIAS, DType::F32, &[PAIR, t]),
            Some(b.input(names::SELF_BIAS, DType::F32, &[f])),
        )
    } else {
        (b.input(names::CROSS_MASK, DType::Bool, &[PAIR, t]), None)
    };
    let mut caches = Vec::new();
    for i in 0..d.num_hidden_layers {
        let k = b.input(&names::self_k(i), w.dtype, &[PAIR, kv, hd, f]);
        let vv = b.input(&names::self_v(i), w.dtype, &[PAIR, kv, f, hd]);
        let ck = b.input(&names::cross_k(i), w.dtype, &[PAIR, ckv, chd, t]);
        let cv = b.input(&names::cross_v(i), w.dtype, &[PAIR, ckv, t, chd]);
        caches.push((k, vv, ck, cv));
    }

    let dec = w.pp("decoder");
    let mut x = embeddings(b, &dec, cfg, &tokens, coreml)?;
    let half = (d.head_dim / 2) as i64;
    let (cos, sin) = rope::tables(max_frames, d.head_dim, d.rope_theta);
    let cos_t = b.initializer("decoder.rope.cos", DType::F32, &[f, half], &f32_bytes(&cos));
    let sin_t = b.initializer("decoder.rope.sin", DType::F32, &[f, half], &f32_bytes(&sin));
    let ctx = b.scoped("decoder.step", |b| {
        let cos = b.gather(&cos_t, &step, 0);
        let cos = b.reshape(&cos, &[1, 1, half]);
        let sin = b.gather(&sin_t, &step, 0);
        let sin = b.reshape(&sin, &[1, 1, half]);
        let m = b.unsqueeze(&cross_mask, &[1, 2]); // [2,1,1,T]
        if let Some(bias) = &self_bias {
            return StepContext {
                update: CacheUpdate::Rows(Mask::Bias(bias.clone())),
                cross_keep: Mask::Bias(m),
                cos,
                sin,
            };
        }
        let slots: Vec<i64> = (0..f).collect();
        let slots = b.const_i64(&slots, &[f]);
        let one = b.const_i64(&[1], &[1]);
        let next = b.add(&step, &one);
        let keep = b.less(&slots, &next); // slots 0..=step
        let k_index = b.expand(&step, &[PAIR, kv, hd, 1]);
        let v_index = b.expand(&step, &[PAIR, kv, 1, hd]);
        StepContext {
            update: CacheUpdate::InPlace(CacheSlot {
                k_index,
                v_index,
                keep: Mask::Keep(keep),
            }),
            cross_keep: Mask::Keep(m),
            cos,
            sin,
        }
    });

    let mut new_kv = Vec::new();
    for (i, (k, vv, ck, cv)) in caches.iter().enumerate() {
        let lw = dec.pp(format!("layers.{i}"));
        let (nx, nk, nv) = b.scoped(lw.prefix(), |b| {
            decoder_layer(b, &lw, cfg, &ctx, &x, (k, vv), (ck, cv))
        })?;
        x = nx;
        new_kv.push((nk, nv));
    }

    let norm = dec.norm(b, "norm", d.hidden_size)?;
    let h = b.scoped("decoder.norm", |b| rms_norm(b, &norm, &x, d.norm_eps));
    let logits = logits(b, &dec, cfg, &h)?;
    b.output(&logits, names::LOGITS);
    for (i, (k, v)) in new_kv.iter().enumerate() {
        if coreml {
            b.output(k, &names::new_k(i));
            b.output(v, &names::new_v(i));
        } else {
            b.output(k, &names::present_k(i));
            b.output(v, &names::present_v(i));
        }
    }
    Ok(())
}

/// The [`Target::Fused`] step: the same model with ONNX Runtime's fused contrib kernels.
///
/// Inputs: `tokens` int64 `[2, C]`; `step` int32 `[2]`, this step's position for each CFG row
/// (`GroupQueryAttention`'s `seqlens_k`: the number of filled cache slots); `cross_bias`
/// `[2, 1, 1, T]` in the bundle dtype (0 on text, -30000 on padding); per layer `self_k_{i}`
/// and `self_v_{i}` `[2, KV, F, d]` (K not transposed), `cross_k_{i}` and `cross_v_{i}`
/// `[2, KVc, T, d]`. The text length `T` is dynamic (up to the encoder's): cross-attention reads
/// `T` positions every step, so the runtime pads to a short bucket, not to the maximum (with
/// one CUDA graph per bucket). Outputs: `logits` float32 `[2, C, V]`, `present_k_{i}`/`present_v_{i}`
/// (the caches, bound to the same buffers as the inputs: the kernel appends in place).
pub fn build_decoder_step_fused(
    b: &mut Builder,
    w: &Weights,
    cfg: &DiaConfig,
    max_frames: usize,
) -> Result<(), CheckpointError> {
    let d = &cfg.decoder_config;
    let c = d.num_channels;
    let f = max_frames as i64;
    let (kv, hd) = (d.num_key_value_heads as i64, d.head_dim as i64);
    let (ckv, chd) = (d.cross_num_key_value_heads as i64, d.cross_head_dim as i64);

    // The batch is dynamic: 2 rows (the CFG pair) per utterance, so one step can decode many
    // utterances at once, each row at its own position.
    let batch = &["batch"];
    let batch_text = &["batch", "text_len"];
    let tokens = b.input_dyn(names::TOKENS, DType::I64, &[DYN, c as i64], batch);
    let seqlens_k = b.input_dyn(names::STEP, DType::I32, &[DYN], batch);
    let cross_bias = b.input_dyn(names::CROSS_BIAS, w.dtype, &[DYN, 1, 1, DYN], batch_text);
    let mut caches = Vec::new();
    for i in 0..d.num_hidden_layers {
        let k = b.input_dyn(&names::self_k(i), w.dtype, &[DYN, kv, f, hd], batch);
        let vv = b.input_dyn(&names::self_v(i), w.dtype, &[DYN, kv, f, hd], batch);
        let ck = b.input_dyn(
            &names::cross_k(i),
            w.dtype,
            &[DYN, ckv, DYN, chd],
            batch_text,
        );
        let cv = b.input_dyn(
            &names::cross_v(i),
            w.dtype,
            &[DYN, ckv, DYN, chd],
            batch_text,
        );
        caches.push((k, vv, ck, cv));
    }

    let dec = w.pp("decoder");
    let x = embeddings(b, &dec, cfg, &tokens, false)?;

    let half = (d.head_dim / 2) as i64;
    let (cos, sin) = rope::tables(max_frames, d.head_dim, d.rope_theta);
    let step = FusedStep {
        seqlens_k,
        // The caches are shared past/present buffers of F slots: the kernel reads the real
        // lengths from `seqlens_k`, and a constant here keeps the step CUDA-graph friendly.
        total_len: b.initializer(
            "decoder.rope.total_len",
            DType::I32,
            &[],
            &(max_frames as i32).to_le_bytes(),
        ),
        cos: b.initializer(
            "decoder.rope.cos",
            w.dtype,
            &[f, half],
            &encode_f32(&cos, w.dtype),
        ),
        sin: b.initializer(
            "decoder.rope.sin",
            w.dtype,
            &[f, half],
            &encode_f32(&sin, w.dtype),
        ),
    };

    // The residual stream is (x, pending): pending is added by the next fused skip-norm. The
    // first layer's pending is zero, one row broadcast over the batch.
    let zero_shape = [1, 1, d.hidden_size as i64];
    let zeros = b.initializer(
        "decoder.residual.zero",
        w.dtype,
        &zero_shape,
        &vec![0u8; d.hidden_size * w.dtype.size()],
    );
    let (mut x, mut pending) = (x, zeros);
    let mut new_kv = Vec::new();
    for (i, (k, vv, ck, cv)) in caches.iter().enumerate() {
        let lw = dec.pp(format!("layers.{i}"));
        let (nx, np, nk, nv) = b.scoped(lw.prefix(), |b| {
            decoder_layer_fused(
                b,
                &lw,
                cfg,
                &step,
                &cross_bias,
                (&x, &pending),
                (k, vv),
                (ck, cv),
            )
        })?;
        (x, pending) = (nx, np);
        new_kv.push((nk, nv));
    }

    let norm = dec.norm_in_dtype(b, "norm", d.hidden_size)?;
    let (h, _) = b.scoped("decoder.norm", |b| {
        b.skip_simplified_layer_norm(&x, &pending, &norm, d.norm_eps)
    });
    let logits = logits(b, &dec, cfg, &h)?;
    b.output(&logits, names::LOGITS);
    for (i, (k, v)) in new_kv.iter().enumerate() {
        b.output(k, &names::present_k(i));
        b.output(v, &names::present_v(i));
    }
    Ok(())
}
