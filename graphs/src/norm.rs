//! RMSNorm, computed in float32 as the reference does.

use crate::builder::{Builder, DType, Value};

/// `x * rsqrt(mean(x²) + eps) * w` over the last axis, in float32; returns float32.
pub fn rms_norm(b: &mut Builder, weight: &Value, x: &Value, eps: f64) -> Value {
    b.scoped("rms_norm", |b| {
        let x = b.cast(x, DType::F32);
        let sq = b.mul(&x, &x);
        let mean = b.reduce_mean(&sq, &[-1], true);
        let eps = b.scalar(eps as f32, DType::F32);
        let var = b.add(&mean, &eps);
        let rms = b.sqrt(&var);
        let inv = b.reciprocal(&rms);
        let y = b.mul(&x, &inv);
        b.mul(&y, weight)
    })
}
