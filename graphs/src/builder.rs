//! A small typed ONNX graph builder.
//!
//! Every [`Value`] carries its element type and static shape, and every op checks its operands
//! and infers its result's shape, so a wiring mistake in a layer fails at export time with the
//! names of the values involved rather than at load time inside ONNX Runtime. All our graphs
//! have static shapes (the decoder step is fixed-shape by design), so no symbolic dims exist.
//!
//! Large initializers (weights) go to an [`ExternalData`] file as they are added, so the
//! protobuf stays small (the real model is over protobuf's 2 GB limit) and weights are streamed.

use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use crate::onnx::{
    attribute_type, AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    TypeProtoTensor, ValueInfoProto, DATA_LOCATION_EXTERNAL,
};

/// ONNX IR version and default-domain opset our graphs are written against.
pub const IR_VERSION: i64 = 8;
pub const OPSET: i64 = 17;

/// Element types (values of `TensorProto.DataType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
    I64,
    I32,
    Bool,
}

impl DType {
    pub fn onnx(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::I32 => 6,
            DType::I64 => 7,
            DType::Bool => 9,
            DType::F16 => 10,
            DType::BF16 => 16,
        }
    }
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I64 => 8,
            DType::Bool => 1,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }
    /// The name used in manifests (numpy's spelling).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::Bool => "bool",
        }
    }
}

/// A value in the graph: a name plus its element type and static shape.
#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<i64>,
}

impl Value {
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    pub fn numel(&self) -> i64 {
        self.shape.iter().product()
    }
}

/// Writes initializer bytes into one external-data file beside the model.
pub struct ExternalData {
    /// File name as recorded in the model (relative to the model's directory).
    location: String,
    path: PathBuf,
    out: BufWriter<File>,
    offset: u64,
}

/// Tensors smaller than this stay inside the protobuf.
const INLINE_LIMIT: usize = 1024;
/// Large tensors start on a page boundary so ONNX Runtime can map them instead of copying.
const PAGE: u64 = 4096;

impl ExternalData {
    pub fn create(dir: &Path, location: &str) -> std::io::Result<Self> {
        let path = dir.join(location);
        let out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
        Ok(Self {
            location: location.to_string(),
            path,
            out,
            offset: 0,
        })
    }

    fn append(&mut self, bytes: &[u8]) -> std::io::Result<(u64, u64)> {
        let align = if bytes.len() as u64 >= PAGE { PAGE } else { 64 };
        let pad = (align - self.offset % align) % align;
        if pad > 0 {
            self.out.write_all(&vec![0u8; pad as usize])?;
            self.offset += pad;
        }
        let start = self.offset;
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok((start, bytes.len() as u64))
    }

    /// Flushes the file to disk; returns its path and size.
    pub fn finish(mut self) -> std::io::Result<(PathBuf, u64)> {
        self.out.flush()?;
        let mut f = self.out.into_inner().map_err(|e| e.into_error())?;
        f.flush()?;
        f.sync_all()?;
        let len = f.stream_position()?;
        Ok((self.path, len))
    }
}

/// Builds one ONNX graph. Ops are methods that take values and return values.
pub struct Builder {
    graph: GraphProto,
    scope: Vec<String>,
    counter: usize,
    external: Option<ExternalData>,
    io_error: Option<std::io::Error>,
    inputs: Vec<Value>,
    outputs: Vec<Value>,
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i,
        ..Default::default()
    }
}
fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn value_info(v: &Value) -> ValueInfoProto {
    ValueInfoProto {
        name: v.name.clone(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: v.dtype.onnx(),
                shape: Some(TensorShapeProto {
                    dim: v
                        .shape
                        .iter()
                        .map(|&d| Dimension {
                            value: Some(DimensionValue::DimValue(d)),
                        })
                        .collect(),
                }),
            }),
        }),
        doc_string: String::new(),
    }
}

