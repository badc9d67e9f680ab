//! ONNX Runtime's contrib operators (domain `com.microsoft`): the fused kernels of the
//! [`Target::Fused`](crate::Target::Fused) decoder step, one kernel where the portable graph has
//! a dozen small ones, and `MatMulNBits` for block-quantised projections (every target but
//! coreml). Their CPU kernels compute the same functions (float32 included), which is how the
//! parity tests check these graphs without a GPU.
//!
//! Semantics follow onnxruntime's `docs/ContribOperators.md` and `bert_defs.cc`.

use crate::builder::{attr_float, attr_int, Builder, DType, Value, MS_DOMAIN};
use crate::quant::QuantSpec;

/// A `[K, N]` projection stored block-wise quantised for [`Builder::matmul_nbits`]: `qweight`
/// uint8 `[N, K/block, block·bits/8]`, `scales` `[N·K/block]` in the activations' dtype, zero
/// point 2^(bits-1).
#[derive(Clone, Debug)]
pub struct QuantizedMatrix {
    pub qweight: Value,
    pub scales: Value,
    pub k: usize,
    pub n: usize,
    pub spec: QuantSpec,
}

/// The attention layout [`Builder::group_query_attention`] works on.
#[derive(Clone, Copy, Debug)]
pub struct GqaHeads {
    pub q: usize,
    pub kv: usize,
    pub dim: usize,
}

impl Builder {
    /// `MatMulNBits`: `x [.., K] · W [K, N]` with `W` block-wise quantised. `accuracy_level` 4
    /// lets the CPU kernel quantise the activations to int8 too (integer dot products).
    pub fn matmul_nbits(&mut self, x: &Value, w: &QuantizedMatrix) -> Value {
        assert_eq!(
            *x.shape.last().unwrap(),
            w.k as i64,
            "MatMulNBits: {} {:?} is not [.., {}]",
            x.name,
            x.shape,
            w.k
        );
        assert_eq!(
            w.scales.dtype, x.dtype,
            "MatMulNBits: scales must have the input's dtype"
        );
        let mut shape = x.shape.clone();
        *shape.last_mut().unwrap() = w.n as i64;
        let mut outs = self.node_opt(
            "MatMulNBits",
            MS_DOMAIN,
            &[Some(x), Some(&w.qweight), Some(&w.scales)],
            vec![
                attr_int("K", w.k as i64),
                attr_int("N", w.n as i64),
                attr_int("bits", w.spec.bits as i64),
                attr_int("block_size", w.spec.block as i64),
                attr_int("accuracy_level", w.spec.accuracy_level),
            ],
            vec![(x.dtype, shape)],
        );
        outs.remove(0)
    }

    fn drop_outputs(&mut self, keep: &[bool]) {
        let node = self.last_node_mut();
        for (name, &k) in node.output.iter_mut().zip(keep) {
            if !k {
                name.clear();
            }
        }
    }

    /// `SkipSimplifiedLayerNormalization`: `sum = x + skip`, `y = sum / rms(sum) * gamma`, with
    /// the mean of squares in float32 whatever the dtype. Returns `(y, sum)`.
    pub fn skip_simplified_layer_norm(
        &mut self,
        x: &Value,
        skip: &Value,
        gamma: &Value,
        eps: f64,
    ) -> (Value, Value) {
        // The skip is x's shape, or one row broadcast over the batch.
        assert!(
            x.shape == skip.shape
                || (x.shape.len() == 3 && skip.shape[0] == 1 && x.shape[1..] == skip.shape[1..]),
            "SkipSimplifiedLayerNormalization: x {:?}, skip {:?}",
            x.shape,
            skip.shape
        );
        assert!(
            x.dtype == skip.dtype && x.dtype == gamma.dtype,
            "SkipSimplifiedLayerNormalization: {} {:?}, {} {:?} and {} {:?} must share a dtype",
            x.name,
            x.dtype,
            skip.name,
            skip.dtype,
            gamma.name,
            gamma.dtype
        );
        let mut stats = x.shape.clone();
        *stats.last_mut().unwrap() = 1;
        let outs = self.node_opt(
            "SkipSimplifiedLayerNormalization",
            MS_DOMAIN,
            &[Some(x), Some(skip), Some(gamma)],
            vec![attr_float("epsilon", eps as f32)],
            vec![
                (x.dtype, x.shape.clone()),
                (DType::F32, stats.clone()),
                (DType::F32, stats),
                (x.dtype, x.shape.clone()),
            ],
        );
        self.drop_outputs(&[true, false, false, true]);
        let mut outs = outs.into_iter();
        let y = outs.next().unwrap();
        (y, outs.nth(2).unwrap())
    }

