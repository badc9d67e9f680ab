//! Host tensors on their way from the checkpoint into the bundle: decoding safetensors' element
//! types to float32 and encoding float32 into the bundle's weight dtype.

use half::{bf16, f16};

use crate::dtype::DType;

/// A row-major float32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape {shape:?}"
        );
        Self { shape, data }
    }

    /// Transpose of a matrix (`[r, c]` -> `[c, r]`).
    pub fn transpose2(&self) -> Tensor {
        assert_eq!(self.shape.len(), 2, "transpose2 needs a matrix");
        let (r, c) = (self.shape[0], self.shape[1]);
        let mut out = vec![0f32; r * c];
        // Blocked so both sides stay in cache for the large projection matrices.
        const B: usize = 64;
        for i0 in (0..r).step_by(B) {
            for j0 in (0..c).step_by(B) {
                for i in i0..(i0 + B).min(r) {
                    for j in j0..(j0 + B).min(c) {
                        out[j * r + i] = self.data[i * c + j];
                    }
                }
            }
        }
        Tensor::new(vec![c, r], out)
    }

    /// Same data, new shape.
    pub fn reshape(mut self, shape: Vec<usize>) -> Tensor {
        assert_eq!(shape.iter().product::<usize>(), self.data.len());
        self.shape = shape;
        self
    }

    /// Concatenates matrices with equal row counts along their columns.
    pub fn hcat(parts: &[&Tensor]) -> Tensor {
        let rows = parts[0].shape[0];
        let cols: usize = parts.iter().map(|p| p.shape[1]).sum();
        let mut data = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for p in parts {
                assert_eq!(p.shape[0], rows, "hcat: row counts differ");
                let c = p.shape[1];
                data.extend_from_slice(&p.data[r * c..(r + 1) * c]);
            }
        }
        Tensor::new(vec![rows, cols], data)
    }

    pub fn shape_i64(&self) -> Vec<i64> {
        self.shape.iter().map(|&d| d as i64).collect()
    }
}

/// Element types a checkpoint may store floats in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceDType {
    F32,
    F16,
    BF16,
}

/// Decodes little-endian checkpoint bytes to float32.
pub fn decode_to_f32(bytes: &[u8], dtype: SourceDType) -> Vec<f32> {
    match dtype {
        SourceDType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        SourceDType::F16 => bytes
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        SourceDType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    }
}

/// Encodes float32 values as little-endian bytes of a float dtype of the bundle.
pub fn encode_f32(values: &[f32], dtype: DType) -> Vec<u8> {
    match dtype {
        DType::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F16 => values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        DType::BF16 => values
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
            .collect(),
        other => panic!("encode_f32: {other:?} is not a float type"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_and_hcat() {
        let t = Tensor::new(vec![2, 3], vec![1., 2., 3., 4., 5., 6.]);
        assert_eq!(t.transpose2().data, vec![1., 4., 2., 5., 3., 6.]);
        let u = Tensor::new(vec![2, 1], vec![7., 8.]);
        assert_eq!(
            Tensor::hcat(&[&t, &u]).data,
            vec![1., 2., 3., 7., 4., 5., 6., 8.]
        );
    }

    #[test]
    fn half_round_trip() {
        let v = [1.5f32, -2.25, 0.0];
        let b = encode_f32(&v, DType::F16);
        assert_eq!(decode_to_f32(&b, SourceDType::F16), v.to_vec());
        let b = encode_f32(&v, DType::BF16);
        assert_eq!(decode_to_f32(&b, SourceDType::BF16), v.to_vec());
    }
}
