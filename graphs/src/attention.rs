//! Dia's attention blocks. Scale 1.0 (the weights carry 1/sqrt(d)); RoPE on q and k of
//! self-attention only; grouped-query attention without repeating K/V: query heads are
//! reshaped to `[kv_heads, group, ..]` so each K/V head is read once for its whole group
//! (query head h uses kv head h / group, as `repeat_interleave` does in the reference).
//!
//! K caches are stored transposed, `[B, kv_heads, head_dim, len]`, so scores are a plain
//! MatMul with no per-step transpose of the cache.

use crate::builder::{Builder, DType, Value};
use crate::checkpoint::CheckpointError;
use crate::contrib::GqaHeads;
use crate::rope::apply_rope;
use crate::weights::{Linear, Weights};

/// Head counts of one attention block.
#[derive(Clone, Copy, Debug)]
pub struct Heads {
    pub q: usize,
    pub kv: usize,
    pub dim: usize,
}

impl Heads {
    pub fn group(&self) -> usize {
        self.q / self.kv
    }
}

/// Which scores attention may use, broadcasting against the scores.
pub enum Mask {
    /// bool, true where allowed: masked scores become -inf (`Where`).
    Keep(Value),
    /// float32, 0 where allowed and a large negative number elsewhere, added to the scores:
    /// for targets without `Where` on bool tensors (Core ML).
    Bias(Value),
}

/// The additive bias of a [`Mask::Bias`] (finite, so float16 arithmetic stays finite).
pub const MASK_BIAS: f32 = dia_bundle::MASK_BIAS;

/// Scores (cast to float32) with the masked ones pushed out of the softmax.
fn apply_mask(b: &mut Builder, scores: &Value, mask: &Mask) -> Value {
    let s = b.cast(scores, DType::F32);
    match mask {
        Mask::Keep(keep) => {
            let neg = b.scalar(f32::NEG_INFINITY, DType::F32);
            b.where_(keep, &s, &neg)
        }
        Mask::Bias(bias) => b.add(&s, bias),
    }
}

/// Masked softmax in float32, cast back to `dtype`.
fn masked_softmax(b: &mut Builder, scores: &Value, mask: &Mask, dtype: DType) -> Value {
    let s = apply_mask(b, scores, mask);
    let p = b.softmax(&s, -1);
    b.cast(&p, dtype)
}

/// This step's grouped query `[B,KV,G,d]`, key `[B,KV,d,1]` and value `[B,KV,1,d]`, RoPE
/// applied. S = 1, so `[B,1,H,d] -> [B,KV,G,d]` is a reshape (head h = kv·G + g).
fn step_qkv(
    b: &mut Builder,
    q: &Value,
    k: &Value,
    v: &Value,
    cos: &Value,
    sin: &Value,
    heads: Heads,
) -> (Value, Value, Value) {
    let bsz = q.shape[0];
    let (kv, d, g) = (heads.kv as i64, heads.dim as i64, heads.group() as i64);
    let q = apply_rope(b, q, cos, sin);
    let k = apply_rope(b, k, cos, sin);
    (
        b.reshape(&q, &[bsz, kv, g, d]),
        b.reshape(&k, &[bsz, kv, d, 1]),
        b.reshape(v, &[bsz, kv, 1, d]),
    )
}

/// q, k and v projections fused column-wise into one `[in, (H + 2·KV)·d]` kernel.
fn qkv_weights(
    b: &mut Builder,
    w: &Weights,
    heads: Heads,
    input: usize,
) -> Result<Linear, CheckpointError> {
    let (h, kv, d) = (heads.q, heads.kv, heads.dim);
    w.fused_linear(
        b,
        "qkv_proj",
        &[
            ("q_proj", &[input, h, d]),
            ("k_proj", &[input, kv, d]),
            ("v_proj", &[input, kv, d]),
        ],
    )
}

