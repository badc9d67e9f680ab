//! What the check knows about each value of a graph: its element type and shape as the model
//! records them (initializers, graph inputs and outputs, and `value_info`, which
//! `dia_graphs::Builder` writes for every value a node computes), the values of small integer
//! initializers, and whether ONNX Runtime's constant folding computes it before the provider
//! sees the graph. Nothing is inferred: a value the model does not describe has an unknown type
//! and shape.

use std::collections::HashMap;

use dia_graphs::onnx::{
    AttributeProto, DimensionValue, GraphProto, NodeProto, TensorProto, ValueInfoProto,
    DATA_LOCATION_EXTERNAL,
};

use crate::CheckOptions;

// `TensorProto.DataType` values.
pub(crate) const FLOAT: i32 = 1;
pub(crate) const UINT8: i32 = 2;
pub(crate) const INT32: i32 = 6;
pub(crate) const INT64: i32 = 7;
pub(crate) const BOOL: i32 = 9;
pub(crate) const FLOAT16: i32 = 10;

/// A shape: `None` for a dynamic (symbolic or unknown) dim.
pub(crate) type Dims = Vec<Option<i64>>;

/// One value: dtype, shape (`None`: unknown rank), known int values, constness.
#[derive(Clone, Debug, Default)]
pub(crate) struct ValueInfo {
    /// `TensorProto.DataType`; 0 when unknown.
    pub(crate) dtype: i32,
    pub(crate) shape: Option<Dims>,
    /// Values of a small integer initializer (computed values are not evaluated).
    pub(crate) ints: Option<Vec<i64>>,
    /// An initializer, or a value ONNX Runtime's constant folding computes from initializers.
    pub(crate) constant: bool,
}

impl ValueInfo {
    pub(crate) fn is_static(&self) -> bool {
        matches!(&self.shape, Some(d) if d.iter().all(|x| x.is_some()))
    }
    pub(crate) fn static_dims(&self) -> Option<Vec<i64>> {
        self.shape.as_ref()?.iter().copied().collect()
    }
    pub(crate) fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(|s| s.len())
    }
}

pub(crate) const UNKNOWN: ValueInfo = ValueInfo {
    dtype: 0,
    shape: None,
    ints: None,
    constant: false,
};

pub(crate) fn dtype_name(t: i32) -> &'static str {
    match t {
        0 => "unknown",
        FLOAT => "float32",
        UINT8 => "uint8",
        3 => "int8",
        INT32 => "int32",
        INT64 => "int64",
        BOOL => "bool",
        FLOAT16 => "float16",
        16 => "bfloat16",
        _ => "other",
    }
}

pub(crate) fn fmt_dims(shape: &Option<Dims>) -> String {
    match shape {
        None => "[unknown rank]".into(),
        Some(d) => format!(
            "[{}]",
            d.iter()
                .map(|x| x.map_or("?".to_string(), |v| v.to_string()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn initializer_ints(t: &TensorProto) -> Option<Vec<i64>> {
    if t.data_location == DATA_LOCATION_EXTERNAL || t.raw_data.is_empty() {
        return None;
    }
    match t.data_type {
        INT64 => Some(
            t.raw_data
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ),
        INT32 => Some(
            t.raw_data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
        ),
        _ => None,
    }
}

/// The element type and shape a `ValueInfoProto` records (a `dim_param` or an unset dim is
/// dynamic).
fn value_info_dims(vi: &ValueInfoProto) -> (i32, Option<Dims>) {
    let Some(t) = vi.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()) else {
        return (0, None);
    };
    let shape = t.shape.as_ref().map(|s| {
        s.dim
            .iter()
            .map(|d| match &d.value {
                Some(DimensionValue::DimValue(v)) => Some(*v),
                _ => None,
            })
            .collect()
    });
    (t.elem_type, shape)
}

pub(crate) fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

pub(crate) fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}
pub(crate) fn attr_i(node: &NodeProto, name: &str) -> Option<i64> {
    attr(node, name).map(|a| a.i)
}
pub(crate) fn attr_ints<'a>(node: &'a NodeProto, name: &str) -> Option<&'a [i64]> {
    attr(node, name).map(|a| a.ints.as_slice())
}
pub(crate) fn attr_s(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).to_string())
}