    /// ONNX Runtime's `SimplifiedLayerNormalization` (RMSNorm; registered in the default
    /// domain): `x / rms(x) * gamma` over the last axis, statistics in float32, output in `x`'s
    /// dtype. Written explicitly because ONNX Runtime's own fusion of the float32 pattern
    /// yields a bfloat16-in/float32-out kernel the CUDA provider does not have.
    pub fn simplified_layer_norm(&mut self, x: &Value, gamma: &Value, eps: f64) -> Value {
        assert_eq!(
            x.dtype, gamma.dtype,
            "SimplifiedLayerNormalization: x/gamma dtype"
        );
        let outs = self.node_opt(
            "SimplifiedLayerNormalization",
            "",
            &[Some(x), Some(gamma)],
            vec![
                attr_int("axis", -1),
                attr_float("epsilon", eps as f32),
                attr_int("stash_type", 1),
            ],
            vec![(x.dtype, x.shape.clone())],
        );
        outs.into_iter().next().unwrap()
    }

    /// `GroupQueryAttention` for one decode step over a fixed-size cache shared by the past and
    /// present (bind the same buffer to both): `qkv` `[B, 1, (H + 2·KV)·d]` packed, caches
    /// `[B, KV, F, d]`, `seqlens_k` int32 `[B]` = the number of filled slots (this step's
    /// position), `total_len` int32 scalar, `cos`/`sin` `[F, d/2]`. RoPE (halves, not
    /// interleaved) is applied to q and k inside the kernel at position `seqlens_k`, the new k/v
    /// are written to that slot, and attention covers slots `0..=seqlens_k`, scaled by `scale`.
    /// Returns (output `[B, 1, H·d]`, present k, present v).
    #[allow(clippy::too_many_arguments)]
    pub fn group_query_attention(
        &mut self,
        qkv: &Value,
        k_cache: &Value,
        v_cache: &Value,
        seqlens_k: &Value,
        total_len: &Value,
        cos: &Value,
        sin: &Value,
        heads: GqaHeads,
        scale: f32,
    ) -> (Value, Value, Value) {
        let (h, kv, d) = (heads.q as i64, heads.kv as i64, heads.dim as i64);
        let bsz = qkv.shape[0];
        assert_eq!(
            qkv.shape,
            vec![bsz, 1, (h + 2 * kv) * d],
            "GroupQueryAttention: packed qkv {}",
            qkv.name
        );
        let f = k_cache.shape[2];
        for c in [k_cache, v_cache] {
            assert_eq!(
                c.shape,
                vec![bsz, kv, f, d],
                "GroupQueryAttention: {}",
                c.name
            );
        }
        assert_eq!(cos.shape, vec![f, d / 2], "GroupQueryAttention: cos");
        assert_eq!(
            seqlens_k.dtype,
            DType::I32,
            "GroupQueryAttention: seqlens_k"
        );
        let outs = self.node_opt(
            "GroupQueryAttention",
            MS_DOMAIN,
            &[
                Some(qkv),
                None,
                None,
                Some(k_cache),
                Some(v_cache),
                Some(seqlens_k),
                Some(total_len),
                Some(cos),
                Some(sin),
            ],
            vec![
                attr_int("num_heads", h),
                attr_int("kv_num_heads", kv),
                attr_float("scale", scale),
                attr_int("do_rotary", 1),
                attr_int("rotary_interleaved", 0),
            ],
            vec![
                (qkv.dtype, vec![bsz, 1, h * d]),
                (k_cache.dtype, k_cache.shape.clone()),
                (v_cache.dtype, v_cache.shape.clone()),
            ],
        );
        let mut outs = outs.into_iter();
        (
            outs.next().unwrap(),
            outs.next().unwrap(),
            outs.next().unwrap(),
        )
    }

    /// `MultiHeadAttention` of one query position over precomputed keys/values: `q`
    /// `[B, 1, H·d]`, `k`/`v` `[B, H, T, d]`, `bias` `[B, 1, 1, T]` added to the scores
    /// (0 where allowed, a large negative number elsewhere). Returns `[B, 1, H·d]`.
    pub fn multi_head_attention(
        &mut self,
        q: &Value,
        k: &Value,
        v: &Value,
        bias: &Value,
        heads: usize,
        scale: f32,
    ) -> Value {
        let (bsz, t, d) = (k.shape[0], k.shape[2], k.shape[3]);
        assert_eq!(
            k.shape,
            vec![bsz, heads as i64, t, d],
            "MultiHeadAttention: k"
        );
        assert_eq!(v.shape, k.shape, "MultiHeadAttention: v");
        assert_eq!(
            q.shape,
            vec![bsz, 1, heads as i64 * d],
            "MultiHeadAttention: q"
        );
        assert_eq!(bias.shape, vec![bsz, 1, 1, t], "MultiHeadAttention: bias");
        let outs = self.node_opt(
            "MultiHeadAttention",
            MS_DOMAIN,
            &[Some(q), Some(k), Some(v), None, None, Some(bias)],
            vec![
                attr_int("num_heads", heads as i64),
                attr_float("scale", scale),
            ],
            vec![(q.dtype, q.shape.clone())],
        );
        outs.into_iter().next().unwrap()
    }
}