/// Projects `x` `[B, S, in]` with a fused q|k|v kernel into q `[B,S,H,d]`, k and v `[B,S,KV,d]`.
fn qkv(
    b: &mut Builder,
    w: &Weights,
    x: &Value,
    heads: Heads,
    input: usize,
) -> Result<(Value, Value, Value), CheckpointError> {
    let (h, kv, d) = (heads.q, heads.kv, heads.dim);
    let wqkv = qkv_weights(b, w, heads, input)?;
    let (bsz, s) = (x.shape[0], x.shape[1]);
    Ok(b.scoped(w.prefix(), |b| {
        let y = wqkv.apply(b, x);
        let parts = b.split(&y, -1, &[(h * d) as i64, (kv * d) as i64, (kv * d) as i64]);
        let q = b.reshape(&parts[0], &[bsz, s, h as i64, d as i64]);
        let k = b.reshape(&parts[1], &[bsz, s, kv as i64, d as i64]);
        let v = b.reshape(&parts[2], &[bsz, s, kv as i64, d as i64]);
        (q, k, v)
    }))
}

/// Output projection from `[B, S, H·d]`.
fn out_proj(
    b: &mut Builder,
    w: &Weights,
    attn: &Value,
    heads: Heads,
    out: usize,
) -> Result<Value, CheckpointError> {
    let wo = w.linear(b, "o_proj", &[heads.q, heads.dim, out], 2)?;
    Ok(b.scoped(w.prefix(), |b| wo.apply(b, attn)))
}

/// Encoder self-attention over the whole text. `x` `[B,T,D]`, `keep` `[B,1,T,T]` bool,
/// `cos`/`sin` `[T,1,d/2]`.
pub fn self_attention_full(
    b: &mut Builder,
    w: &Weights,
    x: &Value,
    keep: &Mask,
    cos: &Value,
    sin: &Value,
    heads: Heads,
) -> Result<Value, CheckpointError> {
    let dim = x.shape[2] as usize;
    let (q, k, v) = qkv(b, w, x, heads, dim)?;
    let attn = b.scoped(w.prefix(), |b| {
        let (bsz, t) = (x.shape[0], x.shape[1]);
        let (h, d, g) = (heads.q as i64, heads.dim as i64, heads.group() as i64);
        let q = apply_rope(b, &q, cos, sin);
        let k = apply_rope(b, &k, cos, sin);
        let q = b.transpose(&q, &[0, 2, 1, 3]); // [B,H,T,d]
        let mut kt = b.transpose(&k, &[0, 2, 3, 1]); // [B,KV,d,T]
        let mut v = b.transpose(&v, &[0, 2, 1, 3]); // [B,KV,T,d]
        if g > 1 {
            // Full-sequence attention runs once per utterance: repeating K/V is fine here.
            // (Expand broadcasts, so 1 keeps the possibly dynamic text length.)
            let ku = b.unsqueeze(&kt, &[2]);
            let ke = b.expand(&ku, &[1, 1, g, 1, 1]);
            kt = b.reshape(&ke, &[bsz, h, d, t]);
            let vu = b.unsqueeze(&v, &[2]);
            let ve = b.expand(&vu, &[1, 1, g, 1, 1]);
            v = b.reshape(&ve, &[bsz, h, t, d]);
        }
        let scores = b.matmul(&q, &kt); // [B,H,T,T]
        let p = masked_softmax(b, &scores, keep, q.dtype);
        let o = b.matmul(&p, &v); // [B,H,T,d]
        let o = b.transpose(&o, &[0, 2, 1, 3]);
        b.reshape(&o, &[bsz, t, h * d])
    });
    out_proj(b, w, &attn, heads, dim)
}

/// Where this step's key and value go in the cache: indices of slot `step`, shaped for
/// `ScatterElements` into K `[B,KV,d,F]` (axis 3) and V `[B,KV,F,d]` (axis 2).
pub struct CacheSlot {
    pub k_index: Value,
    pub v_index: Value,
    /// The slots this step attends (`0..=step`), over `[F]`.
    pub keep: Mask,
}