/// Numpy-style broadcast of two static shapes.
fn broadcast(a: &Value, b: &Value, op: &str) -> Vec<i64> {
    let n = a.rank().max(b.rank());
    let mut out = vec![0; n];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.rank() >= n {
            a.shape[i + a.rank() - n]
        } else {
            1
        };
        let db = if i + b.rank() >= n {
            b.shape[i + b.rank() - n]
        } else {
            1
        };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            panic!(
                "{op}: cannot broadcast {} {:?} with {} {:?}",
                a.name, a.shape, b.name, b.shape
            )
        };
    }
    out
}

fn norm_axis(axis: i64, rank: usize) -> usize {
    let r = rank as i64;
    assert!(
        axis >= -r && axis < r,
        "axis {axis} out of range for rank {rank}"
    );
    (if axis < 0 { axis + r } else { axis }) as usize
}

impl Builder {
    /// A builder whose large initializers are written to `external` as they are added.
    pub fn new(name: &str, external: Option<ExternalData>) -> Self {
        Self {
            graph: GraphProto {
                name: name.into(),
                ..Default::default()
            },
            scope: Vec::new(),
            counter: 0,
            external,
            io_error: None,
            inputs: Vec::new(),
            outputs: Vec::new(),
        }
    }

    /// Runs `f` with `name` appended to the node-name scope (e.g. `decoder.layers.3`), so node
    /// names in the graph mirror the module path of the PyTorch model.
    pub fn scoped<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        self.scope.push(name.to_string());
        let out = f(self);
        self.scope.pop();
        out
    }

    fn fresh(&mut self, op: &str) -> String {
        self.counter += 1;
        if self.scope.is_empty() {
            format!("{op}_{}", self.counter)
        } else {
            format!("{}/{op}_{}", self.scope.join("."), self.counter)
        }
    }

    /// Adds a node with one output of the given type.
    fn node(
        &mut self,
        op: &str,
        inputs: &[&Value],
        attrs: Vec<AttributeProto>,
        dtype: DType,
        shape: Vec<i64>,
    ) -> Value {
        let out = self.node_multi(op, inputs, attrs, vec![(dtype, shape)]);
        out.into_iter().next().unwrap()
    }

    fn node_multi(
        &mut self,
        op: &str,
        inputs: &[&Value],
        attrs: Vec<AttributeProto>,
        outputs: Vec<(DType, Vec<i64>)>,
    ) -> Vec<Value> {
        let name = self.fresh(op);
        let outs: Vec<Value> = outputs
            .into_iter()
            .enumerate()
            .map(|(i, (dtype, shape))| Value {
                name: format!("{name}:{i}"),
                dtype,
                shape,
            })
            .collect();
        self.graph.node.push(NodeProto {
            input: inputs.iter().map(|v| v.name.clone()).collect(),
            output: outs.iter().map(|v| v.name.clone()).collect(),
            name,
            op_type: op.into(),
            attribute: attrs,
            ..Default::default()
        });
        outs
    }

    // ---- graph interface ----

    pub fn input(&mut self, name: &str, dtype: DType, shape: &[i64]) -> Value {
        let v = Value {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        };
        self.graph.input.push(value_info(&v));
        self.inputs.push(v.clone());
        v
    }

    /// Exposes `v` as a graph output called `name`.
    pub fn output(&mut self, v: &Value, name: &str) {
        let out = Value {
            name: name.into(),
            dtype: v.dtype,
            shape: v.shape.clone(),
        };
        self.graph.node.push(NodeProto {
            input: vec![v.name.clone()],
            output: vec![name.into()],
            name: format!("output/{name}"),
            op_type: "Identity".into(),
            ..Default::default()
        });
        self.graph.output.push(value_info(&out));
        self.outputs.push(out);
    }

    /// The graph's inputs, in order.
    pub fn inputs(&self) -> &[Value] {
        &self.inputs
    }

    /// The graph's outputs, in order.
    pub fn outputs(&self) -> &[Value] {
        &self.outputs
    }

    /// An initializer from raw little-endian bytes; large ones go to the external-data file.
    pub fn initializer(&mut self, name: &str, dtype: DType, shape: &[i64], bytes: &[u8]) -> Value {
        let numel: i64 = shape.iter().product();
        assert_eq!(
            numel as usize * dtype.size(),
            bytes.len(),
            "initializer {name}: {shape:?} {dtype:?} does not match {} bytes",
            bytes.len()
        );
        let mut t = TensorProto {
            dims: shape.to_vec(),
            data_type: dtype.onnx(),
            name: name.into(),
            ..Default::default()
        };
        match self.external.as_mut() {
            Some(ext) if bytes.len() >= INLINE_LIMIT => match ext.append(bytes) {
                Ok((offset, length)) => {
                    t.data_location = DATA_LOCATION_EXTERNAL;
                    t.external_data = vec![
                        entry("location", &ext.location),
                        entry("offset", &offset.to_string()),
                        entry("length", &length.to_string()),
                    ];
                }
                Err(e) => {
                    // Remember the first failure; `finish` reports it.
                    self.io_error.get_or_insert(e);
                }
            },
            _ => t.raw_data = bytes.to_vec(),
        }
        self.graph.initializer.push(t);
        Value {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    pub fn const_f32(&mut self, values: &[f32], shape: &[i64]) -> Value {
        let name = self.fresh("const");
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(&name, DType::F32, shape, &bytes)
    }

    pub fn const_i64(&mut self, values: &[i64], shape: &[i64]) -> Value {
        let name = self.fresh("const");
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(&name, DType::I64, shape, &bytes)
    }

    /// A scalar of a float type (for eps, -inf and the like), stored as that type.
    pub fn scalar(&mut self, value: f32, dtype: DType) -> Value {
        let name = self.fresh("scalar");
        let bytes = crate::tensor::encode_f32(&[value], dtype);
        self.initializer(&name, dtype, &[], &bytes)
    }

    /// Finishes the model. Returns the model proto and the external-data file (path, size).
    pub fn finish(
        mut self,
        doc: &str,
        metadata: &[(&str, String)],
    ) -> std::io::Result<(ModelProto, Option<(PathBuf, u64)>)> {
        if let Some(e) = self.io_error.take() {
            return Err(e);
        }
        let ext = match self.external.take() {
            Some(ext) => Some(ext.finish()?),
            None => None,
        };
        let model = ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            }],
            producer_name: "dia-export".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(self.graph),
            metadata_props: metadata.iter().map(|(k, v)| entry(k, v)).collect(),
            ..Default::default()
        };
        Ok((model, ext))
    }

    // ---- elementwise ----

    fn binary(&mut self, op: &str, a: &Value, b: &Value) -> Value {
        assert_eq!(
            a.dtype, b.dtype,
            "{op}: {} is {:?} but {} is {:?}",
            a.name, a.dtype, b.name, b.dtype
        );
        let shape = broadcast(a, b, op);
        self.node(op, &[a, b], vec![], a.dtype, shape)
    }
    pub fn add(&mut self, a: &Value, b: &Value) -> Value {
        self.binary("Add", a, b)
    }
    pub fn sub(&mut self, a: &Value, b: &Value) -> Value {
        self.binary("Sub", a, b)
    }
    pub fn mul(&mut self, a: &Value, b: &Value) -> Value {
        self.binary("Mul", a, b)
    }
    pub fn div(&mut self, a: &Value, b: &Value) -> Value {
        self.binary("Div", a, b)
    }

    fn compare(&mut self, op: &str, a: &Value, b: &Value) -> Value {
        assert_eq!(a.dtype, b.dtype, "{op}: operand types differ");
        let shape = broadcast(a, b, op);
        self.node(op, &[a, b], vec![], DType::Bool, shape)
    }
    pub fn less(&mut self, a: &Value, b: &Value) -> Value {
        self.compare("Less", a, b)
    }
    pub fn equal(&mut self, a: &Value, b: &Value) -> Value {
        self.compare("Equal", a, b)
    }

    fn unary(&mut self, op: &str, x: &Value) -> Value {
        self.node(op, &[x], vec![], x.dtype, x.shape.clone())
    }
    pub fn sqrt(&mut self, x: &Value) -> Value {
        self.unary("Sqrt", x)
    }
    pub fn reciprocal(&mut self, x: &Value) -> Value {
        self.unary("Reciprocal", x)
    }
    pub fn sigmoid(&mut self, x: &Value) -> Value {
        self.unary("Sigmoid", x)
    }
    pub fn sin(&mut self, x: &Value) -> Value {
        self.unary("Sin", x)
    }
    pub fn cos(&mut self, x: &Value) -> Value {
        self.unary("Cos", x)
    }
    pub fn tanh(&mut self, x: &Value) -> Value {
        self.unary("Tanh", x)
    }

    /// `Where(cond, a, b)`.
    pub fn where_(&mut self, cond: &Value, a: &Value, b: &Value) -> Value {
        assert_eq!(
            cond.dtype,
            DType::Bool,
            "Where: condition {} is not bool",
            cond.name
        );
        assert_eq!(a.dtype, b.dtype, "Where: branch types differ");
        let s = broadcast(cond, a, "Where");
        let tmp = Value {
            name: String::new(),
            dtype: a.dtype,
            shape: s,
        };
        let shape = broadcast(&tmp, b, "Where");
        self.node("Where", &[cond, a, b], vec![], a.dtype, shape)
    }

    pub fn cast(&mut self, x: &Value, to: DType) -> Value {
        if x.dtype == to {
            return x.clone();
        }
        self.node(
            "Cast",
            &[x],
            vec![attr_int("to", to.onnx() as i64)],
            to,
            x.shape.clone(),
        )
    }

    // ---- reductions and normalisation ----

    pub fn softmax(&mut self, x: &Value, axis: i64) -> Value {
        norm_axis(axis, x.rank());
        self.node(
            "Softmax",
            &[x],
            vec![attr_int("axis", axis)],
            x.dtype,
            x.shape.clone(),
        )
    }

    fn reduced_shape(x: &Value, axes: &[i64], keepdims: bool) -> Vec<i64> {
        let axes: Vec<usize> = axes.iter().map(|&a| norm_axis(a, x.rank())).collect();
        x.shape
            .iter()
            .enumerate()
            .filter_map(|(i, &d)| {
                if axes.contains(&i) {
                    keepdims.then_some(1)
                } else {
                    Some(d)
                }
            })
            .collect()
    }

    /// ReduceMean (axes as an attribute up to opset 17).
    pub fn reduce_mean(&mut self, x: &Value, axes: &[i64], keepdims: bool) -> Value {
        let shape = Self::reduced_shape(x, axes, keepdims);
        self.node(
            "ReduceMean",
            &[x],
            vec![
                attr_ints("axes", axes),
                attr_int("keepdims", keepdims as i64),
            ],
            x.dtype,
            shape,
        )
    }

    /// ReduceSum (axes as an input since opset 13).
    pub fn reduce_sum(&mut self, x: &Value, axes: &[i64], keepdims: bool) -> Value {
        let shape = Self::reduced_shape(x, axes, keepdims);
        let ax = self.const_i64(axes, &[axes.len() as i64]);
        self.node(
            "ReduceSum",
            &[x, &ax],
            vec![attr_int("keepdims", keepdims as i64)],
            x.dtype,
            shape,
        )
    }

    // ---- linear algebra ----

    /// Numpy matmul semantics over the two trailing dims, batch dims broadcast.
    pub fn matmul(&mut self, a: &Value, b: &Value) -> Value {
        assert_eq!(
            a.dtype, b.dtype,
            "MatMul: {} is {:?} but {} is {:?}",
            a.name, a.dtype, b.name, b.dtype
        );
        assert!(
            a.rank() >= 2 && b.rank() >= 2,
            "MatMul: operands must be matrices"
        );
        let (m, k) = (a.shape[a.rank() - 2], a.shape[a.rank() - 1]);
        let (k2, n) = (b.shape[b.rank() - 2], b.shape[b.rank() - 1]);
        assert_eq!(
            k, k2,
            "MatMul: {} {:?} times {} {:?}: inner dims differ",
            a.name, a.shape, b.name, b.shape
        );
        let ab = Value {
            name: a.name.clone(),
            dtype: a.dtype,
            shape: a.shape[..a.rank() - 2].to_vec(),
        };
        let bb = Value {
            name: b.name.clone(),
            dtype: b.dtype,
            shape: b.shape[..b.rank() - 2].to_vec(),
        };
        let mut shape = broadcast(&ab, &bb, "MatMul");
        shape.extend([m, n]);
        self.node("MatMul", &[a, b], vec![], a.dtype, shape)
    }

    // ---- shape manipulation ----

    /// Reshape to a fully static shape (no -1 or 0 placeholders).
    pub fn reshape(&mut self, x: &Value, shape: &[i64]) -> Value {
        assert!(
            shape.iter().all(|&d| d > 0),
            "reshape to {shape:?}: dims must be explicit"
        );
        assert_eq!(
            x.numel(),
            shape.iter().product::<i64>(),
            "reshape {} {:?} to {shape:?}: element counts differ",
            x.name,
            x.shape
        );
        if x.shape == shape {
            return x.clone();
        }
        let s = self.const_i64(shape, &[shape.len() as i64]);
        self.node("Reshape", &[x, &s], vec![], x.dtype, shape.to_vec())
    }

    pub fn transpose(&mut self, x: &Value, perm: &[i64]) -> Value {
        assert_eq!(perm.len(), x.rank(), "transpose {}: perm {perm:?}", x.name);
        let shape = perm.iter().map(|&p| x.shape[p as usize]).collect();
        self.node(
            "Transpose",
            &[x],
            vec![attr_ints("perm", perm)],
            x.dtype,
            shape,
        )
    }

    pub fn unsqueeze(&mut self, x: &Value, axes: &[i64]) -> Value {
        let rank = x.rank() + axes.len();
        let axes_n: Vec<usize> = axes.iter().map(|&a| norm_axis(a, rank)).collect();
        let mut src = x.shape.iter();
        let shape = (0..rank)
            .map(|i| {
                if axes_n.contains(&i) {
                    1
                } else {
                    *src.next().unwrap()
                }
            })
            .collect();
        let ax = self.const_i64(axes, &[axes.len() as i64]);
        self.node("Unsqueeze", &[x, &ax], vec![], x.dtype, shape)
    }

    pub fn concat(&mut self, xs: &[&Value], axis: i64) -> Value {
        let ax = norm_axis(axis, xs[0].rank());
        let mut shape = xs[0].shape.clone();
        shape[ax] = xs.iter().map(|v| v.shape[ax]).sum();
        for v in xs {
            assert_eq!(v.dtype, xs[0].dtype, "Concat: mixed types");
            assert_eq!(v.rank(), xs[0].rank(), "Concat: mixed ranks");
            for i in 0..v.rank() {
                assert!(
                    i == ax || v.shape[i] == xs[0].shape[i],
                    "Concat on axis {axis}: {} {:?} vs {} {:?}",
                    v.name,
                    v.shape,
                    xs[0].name,
                    xs[0].shape
                );
            }
        }
        self.node(
            "Concat",
            xs,
            vec![attr_int("axis", axis)],
            xs[0].dtype,
            shape,
        )
    }

    /// Splits `x` along `axis` into pieces of the given sizes.
    pub fn split(&mut self, x: &Value, axis: i64, sizes: &[i64]) -> Vec<Value> {
        let ax = norm_axis(axis, x.rank());
        assert_eq!(
            sizes.iter().sum::<i64>(),
            x.shape[ax],
            "split {} {:?} on axis {axis} into {sizes:?}",
            x.name,
            x.shape
        );
        let s = self.const_i64(sizes, &[sizes.len() as i64]);
        let outs = sizes
            .iter()
            .map(|&n| {
                let mut shape = x.shape.clone();
                shape[ax] = n;
                (x.dtype, shape)
            })
            .collect();
        self.node_multi("Split", &[x, &s], vec![attr_int("axis", axis)], outs)
    }

    /// `Gather(data, indices, axis)`: the axis dim is replaced by the indices' shape.
    pub fn gather(&mut self, data: &Value, indices: &Value, axis: i64) -> Value {
        assert!(
            matches!(indices.dtype, DType::I64 | DType::I32),
            "Gather: indices {} must be integers",
            indices.name
        );
        let ax = norm_axis(axis, data.rank());
        let mut shape = data.shape[..ax].to_vec();
        shape.extend(&indices.shape);
        shape.extend(&data.shape[ax + 1..]);
        self.node(
            "Gather",
            &[data, indices],
            vec![attr_int("axis", axis)],
            data.dtype,
            shape,
        )
    }

    /// Expands (broadcasts) `x` to `shape`.
    pub fn expand(&mut self, x: &Value, shape: &[i64]) -> Value {
        let target = Value {
            name: "shape".into(),
            dtype: x.dtype,
            shape: shape.to_vec(),
        };
        let out_shape = broadcast(x, &target, "Expand");
        let s = self.const_i64(shape, &[shape.len() as i64]);
        self.node("Expand", &[x, &s], vec![], x.dtype, out_shape)
    }
}

