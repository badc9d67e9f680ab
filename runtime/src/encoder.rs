//! The text encoder: the CFG pair's tokens in, the decoder's cross-attention inputs out (every
//! layer's K and V, padded to the text bucket, and the text mask), once per utterance.

use std::fmt::Debug;
use std::sync::Mutex;

use dia_bundle::layout::{CrossMask, KLayout, StepLayout};
use dia_bundle::{names, Dtype, ElementType, MASK_BIAS};
use ort::memory::Allocator;
use ort::session::Session;
use ort::value::{DynTensor, DynValue, PrimitiveTensorElementType, Tensor};

use crate::error::RuntimeError;

/// One decoder layer's cross-attention keys and values (host tensors, padded to the bucket).
pub struct CrossLayer {
    pub k: DynTensor,
    pub v: DynTensor,
}

/// The decoder's per-utterance inputs that come from the text: cross K/V per layer and the
/// text mask, all for a text padded to `bucket` positions.
pub struct CrossInputs {
    pub layers: Vec<CrossLayer>,
    pub mask: DynTensor,
    pub bucket: usize,
}

pub struct TextEncoder {
    session: Mutex<Session>,
    layout: StepLayout,
    layers: usize,
}

impl TextEncoder {
    pub fn new(session: Session, layout: StepLayout, layers: usize) -> Self {
        Self {
            session: Mutex::new(session),
            layout,
            layers,
        }
    }

    /// Runs the encoder on the pair's tokens and mask (`[2, len]` each, row-major) and returns
    /// its outputs by name.
    fn run(
        &self,
        tokens: &[i64],
        mask: &[bool],
    ) -> Result<std::collections::HashMap<String, DynValue>, RuntimeError> {
        let len = tokens.len() / 2;
        let enc = self.layout.encoder;
        let mut session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let outputs = match enc.fixed_len {
            Some(t) => {
                // Fixed text length, int32 ids and a float mask: pad both rows to it.
                debug_assert_eq!(
                    (enc.ids, enc.mask),
                    (ElementType::Int32, ElementType::Float32)
                );
                let mut tok = vec![0i32; 2 * t];
                let mut msk = vec![0f32; 2 * t];
                for r in 0..2 {
                    for i in 0..len {
                        tok[r * t + i] = tokens[r * len + i] as i32;
                        msk[r * t + i] = mask[r * len + i] as i32 as f32;
                    }
                }
                let tok = Tensor::from_array(([2usize, t], tok))?;
                let msk = Tensor::from_array(([2usize, t], msk))?;
                session.run(ort::inputs![
                    names::encoder::TEXT_TOKENS => tok,
                    names::encoder::TEXT_MASK => msk
                ])?
            }
            None => {
                let tok = Tensor::from_array(([2usize, len], tokens.to_vec()))?;
                let msk = Tensor::from_array(([2usize, len], mask.to_vec()))?;
                session.run(ort::inputs![
                    names::encoder::TEXT_TOKENS => tok,
                    names::encoder::TEXT_MASK => msk
                ])?
            }
        };
        Ok(outputs
            .into_iter()
            .map(|(name, v)| (name.to_string(), v))
            .collect())
    }

    /// The decoder's cross inputs for `text` (conditional tokens, unpadded), padded to `bucket`.
    ///
    /// The encoder runs on the text's own tokens: row 0 unconditional (all pad), row 1
    /// conditional, both with the conditional mask (all true here). Positions past the text
    /// are padding, which the decoder's cross-attention masks out: their K/V stay zero.
    pub fn encode(&self, text: &[i64], bucket: usize) -> Result<CrossInputs, RuntimeError> {
        let len = text.len();
        let mut tok = vec![0i64; 2 * len];
        tok[len..].copy_from_slice(text);
        let mut out = self.run(&tok, &vec![true; 2 * len])?;
        let dtype = self.layout.dtype;
        let mut layers = Vec::with_capacity(self.layers);
        let k_transposed = self.layout.k_layout == KLayout::Transposed;
        for i in 0..self.layers {
            let mut take = |name: String| {
                out.remove(&name)
                    .ok_or_else(|| RuntimeError::GraphMismatch {
                        graph: "encoder".into(),
                        kind: "output",
                        name,
                    })
            };
            let k = take(names::encoder::cross_k(i))?;
            let v = take(names::encoder::cross_v(i))?;
            layers.push(CrossLayer {
                k: pad_cross(&k, dtype, bucket, k_transposed)?,
                v: pad_cross(&v, dtype, bucket, false)?,
            });
        }
        Ok(CrossInputs {
            layers,
            mask: cross_mask(self.layout.cross_mask, len, bucket)?,
            bucket,
        })
    }

