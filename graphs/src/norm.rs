//! RMSNorm, computed in float32 as the reference does.

use crate::builder::{Builder, DType, Value};

/// `x * rsqrt(mean(x²) + eps) * w` over the last axis, in float32; returns float32.
///
/// Written as `Pow → ReduceMean → Add → Sqrt → Div → Mul`, the pattern ONNX Runtime's
/// optimizer fuses into one `SimplifiedLayerNormalization` kernel (with the residual Add
/// before it, `SkipSimplifiedLayerNormalization`), which matters on a GPU where each small
/// kernel costs a launch.
pub fn rms_norm(b: &mut Builder, weight: &Value, x: &Value, eps: f64) -> Value {
    b.scoped("rms_norm", |b| {
        let x = b.cast(x, DType::F32);
        let two = b.scalar(2.0, DType::F32);
        let sq = b.pow(&x, &two);
        let mean = b.reduce_mean(&sq, &[-1], true);
        let eps = b.scalar(eps as f32, DType::F32);
        let var = b.add(&mean, &eps);
        let rms = b.sqrt(&var);
        let y = b.div(&x, &rms);
        b.mul(&y, weight)
    })
}