/// The graph being checked: every value's recorded type and shape, which nodes constant
/// folding removes, and who consumes what.
pub(crate) struct Graph<'a> {
    pub(crate) nodes: &'a [NodeProto],
    pub(crate) values: HashMap<String, ValueInfo>,
    /// Per node: computed from constants only, so folded away before partitioning.
    pub(crate) folded: Vec<bool>,
    pub(crate) consumers: HashMap<String, Vec<usize>>,
    pub(crate) graph_inputs: HashMap<String, i32>,
    pub(crate) graph_outputs: HashMap<String, i32>,
    pub(crate) opset: i64,
    pub(crate) opts: CheckOptions,
}

impl<'a> Graph<'a> {
    pub(crate) fn new(g: &'a GraphProto, opset: i64, opts: CheckOptions) -> Self {
        let mut values: HashMap<String, ValueInfo> = HashMap::new();
        for t in &g.initializer {
            values.insert(
                t.name.clone(),
                ValueInfo {
                    dtype: t.data_type,
                    shape: Some(t.dims.iter().map(|&d| Some(d)).collect()),
                    ints: initializer_ints(t),
                    constant: true,
                },
            );
        }
        // An initializer listed as a graph input too keeps its initializer record.
        for vi in g.input.iter().chain(&g.value_info).chain(&g.output) {
            if values.get(&vi.name).is_some_and(|v| v.constant) {
                continue;
            }
            let (dtype, shape) = value_info_dims(vi);
            values.insert(
                vi.name.clone(),
                ValueInfo {
                    dtype,
                    shape,
                    ..Default::default()
                },
            );
        }
        let is_initializer = |name: &str| g.initializer.iter().any(|t| t.name == name);
        let graph_inputs = g
            .input
            .iter()
            .filter(|vi| !is_initializer(&vi.name))
            .map(|vi| (vi.name.clone(), value_info_dims(vi).0))
            .collect();
        let graph_outputs = g
            .output
            .iter()
            .map(|vi| (vi.name.clone(), value_info_dims(vi).0))
            .collect();
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, n) in g.node.iter().enumerate() {
            for inp in n.input.iter().filter(|s| !s.is_empty()) {
                let c = consumers.entry(inp.clone()).or_default();
                if !c.contains(&i) {
                    c.push(i);
                }
            }
        }
        // ONNX Runtime's constant folding (a level 1 optimisation, run before partitioning)
        // computes a default-domain node whose inputs are all constants, and `Shape` of a
        // static tensor; their outputs become initializers. In graph order (the builder writes
        // nodes topologically), so folding carries through chains of such nodes.
        let mut folded = Vec::with_capacity(g.node.len());
        for n in &g.node {
            let get = |name: &str| values.get(name).unwrap_or(&UNKNOWN);
            let default_domain = n.domain.is_empty();
            let constant = default_domain
                && ((n.op_type == "Shape" && n.input.first().is_some_and(|x| get(x).is_static()))
                    || (!n.input.is_empty()
                        && n.input.iter().all(|x| x.is_empty() || get(x).constant)));
            if constant {
                for o in n.output.iter().filter(|o| !o.is_empty()) {
                    values.entry(o.clone()).or_default().constant = true;
                }
            }
            folded.push(constant && !n.output.is_empty());
        }
        Self {
            nodes: &g.node,
            values,
            folded,
            consumers,
            graph_inputs,
            graph_outputs,
            opset,
            opts,
        }
    }

    /// The value called `name` (unknown type and shape when the model does not describe it).
    pub(crate) fn get(&self, name: &str) -> &ValueInfo {
        self.values.get(name).unwrap_or(&UNKNOWN)
    }
}
