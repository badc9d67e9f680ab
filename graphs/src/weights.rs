//! Puts checkpoint weights into a graph, addressed like candle's `VarBuilder`: a `Weights`
//! carries a name prefix (`w.pp("layers.3")`) and the dtype the bundle stores matrices in.

use crate::builder::{Builder, DType, Value};
use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::contrib::QuantizedMatrix;
use crate::quant::{self, QuantSpec};
use crate::tensor::{encode_f32, Tensor};

/// `<prefix>.<name>`, or `name` at the root: a parameter's path under a module prefix (for
/// [`Weights`] and the codec's `DacWeights`).
pub(crate) fn module_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

#[derive(Clone)]
pub struct Weights<'a> {
    ckpt: &'a Checkpoint,
    prefix: String,
    /// Dtype of matrices and embeddings in the bundle; norm weights stay float32.
    pub dtype: DType,
    /// Weight-only quantisation of the projection matrices (`linear`), if any.
    pub quant: Option<QuantSpec>,
}

/// A projection `x · W` as the graph computes it: a plain MatMul, or `MatMulNBits` on a
/// block-quantised `W`.
pub enum Linear {
    Dense(Value),
    Quantized(QuantizedMatrix),
}

impl Linear {
    pub fn apply(&self, b: &mut Builder, x: &Value) -> Value {
        match self {
            Linear::Dense(w) => b.matmul(x, w),
            Linear::Quantized(w) => b.matmul_nbits(x, w),
        }
    }
}

impl<'a> Weights<'a> {
    pub fn new(ckpt: &'a Checkpoint, dtype: DType) -> Self {
        Self {
            ckpt,
            prefix: String::new(),
            dtype,
            quant: None,
        }
    }

    /// Descends into a sub-module: `w.pp("decoder").pp("layers.0")`.
    pub fn pp(&self, name: impl AsRef<str>) -> Self {
        Self {
            ckpt: self.ckpt,
            prefix: self.path(name.as_ref()),
            dtype: self.dtype,
            quant: self.quant,
        }
    }

    /// The module path this `Weights` stands for (`decoder.layers.0.mlp`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn path(&self, name: &str) -> String {
        module_path(&self.prefix, name)
    }

    /// The checkpoint tensor `<prefix>.<name>.weight` in its nari shape, as float32.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor, CheckpointError> {
        self.ckpt.get(&format!("{}.weight", self.path(name)), shape)
    }

    /// Adds `t` to the graph as an initializer named after this module.
    pub fn add(&self, b: &mut Builder, name: &str, t: &Tensor, dtype: DType) -> Value {
        b.initializer(
            &self.path(name),
            dtype,
            &t.shape_i64(),
            &encode_f32(&t.data, dtype),
        )
    }

    /// An RMSNorm weight `[dim]`, kept in float32 as the reference keeps it.
    pub fn norm(&self, b: &mut Builder, name: &str, dim: usize) -> Result<Value, CheckpointError> {
        let t = self.tensor(name, &[dim])?;
        Ok(self.add(b, name, &t, DType::F32))
    }

    /// An RMSNorm weight `[dim]` in the bundle's dtype, for fused norm kernels that take the
    /// weight in their input's dtype (they still compute in float32).
    pub fn norm_in_dtype(
        &self,
        b: &mut Builder,
        name: &str,
        dim: usize,
    ) -> Result<Value, CheckpointError> {
        let t = self.tensor(name, &[dim])?;
        Ok(self.add(b, name, &t, self.dtype))
    }

    /// A DenseGeneral kernel of nari shape `shape` whose first `n_in` dims are contracted,
    /// as a `[in, out]` matrix: `y = x · W.reshape(in, out)`.
    pub fn dense(
        &self,
        name: &str,
        shape: &[usize],
        n_in: usize,
    ) -> Result<Tensor, CheckpointError> {
        let t = self.tensor(name, shape)?;
        let rows: usize = shape[..n_in].iter().product();
        let cols: usize = shape[n_in..].iter().product();
        Ok(t.reshape(vec![rows, cols]))
    }

    /// Several kernels over the same input fused column-wise into one `[in, sum(out)]`
    /// projection (one MatMul instead of several), added under `fused_name`.
    pub fn fused_linear(
        &self,
        b: &mut Builder,
        fused_name: &str,
        parts: &[(&str, &[usize])],
    ) -> Result<Linear, CheckpointError> {
        let mats = parts
            .iter()
            .map(|(n, s)| self.dense(n, s, 1))
            .collect::<Result<Vec<_>, _>>()?;
        let refs: Vec<&Tensor> = mats.iter().collect();
        let fused = Tensor::hcat(&refs);
        drop(mats);
        Ok(self.add_linear(b, fused_name, &fused))
    }

    /// Adds a `[in, out]` matrix as a projection: quantised when this `Weights` says so and
    /// the input size fits the block size, else plain in the bundle's dtype.
    pub fn add_linear(&self, b: &mut Builder, name: &str, m: &Tensor) -> Linear {
        match self.quant {
            Some(spec) if m.shape[0].is_multiple_of(spec.block) => {
                let (k, n) = (m.shape[0], m.shape[1]);
                let (packed, scales) = quant::quantize(m, spec);
                let blocks = (k / spec.block) as i64;
                let qweight = b.initializer(
                    &format!("{}.q{}", self.path(name), spec.bits),
                    DType::U8,
                    &[n as i64, blocks, (spec.block * spec.bits / 8) as i64],
                    &packed,
                );
                let scales = b.initializer(
                    &format!("{}.scales", self.path(name)),
                    self.dtype,
                    &[n as i64 * blocks],
                    &encode_f32(&scales, self.dtype),
                );
                Linear::Quantized(QuantizedMatrix {
                    qweight,
                    scales,
                    k,
                    n,
                    spec,
                })
            }
            _ => Linear::Dense(self.add(b, name, m, self.dtype)),
        }
    }

    /// One kernel as a projection (see [`Weights::add_linear`]).
    pub fn linear(
        &self,
        b: &mut Builder,
        name: &str,
        shape: &[usize],
        n_in: usize,
    ) -> Result<Linear, CheckpointError> {
        let m = self.dense(name, shape, n_in)?;
        Ok(self.add_linear(b, name, &m))
    }

    /// One kernel as a `[in, out]` matrix in the bundle's dtype.
    pub fn matrix(
        &self,
        b: &mut Builder,
        name: &str,
        shape: &[usize],
        n_in: usize,
    ) -> Result<Value, CheckpointError> {
        let m = self.dense(name, shape, n_in)?;
        Ok(self.add(b, name, &m, self.dtype))
    }
}
