//! Rotary position embedding as nari-labs applies it: the head vector is split into halves
//! (not interleaved pairs), angles are `position / theta^(2j/d)`, all in float32.
//! The cos/sin tables are computed here once, at export, and stored as initializers.

use crate::builder::{Builder, DType, Value};

/// `timescale_j = theta^(2j/d)` for j < d/2, as the reference computes it in float32.
pub fn timescales(head_dim: usize, theta: f64) -> Vec<f32> {
    (0..head_dim / 2)
        .map(|j| {
            let fraction = (2.0f32 * j as f32) / head_dim as f32;
            (theta as f32).powf(fraction)
        })
        .collect()
}

/// cos and sin of `p / timescale_j` for positions `0..positions`, row-major `[positions, d/2]`.
pub fn tables(positions: usize, head_dim: usize, theta: f64) -> (Vec<f32>, Vec<f32>) {
    let ts = timescales(head_dim, theta);
    let mut cos = Vec::with_capacity(positions * ts.len());
    let mut sin = Vec::with_capacity(positions * ts.len());
    for p in 0..positions {
        for t in &ts {
            // The angle is rounded to float32 like the reference's; cos/sin of it are then
            // evaluated in float64 and rounded once.
            let angle = (p as f32 / t) as f64;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (cos, sin)
}

/// Rotates `x` `[.., S, H, d]`; `cos`/`sin` are float32 and broadcast to `[.., S, 1, d/2]`.
/// Returns `x`'s dtype.
pub fn apply_rope(b: &mut Builder, x: &Value, cos: &Value, sin: &Value) -> Value {
    b.scoped("rope", |b| {
        let dtype = x.dtype;
        let xf = b.cast(x, DType::F32);
        let half = *x.shape.last().unwrap() / 2;
        let parts = b.split(&xf, -1, &[half, half]);
        let (x1, x2) = (&parts[0], &parts[1]);
        let a = b.mul(x1, cos);
        let c = b.mul(x2, sin);
        let first = b.sub(&a, &c);
        let d = b.mul(x2, cos);
        let e = b.mul(x1, sin);
        let second = b.add(&d, &e);
        let out = b.concat(&[&first, &second], -1);
        b.cast(&out, dtype)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_timescale_is_one_and_last_near_theta() {
        let ts = timescales(128, 10000.0);
        assert_eq!(ts[0], 1.0);
        assert!((ts[63] - 10000f32.powf(126.0 / 128.0)).abs() < 1e-2);
        let (cos, sin) = tables(3, 4, 10000.0);
        assert_eq!(&cos[..2], &[1.0, 1.0]);
        assert!((sin[2] - 1f32.sin()).abs() < 1e-7);
        assert!((sin[3] - 0.01f32.sin()).abs() < 1e-7);
    }
}