/// One decoder step of self-attention with the cache updated in place.
///
/// `x` `[B,1,D]`; `k_cache` `[B,KV,d,F]` (K transposed) and `v_cache` `[B,KV,F,d]` hold the
/// steps before this one. This step's key and value are scattered into slot `step`, giving
/// `present_k`/`present_v` (graph outputs of the same shape): the runtime binds each cache
/// buffer as both the input and the output, so ONNX Runtime's scatter writes one slot in place
/// (it skips its input copy when input and output are the same buffer) and nothing is ever
/// copied. Attention then reads slots `0..=step` of the present cache.
/// Returns (output `[B,1,D]`, present k, present v).
#[allow(clippy::too_many_arguments)]
pub fn self_attention_step(
    b: &mut Builder,
    w: &Weights,
    x: &Value,
    k_cache: &Value,
    v_cache: &Value,
    slot: &CacheSlot,
    cos: &Value,
    sin: &Value,
    heads: Heads,
) -> Result<(Value, Value, Value), CheckpointError> {
    let dim = x.shape[2] as usize;
    let (q, k, v) = qkv(b, w, x, heads, dim)?;
    let (attn, present_k, present_v) = b.scoped(w.prefix(), |b| {
        let (bsz, h, d) = (x.shape[0], heads.q as i64, heads.dim as i64);
        let (qg, new_k, new_v) = step_qkv(b, &q, &k, &v, cos, sin, heads);
        let present_k = b.scatter_elements(k_cache, &slot.k_index, &new_k, 3);
        let present_v = b.scatter_elements(v_cache, &slot.v_index, &new_v, 2);
        let s = b.matmul(&qg, &present_k); // [B,KV,G,F]
        let p = masked_softmax(b, &s, &slot.keep, q.dtype);
        let o = b.matmul(&p, &present_v); // [B,KV,G,d]
        let o = b.reshape(&o, &[bsz, 1, h * d]);
        (o, present_k, present_v)
    });
    Ok((out_proj(b, w, &attn, heads, dim)?, present_k, present_v))
}

/// One decoder step of self-attention for targets without an in-place scatter (Core ML):
/// the cache is only read, `before` masks its slots to those before this step, the step's own
/// key and value are attended directly and returned as rows (k `[B,KV,d,1]`, v `[B,KV,1,d]`)
/// for the runtime to write into slot `step`.
#[allow(clippy::too_many_arguments)]
pub fn self_attention_step_rows(
    b: &mut Builder,
    w: &Weights,
    x: &Value,
    k_cache: &Value,
    v_cache: &Value,
    before: &Mask,
    cos: &Value,
    sin: &Value,
    heads: Heads,
) -> Result<(Value, Value, Value), CheckpointError> {
    let dim = x.shape[2] as usize;
    let (q, k, v) = qkv(b, w, x, heads, dim)?;
    let (attn, new_k, new_v) = b.scoped(w.prefix(), |b| {
        let (bsz, h, d) = (x.shape[0], heads.q as i64, heads.dim as i64);
        let (qg, new_k, new_v) = step_qkv(b, &q, &k, &v, cos, sin, heads);
        let s_cache = b.matmul(&qg, k_cache); // [B,KV,G,F]
        let s_cache = apply_mask(b, &s_cache, before);
        let s_new = b.matmul(&qg, &new_k); // [B,KV,G,1]
        let s_new = b.cast(&s_new, DType::F32);
        let s = b.concat(&[&s_cache, &s_new], -1);
        let p = b.softmax(&s, -1);
        let p = b.cast(&p, q.dtype);
        let f = k_cache.shape[3];
        let ps = b.split(&p, -1, &[f, 1]);
        let o_cache = b.matmul(&ps[0], v_cache); // [B,KV,G,d]
        let o_new = b.matmul(&ps[1], &new_v);
        let o = b.add(&o_cache, &o_new);
        let o = b.reshape(&o, &[bsz, 1, h * d]);
        (o, new_k, new_v)
    });
    Ok((out_proj(b, w, &attn, heads, dim)?, new_k, new_v))
}

/// Cross-attention K (transposed, `[B,KV,d,T]`) and V (`[B,KV,T,d]`) from the encoder output
/// `[B,T,E]`: computed once per utterance by the encoder graph.
/// With `k_transposed` false (the fused target's fused attention), K is `[B,KV,T,d]` like V.
pub fn cross_kv(
    b: &mut Builder,
    w: &Weights,
    enc: &Value,
    heads: Heads,
    k_transposed: bool,
) -> Result<(Value, Value), CheckpointError> {
    let e = enc.shape[2] as usize;
    let (kv, d) = (heads.kv, heads.dim);
    let wkv = w.fused_linear(
        b,
        "kv_proj",
        &[("k_proj", &[e, kv, d]), ("v_proj", &[e, kv, d])],
    )?;
    Ok(b.scoped(w.prefix(), |b| {
        let (bsz, t) = (enc.shape[0], enc.shape[1]);
        let y = wkv.apply(b, enc);
        let parts = b.split(&y, -1, &[(kv * d) as i64, (kv * d) as i64]);
        let k = b.reshape(&parts[0], &[bsz, t, kv as i64, d as i64]);
        let v = b.reshape(&parts[1], &[bsz, t, kv as i64, d as i64]);
        let k_perm: &[i64] = if k_transposed {
            &[0, 2, 3, 1]
        } else {
            &[0, 2, 1, 3]
        };
        (b.transpose(&k, k_perm), b.transpose(&v, &[0, 2, 1, 3]))
    }))
}

