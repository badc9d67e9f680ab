//! The decoder's self-attention cache: per layer a K buffer `[2, KV, d, F]` (transposed) and
//! a V buffer `[2, KV, F, d]`, owned by ONNX Runtime tensors. Each buffer is bound to the step
//! session as both the cache input and the present-cache output, so every step writes its one
//! slot in place inside the graph: the runtime never touches or copies the cache.

use ort::memory::Allocator;
use ort::value::Tensor;

use crate::error::RuntimeError;

pub struct LayerCache {
    pub k: Tensor<f32>,
    pub v: Tensor<f32>,
}

pub struct KvCache {
    pub layers: Vec<LayerCache>,
}

fn zeros(alloc: &Allocator, shape: [usize; 4]) -> Result<Tensor<f32>, RuntimeError> {
    let mut t = Tensor::<f32>::new(alloc, shape)?;
    // Slots past the current step are masked, but must hold finite values (0 · NaN is NaN).
    t.extract_tensor_mut().1.fill(0.0);
    Ok(t)
}

impl KvCache {
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
                })
            })
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        Ok(Self { layers })
    }
}
