//! Weight-only block-wise quantisation for ONNX Runtime's `MatMulNBits`.
//!
//! A `[K, N]` matrix is stored column by column (output feature n), each column cut into blocks
//! of `block` input features with one float scale per block; values are symmetric
//! `q = round(w / scale)` shifted by the implicit zero point 2^(bits-1) (no zero-point tensor).

use crate::tensor::Tensor;

/// How matrices are quantised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuantSpec {
    pub bits: usize,
    pub block: usize,
    /// `MatMulNBits.accuracy_level`: 4 computes with int8 activations on the CPU.
    pub accuracy_level: i64,
}

impl QuantSpec {
    pub fn int8() -> Self {
        Self {
            bits: 8,
            block: 32,
            accuracy_level: 4,
        }
    }
    pub fn int4() -> Self {
        Self {
            bits: 4,
            block: 32,
            accuracy_level: 4,
        }
    }
    pub fn name(&self) -> String {
        format!("int{}", self.bits)
    }
}

/// The packed weight (`[N, K/block, block·bits/8]` bytes) and scales (`[N·K/block]`) of `w`
/// (`[K, N]`, K a multiple of `block`).
pub fn quantize(w: &Tensor, spec: QuantSpec) -> (Vec<u8>, Vec<f32>) {
    assert_eq!(w.shape.len(), 2, "quantize: a matrix");
    let (k, n) = (w.shape[0], w.shape[1]);
    let block = spec.block;
    assert!(
        k.is_multiple_of(block),
        "quantize: K = {k} is not a multiple of the block size {block}"
    );
    assert!(spec.bits == 8 || spec.bits == 4, "quantize: 4 or 8 bits");
    let blocks = k / block;
    let qmax = ((1 << (spec.bits - 1)) - 1) as f32;
    let zero = 1i32 << (spec.bits - 1);
    let blob = block * spec.bits / 8;
    let mut packed = vec![0u8; n * blocks * blob];
    let mut scales = vec![0f32; n * blocks];
    let mut col = vec![0f32; block];
    for j in 0..n {
        for bi in 0..blocks {
            for (i, c) in col.iter_mut().enumerate() {
                *c = w.data[(bi * block + i) * n + j];
            }
            let amax = col.iter().fold(0f32, |m, x| m.max(x.abs()));
            let scale = if amax > 0.0 { amax / qmax } else { 1.0 };
            scales[j * blocks + bi] = scale;
            let out = &mut packed[(j * blocks + bi) * blob..(j * blocks + bi + 1) * blob];
            for (i, &x) in col.iter().enumerate() {
                let q = ((x / scale).round() as i32).clamp(-(qmax as i32) - 1, qmax as i32) + zero;
                if spec.bits == 8 {
                    out[i] = q as u8;
                } else if i % 2 == 0 {
                    out[i / 2] = q as u8;
                } else {
                    out[i / 2] |= (q as u8) << 4;
                }
            }
        }
    }
    (packed, scales)
}

/// The matrix a packed weight stands for (for tests).
pub fn dequantize(packed: &[u8], scales: &[f32], k: usize, n: usize, spec: QuantSpec) -> Tensor {
    let blocks = k / spec.block;
    let blob = spec.block * spec.bits / 8;
    let zero = (1i32 << (spec.bits - 1)) as f32;
    let mut w = vec![0f32; k * n];
    for j in 0..n {
        for bi in 0..blocks {
            let bytes = &packed[(j * blocks + bi) * blob..(j * blocks + bi + 1) * blob];
            for i in 0..spec.block {
                let q = if spec.bits == 8 {
                    bytes[i]
                } else if i % 2 == 0 {
                    bytes[i / 2] & 15
                } else {
                    bytes[i / 2] >> 4
                };
                w[(bi * spec.block + i) * n + j] = (q as f32 - zero) * scales[j * blocks + bi];
            }
        }
    }
    Tensor::new(vec![k, n], w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        let (k, n) = (64, 3);
        let data: Vec<f32> = (0..k * n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 70.0)
            .collect();
        let w = Tensor::new(vec![k, n], data);
        for spec in [QuantSpec::int8(), QuantSpec::int4()] {
            let (p, s) = quantize(&w, spec);
            assert_eq!(p.len(), n * (k / spec.block) * spec.block * spec.bits / 8);
            let d = dequantize(&p, &s, k, n, spec);
            for j in 0..n {
                for bi in 0..k / spec.block {
                    let scale = s[j * (k / spec.block) + bi];
                    for i in 0..spec.block {
                        let r = (bi * spec.block + i) * n + j;
                        assert!(
                            (d.data[r] - w.data[r]).abs() <= scale * 0.5 + 1e-6,
                            "{spec:?}"
                        );
                    }
                }
            }
        }
    }
}