    /// Encoder states `[2, len, E]` for `text` (unpadded conditional tokens), padded with 0
    /// tokens to `pad_to` first if given (as the reference pads), for parity tests.
    pub fn states(&self, text: &[i64], pad_to: Option<usize>) -> Result<Vec<f32>, RuntimeError> {
        let t = pad_to.unwrap_or(text.len()).max(text.len());
        let mut tok = vec![0i64; 2 * t];
        tok[t..t + text.len()].copy_from_slice(text);
        let mask: Vec<bool> = (0..2 * t).map(|i| tok[t + i % t] != 0).collect();
        let out = self.run(&tok, &mask)?;
        let v = out
            .get(names::encoder::STATES)
            .ok_or_else(|| RuntimeError::GraphMismatch {
                graph: "encoder".into(),
                kind: "output",
                name: names::encoder::STATES.into(),
            })?;
        Ok(v.try_extract_tensor::<f32>()?.1.to_vec())
    }
}

/// Copies the encoder's cross K (`[2, KV, d, len]`, `transposed`) or V (`[2, KV, len, d]`)
/// into a zeroed host buffer of the step graph's text length `t`.
fn pad_typed<T: PrimitiveTensorElementType + Copy + Default + Debug>(
    v: &DynValue,
    t: usize,
    transposed: bool,
) -> Result<DynTensor, RuntimeError> {
    let (shape, src) = v.try_extract_tensor::<T>()?;
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let (rows, len, d) = if transposed {
        (dims[0] * dims[1] * dims[2], dims[3], 1)
    } else {
        (dims[0] * dims[1], dims[2], dims[3])
    };
    let out_shape = if transposed {
        [dims[0], dims[1], dims[2], t]
    } else {
        [dims[0], dims[1], t, dims[3]]
    };
    let mut out = Tensor::<T>::new(&Allocator::default(), out_shape)?;
    let dst = out.extract_tensor_mut().1;
    dst.fill(T::default());
    // Each row holds `len` runs of `d` values; the padded row holds `t` of them.
    for r in 0..rows {
        dst[r * t * d..(r * t + len) * d].copy_from_slice(&src[r * len * d..(r + 1) * len * d]);
    }
    Ok(out.upcast())
}

fn pad_cross(
    v: &DynValue,
    dtype: Dtype,
    t: usize,
    transposed: bool,
) -> Result<DynTensor, RuntimeError> {
    match dtype {
        Dtype::Float16 => pad_typed::<half::f16>(v, t, transposed),
        Dtype::Bfloat16 => pad_typed::<half::bf16>(v, t, transposed),
        Dtype::Float32 => pad_typed::<f32>(v, t, transposed),
    }
}

/// `values` (float32) as a host tensor of a bundle dtype.
pub(crate) fn float_tensor(
    dtype: Dtype,
    shape: Vec<usize>,
    values: Vec<f32>,
) -> Result<DynTensor, RuntimeError> {
    Ok(match dtype {
        Dtype::Float16 => Tensor::<half::f16>::from_array((
            shape,
            values
                .into_iter()
                .map(half::f16::from_f32)
                .collect::<Vec<_>>(),
        ))?
        .upcast(),
        Dtype::Bfloat16 => Tensor::<half::bf16>::from_array((
            shape,
            values
                .into_iter()
                .map(half::bf16::from_f32)
                .collect::<Vec<_>>(),
        ))?
        .upcast(),
        Dtype::Float32 => Tensor::<f32>::from_array((shape, values))?.upcast(),
    })
}

/// The text mask for a text of `len` tokens padded to `t`, as the step takes it.
fn cross_mask(kind: CrossMask, len: usize, t: usize) -> Result<DynTensor, RuntimeError> {
    let keep = |i: usize| i % t < len;
    let bias = |i: usize| if keep(i) { 0.0 } else { MASK_BIAS };
    Ok(match kind {
        CrossMask::BiasF32 => {
            Tensor::<f32>::from_array(([2usize, t], (0..2 * t).map(bias).collect::<Vec<_>>()))?
                .upcast()
        }
        CrossMask::Bias4d(dtype) => {
            float_tensor(dtype, vec![2, 1, 1, t], (0..2 * t).map(bias).collect())?
        }
        CrossMask::Bool => {
            Tensor::<bool>::from_array(([2usize, t], (0..2 * t).map(keep).collect::<Vec<_>>()))?
                .upcast()
        }
    })
}
