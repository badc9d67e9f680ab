//! The decoder's self-attention cache: per layer a K buffer `[2, KV, d, F]` (transposed) and
//! a V buffer `[2, KV, F, d]`, owned by ONNX Runtime tensors that are bound to the step
//! session once. After each step the step's new key/value (a few KB) are written into slot
//! `step` in place: the cache itself is never copied.

use ort::memory::Allocator;
use ort::value::Tensor;

use crate::error::RuntimeError;

pub struct LayerCache {
    pub k: Tensor<f32>,
    pub v: Tensor<f32>,
    pub new_k: Tensor<f32>,
    pub new_v: Tensor<f32>,
}

pub struct KvCache {
    pub layers: Vec<LayerCache>,
    rows: usize,
    head_dim: usize,
    frames: usize,
}

fn zeros(alloc: &Allocator, shape: [usize; 4]) -> Result<Tensor<f32>, RuntimeError> {
    let mut t = Tensor::<f32>::new(alloc, shape)?;
    t.extract_tensor_mut().1.fill(0.0);
    Ok(t)
}

impl KvCache {
    /// `rows` = batch · kv_heads (2 · KV for the CFG pair).
    pub fn new(
        layers: usize,
        batch: usize,
        kv_heads: usize,
        head_dim: usize,
        frames: usize,
    ) -> Result<Self, RuntimeError> {
        let alloc = Allocator::default();
        let layers = (0..layers)
            .map(|_| {
                Ok(LayerCache {
                    k: zeros(&alloc, [batch, kv_heads, head_dim, frames])?,
                    v: zeros(&alloc, [batch, kv_heads, frames, head_dim])?,
                    new_k: zeros(&alloc, [batch, kv_heads, head_dim, 1])?,
                    new_v: zeros(&alloc, [batch, kv_heads, 1, head_dim])?,
                })
            })
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        Ok(Self {
            layers,
            rows: batch * kv_heads,
            head_dim,
            frames,
        })
    }

    /// Writes every layer's step output into cache slot `slot`.
    pub fn commit(&mut self, slot: usize) {
        let (d, f) = (self.head_dim, self.frames);
        assert!(slot < f, "cache slot {slot} beyond {f} frames");
        for l in &mut self.layers {
            let new_k = l.new_k.extract_tensor().1;
            let k = l.k.extract_tensor_mut().1;
            // K is transposed: slot is the innermost index.
            for (r, col) in new_k.chunks_exact(d).enumerate().take(self.rows) {
                let base = r * d * f;
                for (i, &x) in col.iter().enumerate() {
                    k[base + i * f + slot] = x;
                }
            }
            let new_v = l.new_v.extract_tensor().1;
            let v = l.v.extract_tensor_mut().1;
            for (r, row) in new_v.chunks_exact(d).enumerate().take(self.rows) {
                let base = (r * f + slot) * d;
                v[base..base + d].copy_from_slice(row);
            }
        }
    }
}
