//! A small typed ONNX graph builder.
//!
//! Every [`Value`] carries its element type and shape, and every op checks its operands
//! and infers its result's shape, so a wiring mistake in a layer fails at export time with the
//! names of the values involved rather than at load time inside ONNX Runtime. Dia's graphs have
//! static shapes (the decoder step is fixed-shape by design). The DAC graphs have one dynamic
//! dim (frames or samples): a dynamic dim is [`DYN`] (-1) in `Value.shape`, it propagates
//! through shape inference (checks involving it are left to the runtime), and graph inputs and
//! outputs name it with a `dim_param` ([`Builder::input_dyn`], [`Builder::output_dyn`]).
//! The type and shape of every value a node computes is written to the graph's `value_info`
//! (a dynamic dim as an unknown dim), so tools reading the model (ONNX Runtime, the CoreML
//! checker) need no shape inference of their own.
//!
//! Large initializers (weights) go to an [`ExternalData`] file as they are added, so the
//! protobuf stays small (the real model is over protobuf's 2 GB limit) and weights are streamed.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use crate::dtype::DType;
use crate::onnx::{
    attribute_type, AttributeProto, Dimension, DimensionValue, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    TypeProtoTensor, ValueInfoProto, DATA_LOCATION_EXTERNAL,
};

/// ONNX IR version and default-domain opset our graphs are written against.
pub const IR_VERSION: i64 = 8;
pub const OPSET: i64 = 17;
/// ONNX Runtime's contrib-op domain (`MatMulNBits`).
pub const MS_DOMAIN: &str = "com.microsoft";

/// A dynamic (symbolic) dim in `Value.shape`.
pub const DYN: i64 = -1;

/// A value in the graph: a name plus its element type and shape ([`DYN`] for a dynamic dim).
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
    /// Element count; [`DYN`] when a dim is dynamic.
    pub fn numel(&self) -> i64 {
        if self.is_static() {
            self.shape.iter().product()
        } else {
            DYN
        }
    }
    /// Whether every dim is known at export time.
    pub fn is_static(&self) -> bool {
        self.shape.iter().all(|&d| d != DYN)
    }
}

/// Attributes of a 1-D convolution, with PyTorch's `Conv1d` / `ConvTranspose1d` meaning
/// (`padding` on both sides).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1d {
    pub stride: i64,
    pub padding: i64,
    pub dilation: i64,
    pub groups: i64,
}

impl Default for Conv1d {
    fn default() -> Self {
        Self {
            stride: 1,
            padding: 0,
            dilation: 1,
            groups: 1,
        }
    }
}

/// Writes initializer bytes into one external-data file beside the model.
pub struct ExternalData {
    /// File name as recorded in the model (relative to the model's directory).
    location: String,
    path: PathBuf,
    out: BufWriter<File>,
    offset: u64,
    /// Hashed as written, so the manifest can record the file's SHA-256 without reading
    /// gigabytes back.
    hasher: Sha256,
}

/// A file the builder wrote: where, how long, and its SHA-256 (lowercase hex).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrittenFile {
    pub path: PathBuf,
    pub bytes: u64,
    pub sha256: String,
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
            hasher: Sha256::new(),
        })
    }

    fn append(&mut self, bytes: &[u8]) -> std::io::Result<(u64, u64)> {
        let align = if bytes.len() as u64 >= PAGE { PAGE } else { 64 };
        let pad = (align - self.offset % align) % align;
        if pad > 0 {
            let zeros = vec![0u8; pad as usize];
            self.out.write_all(&zeros)?;
            self.hasher.update(&zeros);
            self.offset += pad;
        }
        let start = self.offset;
        self.out.write_all(bytes)?;
        self.hasher.update(bytes);
        self.offset += bytes.len() as u64;
        Ok((start, bytes.len() as u64))
    }

    /// Flushes the file to disk; returns its path, size and hash.
    pub fn finish(mut self) -> std::io::Result<WrittenFile> {
        self.out.flush()?;
        let mut f = self.out.into_inner().map_err(|e| e.into_error())?;
        f.flush()?;
        f.sync_all()?;
        let len = f.stream_position()?;
        Ok(WrittenFile {
            path: self.path,
            bytes: len,
            sha256: dia_bundle::manifest::hex(&self.hasher.finalize()),
        })
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
    /// Whether a `com.microsoft` contrib op is used (then its opset is imported).
    uses_ms_domain: bool,
    /// Values renamed to graph outputs (old name, new name), see [`Builder::output_dyn`].
    renamed: Vec<String>,
    renamed_to: Vec<String>,
}