/// One decoder step of cross-attention (no RoPE). `x` `[B,1,D]`, `k` `[B,KV,d,T]`,
/// `v` `[B,KV,T,d]`, `keep` `[B,1,1,T]` marks the non-pad text positions.
pub fn cross_attention_step(
    b: &mut Builder,
    w: &Weights,
    x: &Value,
    k: &Value,
    v: &Value,
    keep: &Mask,
    heads: Heads,
) -> Result<Value, CheckpointError> {
    let dim = x.shape[2] as usize;
    let wq = w.linear(b, "q_proj", &[dim, heads.q, heads.dim], 1)?;
    let attn = b.scoped(w.prefix(), |b| {
        let bsz = x.shape[0];
        let (h, kv, d, g) = (
            heads.q as i64,
            heads.kv as i64,
            heads.dim as i64,
            heads.group() as i64,
        );
        let q = wq.apply(b, x);
        let qg = b.reshape(&q, &[bsz, kv, g, d]);
        let s = b.matmul(&qg, k); // [B,KV,G,T]
        let p = masked_softmax(b, &s, keep, q.dtype);
        let o = b.matmul(&p, v); // [B,KV,G,d]
        b.reshape(&o, &[bsz, 1, h * d])
    });
    out_proj(b, w, &attn, heads, dim)
}

/// The per-step inputs of the fused (fused target) self-attention: the position as
/// `seqlens_k` int32 `[B]`, `total_len` int32 scalar (the cache size: the buffer is shared),
/// and the RoPE tables `[F, d/2]` in the bundle dtype.
pub struct FusedStep {
    pub seqlens_k: Value,
    pub total_len: Value,
    pub cos: Value,
    pub sin: Value,
}

/// One decoder step of self-attention as one `GroupQueryAttention` kernel: RoPE, the write of
/// this step's key/value into slot `seqlens_k` of the caches (`[B,KV,F,d]`, bound as both
/// input and output) and grouped attention over slots `0..=step`, scale 1.0.
/// Returns (output `[B,1,D]`, present k, present v).
pub fn self_attention_step_fused(
    b: &mut Builder,
    w: &Weights,
    x: &Value,
    k_cache: &Value,
    v_cache: &Value,
    step: &FusedStep,
    heads: Heads,
) -> Result<(Value, Value, Value), CheckpointError> {
    let dim = x.shape[2] as usize;
    let (h, kv, d) = (heads.q, heads.kv, heads.dim);
    let wqkv = qkv_weights(b, w, heads, dim)?;
    let (attn, present_k, present_v) = b.scoped(w.prefix(), |b| {
        let qkv = wqkv.apply(b, x);
        b.group_query_attention(
            &qkv,
            k_cache,
            v_cache,
            &step.seqlens_k,
            &step.total_len,
            &step.cos,
            &step.sin,
            GqaHeads { q: h, kv, dim: d },
            1.0,
        )
    });
    Ok((out_proj(b, w, &attn, heads, dim)?, present_k, present_v))
}

/// One decoder step of cross-attention as one `MultiHeadAttention` kernel. `k`/`v`
/// `[B,H,T,d]` (one K/V head per query head, as Dia has), `bias` `[B,1,1,T]` in the bundle
/// dtype (0 on text, [`MASK_BIAS`] on padding).
pub fn cross_attention_step_fused(
    b: &mut Builder,
    w: &Weights,
    x: &Value,
    k: &Value,
    v: &Value,
    bias: &Value,
    heads: Heads,
) -> Result<Value, CheckpointError> {
    assert_eq!(
        heads.q, heads.kv,
        "fused cross-attention needs as many K/V heads as query heads"
    );
    let dim = x.shape[2] as usize;
    let wq = w.linear(b, "q_proj", &[dim, heads.q, heads.dim], 1)?;
    let attn = b.scoped(w.prefix(), |b| {
        let q = wq.apply(b, x);
        b.multi_head_attention(&q, k, v, bias, heads.q, 1.0)
    });
    out_proj(b, w, &attn, heads, dim)
}