fn entry(k: &str, v: &str) -> StringStringEntryProto {
    StringStringEntryProto {
        key: k.into(),
        value: v.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_broadcasts_batch_dims() {
        let mut b = Builder::new("t", None);
        let x = b.input("x", DType::F32, &[2, 1, 4, 8]);
        let w = b.input("w", DType::F32, &[3, 8, 5]);
        let y = b.matmul(&x, &w);
        assert_eq!(y.shape, vec![2, 3, 4, 5]);
    }

    #[test]
    #[should_panic(expected = "inner dims differ")]
    fn matmul_rejects_mismatched_inner_dims() {
        let mut b = Builder::new("t", None);
        let x = b.input("x", DType::F32, &[4, 8]);
        let w = b.input("w", DType::F32, &[7, 5]);
        b.matmul(&x, &w);
    }

    #[test]
    fn unsqueeze_gather_split_shapes() {
        let mut b = Builder::new("t", None);
        let x = b.input("x", DType::F32, &[2, 6]);
        assert_eq!(b.unsqueeze(&x, &[1]).shape, vec![2, 1, 6]);
        assert_eq!(b.unsqueeze(&x, &[-1]).shape, vec![2, 6, 1]);
        let table = b.input("t", DType::F32, &[10, 3]);
        let idx = b.input("i", DType::I64, &[2, 9]);
        assert_eq!(b.gather(&table, &idx, 0).shape, vec![2, 9, 3]);
        let parts = b.split(&x, -1, &[2, 4]);
        assert_eq!(parts[1].shape, vec![2, 4]);
    }

    #[test]
    fn external_data_is_aligned_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let ext = ExternalData::create(dir.path(), "w.bin").unwrap();
        let mut b = Builder::new("t", Some(ext));
        b.initializer("small", DType::F32, &[2], &[0u8; 8]);
        b.initializer("big", DType::F32, &[2048], &[1u8; 8192]);
        b.initializer("big2", DType::F32, &[2048], &[2u8; 8192]);
        let (model, ext) = b.finish("", &[]).unwrap();
        let g = model.graph.unwrap();
        assert!(g.initializer[0].external_data.is_empty());
        let off: Vec<u64> = g.initializer[1..]
            .iter()
            .map(|t| t.external_data[1].value.parse().unwrap())
            .collect();
        assert_eq!(off, vec![0, 8192]);
        assert_eq!(ext.unwrap().1, 16384);
    }
}