pub(crate) fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::FLOAT,
        f,
        ..Default::default()
    }
}
pub(crate) fn attr_int(name: &str, i: i64) -> AttributeProto {
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
    value_info_dyn(v, &[])
}

/// Value info whose dynamic dims are named, in order, by `dim_params` (unnamed ones are left
/// unknown).
fn value_info_dyn(v: &Value, dim_params: &[&str]) -> ValueInfoProto {
    let mut params = dim_params.iter();
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
                            value: if d == DYN {
                                params
                                    .next()
                                    .map(|p| DimensionValue::DimParam(p.to_string()))
                            } else {
                                Some(DimensionValue::DimValue(d))
                            },
                        })
                        .collect(),
                }),
            }),
        }),
        doc_string: String::new(),
    }
}

/// Numpy-style broadcast of two shapes. A dynamic dim against 1 stays dynamic; against a
/// static dim > 1 it is taken to be that dim (the runtime checks it).
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
        } else if da == 1 || da == DYN {
            db
        } else if db == DYN {
            da
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
            uses_ms_domain: false,
            renamed: Vec::new(),
            renamed_to: Vec::new(),
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
        let inputs: Vec<Option<&Value>> = inputs.iter().map(|v| Some(*v)).collect();
        self.node_opt(op, "", &inputs, attrs, outputs)
    }

    pub(crate) fn last_node_mut(&mut self) -> &mut NodeProto {
        self.graph.node.last_mut().expect("a node was added")
    }

    /// Adds a node of `domain` whose absent optional inputs are `None` (an empty name).
    pub(crate) fn node_opt(
        &mut self,
        op: &str,
        domain: &str,
        inputs: &[Option<&Value>],
        attrs: Vec<AttributeProto>,
        outputs: Vec<(DType, Vec<i64>)>,
    ) -> Vec<Value> {
        if domain == MS_DOMAIN {
            self.uses_ms_domain = true;
        }
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
        // Every intermediate value's type goes into `value_info` (dropped at `finish` for
        // outputs renamed to a graph output or cleared as unused).
        self.graph.value_info.extend(outs.iter().map(value_info));
        self.graph.node.push(NodeProto {
            input: inputs
                .iter()
                .map(|v| v.map(|v| v.name.clone()).unwrap_or_default())
                .collect(),
            output: outs.iter().map(|v| v.name.clone()).collect(),
            name,
            op_type: op.into(),
            domain: domain.into(),
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

    /// A graph input with dynamic dims ([`DYN`] in `shape`), named in order by `dim_params`
    /// (`"frames"`, `"samples"`), as ONNX `dim_param`s.
    pub fn input_dyn(
        &mut self,
        name: &str,
        dtype: DType,
        shape: &[i64],
        dim_params: &[&str],
    ) -> Value {
        assert_eq!(
            shape.iter().filter(|&&d| d == DYN).count(),
            dim_params.len(),
            "input {name} {shape:?}: one name per dynamic dim"
        );
        let v = Value {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        };
        self.graph.input.push(value_info_dyn(&v, dim_params));
        self.inputs.push(v.clone());
        v
    }

    /// Exposes `v` as a graph output called `name`.
    pub fn output(&mut self, v: &Value, name: &str) -> Value {
        self.output_dyn(v, name, &[])
    }

    /// Exposes `v` as a graph output called `name`, its dynamic dims named in order by
    /// `dim_params`.
    /// Returns the value under its output name, for any further use.
    pub fn output_dyn(&mut self, v: &Value, name: &str, dim_params: &[&str]) -> Value {
        let out = Value {
            name: name.into(),
            dtype: v.dtype,
            shape: v.shape.clone(),
        };
        // Name the producing node's output after the graph output, so the node writes straight
        // into the output buffer (an Identity would be a copy ONNX Runtime keeps whenever the
        // value has other consumers, e.g. an in-place cache update that attention also reads).
        let produced = self.graph.node.iter().any(|n| n.output.contains(&v.name));
        let is_output = self.outputs.iter().any(|o| o.name == v.name);
        if produced && !is_output && !self.renamed.contains(&v.name) {
            for node in &mut self.graph.node {
                for s in node.input.iter_mut().chain(node.output.iter_mut()) {
                    if *s == v.name {
                        *s = name.to_string();
                    }
                }
            }
            self.renamed.push(v.name.clone());
            self.renamed_to.push(name.to_string());
        } else {
            // A graph input, or a value already exposed under another name.
            let src = match self.renamed.iter().position(|r| *r == v.name) {
                Some(i) => self.renamed_to[i].clone(),
                None => v.name.clone(),
            };
            self.graph.node.push(NodeProto {
                input: vec![src],
                output: vec![name.into()],
                name: format!("output/{name}"),
                op_type: "Identity".into(),
                ..Default::default()
            });
        }
        self.graph.output.push(value_info_dyn(&out, dim_params));
        self.outputs.push(out.clone());
        out
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
    ) -> std::io::Result<(ModelProto, Option<WrittenFile>)> {
        if let Some(e) = self.io_error.take() {
            return Err(e);
        }
        let ext = match self.external.take() {
            Some(ext) => Some(ext.finish()?),
            None => None,
        };
        // `value_info` describes the values still produced under their own name: not those
        // renamed to a graph output (the output describes them), nor optional outputs dropped.
        let produced: HashSet<&str> = self
            .graph
            .node
            .iter()
            .flat_map(|n| n.output.iter().map(String::as_str))
            .collect();
        let outputs: HashSet<&str> = self.outputs.iter().map(|o| o.name.as_str()).collect();
        self.graph.value_info.retain(|vi| {
            produced.contains(vi.name.as_str()) && !outputs.contains(vi.name.as_str())
        });
        let model = ModelProto {
            ir_version: IR_VERSION,
            opset_import: std::iter::once(OperatorSetIdProto {
                domain: String::new(),
                version: OPSET,
            })
            .chain(self.uses_ms_domain.then(|| OperatorSetIdProto {
                domain: MS_DOMAIN.into(),
                version: 1,
            }))
            .collect(),
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
    pub fn pow(&mut self, a: &Value, b: &Value) -> Value {
        self.binary("Pow", a, b)
    }
    /// Elementwise maximum of two values (broadcast).
    pub fn max(&mut self, a: &Value, b: &Value) -> Value {
        self.binary("Max", a, b)
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
    pub fn neg(&mut self, x: &Value) -> Value {
        self.unary("Neg", x)
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

    /// ReduceL2, `sqrt(sum(x²))` (axes as an attribute up to opset 17).
    pub fn reduce_l2(&mut self, x: &Value, axes: &[i64], keepdims: bool) -> Value {
        let shape = Self::reduced_shape(x, axes, keepdims);
        self.node(
            "ReduceL2",
            &[x],
            vec![
                attr_ints("axes", axes),
                attr_int("keepdims", keepdims as i64),
            ],
            x.dtype,
            shape,
        )
    }

    /// ArgMax over `axis` (int64 indices; the first index among equal maxima, as `torch.max`).
    pub fn argmax(&mut self, x: &Value, axis: i64, keepdims: bool) -> Value {
        let shape = Self::reduced_shape(x, &[axis], keepdims);
        self.node(
            "ArgMax",
            &[x],
            vec![
                attr_int("axis", axis),
                attr_int("keepdims", keepdims as i64),
                attr_int("select_last_index", 0),
            ],
            DType::I64,
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
        assert!(
            k == k2 || k == DYN || k2 == DYN,
            "MatMul: {} {:?} times {} {:?}: inner dims differ",
            a.name,
            a.shape,
            b.name,
            b.shape
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

    /// 1-D convolution, PyTorch `Conv1d`: `x` `[N, C, L]`, `w` `[M, C/groups, K]`, optional
    /// bias `[M]`; returns `[N, M, (L + 2p - d(K-1) - 1)/s + 1]`.
    pub fn conv1d(&mut self, x: &Value, w: &Value, bias: Option<&Value>, p: Conv1d) -> Value {
        assert!(
            x.rank() == 3 && w.rank() == 3,
            "Conv: {} {:?} with kernel {} {:?}: need [N, C, L] and [M, C/groups, K]",
            x.name,
            x.shape,
            w.name,
            w.shape
        );
        assert!(
            x.shape[1] == DYN || x.shape[1] == w.shape[1] * p.groups,
            "Conv: {} {:?} has {} channels but kernel {} {:?} with {} groups takes {}",
            x.name,
            x.shape,
            x.shape[1],
            w.name,
            w.shape,
            p.groups,
            w.shape[1] * p.groups
        );
        let k = w.shape[2];
        let len = if x.shape[2] == DYN {
            DYN
        } else {
            let span = x.shape[2] + 2 * p.padding - p.dilation * (k - 1) - 1;
            assert!(
                span >= 0,
                "Conv: {} {:?} is shorter than the kernel {} {:?}",
                x.name,
                x.shape,
                w.name,
                w.shape
            );
            span / p.stride + 1
        };
        self.conv_node("Conv", x, w, bias, p, vec![x.shape[0], w.shape[0], len])
    }

    /// 1-D transposed convolution, PyTorch `ConvTranspose1d`: `x` `[N, C, L]`, `w`
    /// `[C, M/groups, K]`, optional bias `[M]`; returns `[N, M, (L-1)s - 2p + d(K-1) + 1]`.
    pub fn conv_transpose1d(
        &mut self,
        x: &Value,
        w: &Value,
        bias: Option<&Value>,
        p: Conv1d,
    ) -> Value {
        assert!(
            x.rank() == 3 && w.rank() == 3,
            "ConvTranspose: {} {:?} with kernel {} {:?}: need [N, C, L] and [C, M/groups, K]",
            x.name,
            x.shape,
            w.name,
            w.shape
        );
        assert!(
            x.shape[1] == DYN || x.shape[1] == w.shape[0],
            "ConvTranspose: {} {:?} has {} channels but kernel {} {:?} takes {}",
            x.name,
            x.shape,
            x.shape[1],
            w.name,
            w.shape,
            w.shape[0]
        );
        let k = w.shape[2];
        let len = if x.shape[2] == DYN {
            DYN
        } else {
            (x.shape[2] - 1) * p.stride - 2 * p.padding + p.dilation * (k - 1) + 1
        };
        let m = w.shape[1] * p.groups;
        self.conv_node("ConvTranspose", x, w, bias, p, vec![x.shape[0], m, len])
    }

    fn conv_node(
        &mut self,
        op: &str,
        x: &Value,
        w: &Value,
        bias: Option<&Value>,
        p: Conv1d,
        shape: Vec<i64>,
    ) -> Value {
        assert_eq!(
            x.dtype, w.dtype,
            "{op}: {} and {} differ in type",
            x.name, w.name
        );
        let mut inputs = vec![x, w];
        if let Some(b) = bias {
            assert_eq!(
                b.shape,
                vec![shape[1]],
                "{op}: bias {} {:?} for {} output channels",
                b.name,
                b.shape,
                shape[1]
            );
            inputs.push(b);
        }
        let attrs = vec![
            attr_ints("kernel_shape", &[w.shape[2]]),
            attr_ints("strides", &[p.stride]),
            attr_ints("pads", &[p.padding, p.padding]),
            attr_ints("dilations", &[p.dilation]),
            attr_int("group", p.groups),
        ];
        self.node(op, &inputs, attrs, x.dtype, shape)
    }

    // ---- shape manipulation ----

    /// Reshape to explicit dims, at most one of them -1 (inferred, as ONNX does; it stays
    /// dynamic when `x` has a dynamic dim). No 0 placeholders.
    pub fn reshape(&mut self, x: &Value, shape: &[i64]) -> Value {
        assert!(
            shape.iter().all(|&d| d > 0 || d == -1)
                && shape.iter().filter(|&&d| d == -1).count() <= 1,
            "reshape to {shape:?}: dims must be explicit (one -1 at most)"
        );
        let known: i64 = shape.iter().filter(|&&d| d > 0).product();
        let mut out = shape.to_vec();
        if x.is_static() {
            if let Some(i) = shape.iter().position(|&d| d == -1) {
                assert!(
                    x.numel() % known == 0,
                    "reshape {} {:?} to {shape:?}: element counts differ",
                    x.name,
                    x.shape
                );
                out[i] = x.numel() / known;
            }
            assert_eq!(
                x.numel(),
                out.iter().product::<i64>(),
                "reshape {} {:?} to {shape:?}: element counts differ",
                x.name,
                x.shape
            );
        }
        if x.shape == out {
            return x.clone();
        }
        let s = self.const_i64(shape, &[shape.len() as i64]);
        self.node("Reshape", &[x, &s], vec![], x.dtype, out)
    }

    /// `x[.., start..end, ..]` on `axis`; negative bounds count from the end, as in Python
    /// (`i64::MAX` for "to the end").
    pub fn slice(&mut self, x: &Value, axis: i64, start: i64, end: i64) -> Value {
        let ax = norm_axis(axis, x.rank());
        let mut shape = x.shape.clone();
        let n = x.shape[ax];
        shape[ax] = if n == DYN {
            DYN
        } else {
            let clamp = |i: i64| if i < 0 { (n + i).max(0) } else { i.min(n) };
            (clamp(end) - clamp(start)).max(0)
        };
        let starts = self.const_i64(&[start], &[1]);
        let ends = self.const_i64(&[end], &[1]);
        let axes = self.const_i64(&[axis], &[1]);
        self.node("Slice", &[x, &starts, &ends, &axes], vec![], x.dtype, shape)
    }

    /// `ScatterElements(data, indices, updates, axis)`: `data` with `updates` written at
    /// `indices` along `axis`.
    pub fn scatter_elements(
        &mut self,
        data: &Value,
        indices: &Value,
        updates: &Value,
        axis: i64,
    ) -> Value {
        assert_eq!(
            data.dtype, updates.dtype,
            "ScatterElements: updates' type differs"
        );
        assert_eq!(
            indices.shape, updates.shape,
            "ScatterElements: indices and updates differ in shape"
        );
        assert!(
            matches!(indices.dtype, DType::I64 | DType::I32),
            "ScatterElements: integer indices"
        );
        self.node(
            "ScatterElements",
            &[data, indices, updates],
            vec![attr_int("axis", axis)],
            data.dtype,
            data.shape.clone(),
        )
    }

    /// `Shape(x)`: the runtime shape as an int64 vector.
    pub fn shape_of(&mut self, x: &Value) -> Value {
        self.node("Shape", &[x], vec![], DType::I64, vec![x.rank() as i64])
    }

    /// `x[.., 0..end, ..]` on `axis` with `end` a one-element int64 value known at run time;
    /// the sliced dim becomes dynamic.
    pub fn slice_to(&mut self, x: &Value, axis: i64, end: &Value) -> Value {
        assert_eq!(end.dtype, DType::I64, "slice_to: end must be int64");
        let ax = norm_axis(axis, x.rank());
        let mut shape = x.shape.clone();
        shape[ax] = DYN;
        let starts = self.const_i64(&[0], &[1]);
        let axes = self.const_i64(&[axis], &[1]);
        self.node("Slice", &[x, &starts, end, &axes], vec![], x.dtype, shape)
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
        shape[ax] = if xs.iter().any(|v| v.shape[ax] == DYN) {
            DYN
        } else {
            xs.iter().map(|v| v.shape[ax]).sum()
        };
        for v in xs {
            assert_eq!(v.dtype, xs[0].dtype, "Concat: mixed types");
            assert_eq!(v.rank(), xs[0].rank(), "Concat: mixed ranks");
            for i in 0..v.rank() {
                assert!(
                    i == ax
                        || v.shape[i] == xs[0].shape[i]
                        || v.shape[i] == DYN
                        || xs[0].shape[i] == DYN,
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
        assert!(
            x.shape[ax] == DYN || sizes.iter().sum::<i64>() == x.shape[ax],
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
    fn outputs_name_their_producer_and_identity_only_when_needed() {
        let mut b = Builder::new("t", None);
        let x = b.input("x", DType::F32, &[2]);
        let y = b.sqrt(&x);
        let z = b.mul(&y, &y);
        let y_out = b.output(&y, "y");
        b.output(&z, "z");
        b.output(&x, "x_again");
        b.output(&y_out, "y_again");
        let g = b.finish("", &[]).unwrap().0.graph.unwrap();
        // Sqrt writes "y" directly and Mul reads it under that name; no Identity for y or z.
        assert_eq!(g.node[0].output, vec!["y".to_string()]);
        assert_eq!(g.node[1].input, vec!["y".to_string(), "y".to_string()]);
        assert_eq!(g.node[1].output, vec!["z".to_string()]);
        let ids: Vec<_> = g.node.iter().filter(|n| n.op_type == "Identity").collect();
        assert_eq!(
            ids.len(),
            2,
            "identities only for the graph input and the repeat"
        );
        assert_eq!(ids[0].input, vec!["x".to_string()]);
        assert_eq!(ids[1].input, vec!["y".to_string()]);
    }

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
    fn conv_shapes_follow_pytorch() {
        let mut b = Builder::new("t", None);
        let x = b.input("x", DType::F32, &[1, 4, 100]);
        let w = b.input("w", DType::F32, &[8, 4, 7]);
        let same = Conv1d {
            padding: 9,
            dilation: 3,
            ..Default::default()
        };
        assert_eq!(b.conv1d(&x, &w, None, same).shape, vec![1, 8, 100]);
        let w = b.input("w2", DType::F32, &[8, 4, 16]);
        let down = Conv1d {
            stride: 8,
            padding: 4,
            ..Default::default()
        };
        assert_eq!(b.conv1d(&x, &w, None, down).shape, vec![1, 8, 12]);
        // ConvTranspose1d weights are [in, out, k]: 4 -> 2 channels, length x8.
        let wt = b.input("wt", DType::F32, &[4, 2, 16]);
        assert_eq!(
            b.conv_transpose1d(&x, &wt, None, down).shape,
            vec![1, 2, 800]
        );
    }

    #[test]
    #[should_panic(expected = "has 4 channels but kernel")]
    fn conv_rejects_channel_mismatch() {
        let mut b = Builder::new("t", None);
        let x = b.input("x", DType::F32, &[1, 4, 10]);
        let w = b.input("w", DType::F32, &[8, 3, 1]);
        b.conv1d(&x, &w, None, Conv1d::default());
    }

    #[test]
    fn dynamic_dims_propagate_and_are_named() {
        let mut b = Builder::new("t", None);
        let x = b.input_dyn("x", DType::F32, &[1, 4, DYN], &["frames"]);
        let w = b.input("w", DType::F32, &[4, 2, 4]);
        let up = Conv1d {
            stride: 2,
            padding: 1,
            ..Default::default()
        };
        let y = b.conv_transpose1d(&x, &w, None, up);
        assert_eq!(y.shape, vec![1, 2, DYN]);
        let s = b.input("s", DType::F32, &[1, 2, 1]);
        assert_eq!(b.mul(&s, &y).shape, vec![1, 2, DYN]);
        assert_eq!(b.reshape(&y, &[2, -1]).shape, vec![2, DYN]);
        assert_eq!(b.transpose(&y, &[0, 2, 1]).shape, vec![1, DYN, 2]);
        assert_eq!(b.reduce_l2(&y, &[1], true).shape, vec![1, 1, DYN]);
        assert_eq!(b.argmax(&y, 1, false).shape, vec![1, DYN]);
        assert_eq!(b.argmax(&y, 1, false).dtype, DType::I64);
        assert_eq!(b.concat(&[&y, &y], 1).shape, vec![1, 4, DYN]);
        assert_eq!(b.concat(&[&y, &y], 2).shape, vec![1, 2, DYN]);
        b.output_dyn(&y, "y", &["samples"]);
        let (model, _) = b.finish("", &[]).unwrap();
        let g = model.graph.unwrap();
        let dims = |vi: &ValueInfoProto| -> Vec<Option<DimensionValue>> {
            let t = vi.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap();
            t.shape
                .as_ref()
                .unwrap()
                .dim
                .iter()
                .map(|d| d.value.clone())
                .collect()
        };
        assert_eq!(
            dims(&g.input[0]),
            vec![
                Some(DimensionValue::DimValue(1)),
                Some(DimensionValue::DimValue(4)),
                Some(DimensionValue::DimParam("frames".into()))
            ]
        );
        assert_eq!(
            dims(&g.output[0])[2],
            Some(DimensionValue::DimParam("samples".into()))
        );
    }

    #[test]
    fn value_info_describes_every_value_computed_under_its_own_name() {
        let mut b = Builder::new("t", None);
        let x = b.input_dyn("x", DType::F16, &[2, DYN, 4], &["len"]);
        let gamma = b.input("gamma", DType::F16, &[4]);
        let s = b.sigmoid(&x);
        // Two of the four outputs are dropped (empty names), the sum is used.
        let (y, sum) = b.skip_simplified_layer_norm(&x, &s, &gamma, 1e-5);
        let m = b.less(&y, &sum);
        b.output_dyn(&y, "y", &["len"]);
        b.output_dyn(&m, "m", &["len"]);
        let g = b.finish("", &[]).unwrap().0.graph.unwrap();
        let described: Vec<(String, i32, Vec<Option<i64>>)> = g
            .value_info
            .iter()
            .map(|vi| {
                let t = vi.r#type.as_ref().unwrap().tensor_type.as_ref().unwrap();
                let dims = t.shape.as_ref().unwrap().dim.iter().map(|d| match d.value {
                    Some(DimensionValue::DimValue(v)) => Some(v),
                    Some(DimensionValue::DimParam(_)) => panic!("{}: named dim", vi.name),
                    None => None,
                });
                (vi.name.clone(), t.elem_type, dims.collect())
            })
            .collect();
        // y and m are described by the graph outputs they were renamed to; the dynamic dim is
        // unknown (not named) inside the graph.
        let f16 = DType::F16.onnx();
        assert_eq!(
            described,
            vec![
                (s.name.clone(), f16, vec![Some(2), None, Some(4)]),
                (sum.name.clone(), f16, vec![Some(2), None, Some(4)]),
            ]
        );
        let outputs: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(outputs, ["y", "m"]);
        assert_eq!(
            g.output[1]
                .r#type
                .as_ref()
                .unwrap()
                .tensor_type
                .as_ref()
                .unwrap()
                .elem_type,
            DType::Bool.onnx()
        );
    }

    #[test]
    fn reshape_infers_one_dim_and_slice_counts_from_the_end() {
        let mut b = Builder::new("t", None);
        let x = b.input("x", DType::F32, &[2, 3, 4]);
        assert_eq!(b.reshape(&x, &[-1, 4]).shape, vec![6, 4]);
        assert_eq!(b.slice(&x, -1, 1, -1).shape, vec![2, 3, 2]);
        assert_eq!(b.slice(&x, 1, 1, i64::MAX).shape, vec![2, 2, 4]);
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
        let ext = ext.unwrap();
        assert_eq!(ext.bytes, 16384);
        let on_disk = dia_bundle::manifest::sha256_file(&ext.path).unwrap();
        assert_eq!(ext.sha256, on_disk);
    }
}
