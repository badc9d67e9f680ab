//! The rule table: the provider-wide rules and, per op type with a CoreML op builder, the
//! conditions of its `IsOpSupportedImpl` / `HasSupportedInputsImpl`, each naming the onnxruntime
//! file and function it comes from.

use crate::graph::{
    attr, attr_i, attr_ints, attr_s, dtype_name, fmt_dims, norm_axis, Dims, Graph, ValueInfo, BOOL,
    FLOAT, FLOAT16, INT32, INT64, UNKNOWN,
};
use dia_graphs::onnx::NodeProto;

pub(crate) const HELPER: &str =
    "onnxruntime/core/providers/coreml/builders/helper.cc: IsInputSupported";
pub(crate) const FACTORY: &str =
    "onnxruntime/core/providers/coreml/builders/op_builder_factory.cc: CreateOpBuilderRegistrations";
pub(crate) const DTYPE: &str =
    "onnxruntime/core/providers/coreml/builders/impl/base_op_builder.cc: BaseOpBuilder::IsInputDtypeSupport";
const BASE: &str =
    "onnxruntime/core/providers/coreml/builders/impl/base_op_builder.cc: BaseOpBuilder::IsOpSupported";
pub(crate) const BOUNDARY: &str =
    "onnxruntime/core/providers/coreml/builders/model_builder.cc: ModelBuilder::RegisterModelInputOutput";
pub(crate) const OPSET: &str =
    "onnxruntime/core/providers/coreml/builders/impl/base_op_builder.cc: BaseOpBuilder::HasSupportedOpSet";

#[derive(Clone, Copy, Debug)]
pub struct GeneralRule {
    pub id: &'static str,
    pub rule: &'static str,
    pub source: &'static str,
}

/// The provider-wide rules, as checked by [`check_model`](crate::check_model).
pub const GENERAL_RULES: &[GeneralRule] = &[
    GeneralRule {
        id: "builder",
        rule: "the op type (default ONNX domain) has a registered CoreML op builder",
        source: "onnxruntime/core/providers/coreml/builders/op_builder_factory.cc: CreateOpBuilderRegistrations; helper.cc: GetOpBuilder",
    },
    GeneralRule {
        id: "mlprogram",
        rule: "with the ML Program format the builder must support ML Program (SupportsMLProgram)",
        source: BASE,
    },
    GeneralRule {
        id: "opset",
        rule: "the node's opset is within the builder's [GetMinSupportedOpSet, GetMaxSupportedOpSet]",
        source: "onnxruntime/core/providers/coreml/builders/impl/base_op_builder.cc: BaseOpBuilder::HasSupportedOpSet",
    },
    GeneralRule {
        id: "shape",
        rule: "every input has a known shape (at least a known rank)",
        source: HELPER,
    },
    GeneralRule {
        id: "static",
        rule: "every input dim is static (RequireStaticInputShapes; always on for the coreml target)",
        source: HELPER,
    },
    GeneralRule {
        id: "empty",
        rule: "no input dim is 0 (empty tensors are not supported)",
        source: HELPER,
    },
    GeneralRule {
        id: "rank",
        rule: "no input has rank > 5",
        source: HELPER,
    },
    GeneralRule {
        id: "dtype",
        rule: "unless the builder overrides HasSupportedInputsImpl, input 0 is float32 (or float16 with ML Program)",
        source: DTYPE,
    },
    GeneralRule {
        id: "boundary",
        rule: "a CoreML partition's inputs/outputs (here: the graph's) are float32, float16, int32 or int64 (int64 passed as int32); no bool",
        source: BOUNDARY,
    },
];

/// How a builder checks input types (its `HasSupportedInputsImpl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtypeRule {
    /// The default: input 0 is float32, or float16 with ML Program.
    Input0Float,
    /// The builder's own check, in [`OpRule::check`].
    Custom,
}

/// One op type the provider has a builder for, with its conditions.
#[derive(Clone, Copy)]
pub struct OpRule {
    pub op_type: &'static str,
    /// The builder file and class the conditions come from.
    pub source: &'static str,
    /// `GetMinSupportedOpSet` (default 1).
    pub min_opset: i64,
    /// ML Program only (the builder's `IsOpSupportedImpl` rejects NeuralNetwork); informational
    /// since the coreml target always builds an ML Program.
    pub mlprogram_only: bool,
    pub dtype: DtypeRule,
    /// The conditions in words.
    pub conditions: &'static str,
    /// The conditions in code (beyond the general rules and [`OpRule::dtype`]).
    pub check: fn(&NodeView) -> Vec<String>,
}

impl std::fmt::Debug for OpRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpRule")
            .field("op_type", &self.op_type)
            .field("source", &self.source)
            .field("conditions", &self.conditions)
            .finish()
    }
}

fn no_check(_: &NodeView) -> Vec<String> {
    Vec::new()
}

/// Every op type the provider has a builder for that our graphs may use, or that could replace
/// one of ours, with its ML Program conditions.
pub const OP_RULES: &[OpRule] = &[
    OpRule {
        op_type: "Add",
        source: "onnxruntime/core/providers/coreml/builders/impl/binary_op_builder.cc: BinaryOpBuilder::HasSupportedInputsImpl",
        min_opset: 7,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "opset >= 7; input 0 float32/float16 (no int64 arithmetic)",
        check: no_check,
    },
    OpRule {
        op_type: "Sub",
        source: "onnxruntime/core/providers/coreml/builders/impl/binary_op_builder.cc: BinaryOpBuilder::HasSupportedInputsImpl",
        min_opset: 7,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "opset >= 7; input 0 float32/float16",
        check: no_check,
    },
    OpRule {
        op_type: "Mul",
        source: "onnxruntime/core/providers/coreml/builders/impl/binary_op_builder.cc: BinaryOpBuilder::HasSupportedInputsImpl",
        min_opset: 7,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "opset >= 7; input 0 float32/float16",
        check: no_check,
    },
    OpRule {
        op_type: "Div",
        source: "onnxruntime/core/providers/coreml/builders/impl/binary_op_builder.cc: BinaryOpBuilder::HasSupportedInputsImpl",
        min_opset: 7,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "opset >= 7; input 0 float32/float16 (lowered to real_div)",
        check: no_check,
    },
    OpRule {
        op_type: "Max",
        source: "onnxruntime/core/providers/coreml/builders/impl/binary_op_builder.cc: BinaryOpBuilder::HasSupportedInputsImpl",
        min_opset: 7,
        mlprogram_only: true,
        dtype: DtypeRule::Input0Float,
        conditions: "ML Program only; input 0 float32/float16 (variadic lowered to chained maximum)",
        check: no_check,
    },
    OpRule {
        op_type: "Pow",
        source: "onnxruntime/core/providers/coreml/builders/impl/binary_op_builder.cc: BinaryOpBuilder::HasSupportedInputsImpl",
        min_opset: 7,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "both inputs of the same type; input 0 float32/float16",
        check: check_pow,
    },
    OpRule {
        op_type: "Sqrt",
        source: "onnxruntime/core/providers/coreml/builders/impl/unary_op_builder.cc: UnaryOpBuilder",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16",
        check: no_check,
    },
    OpRule {
        op_type: "Reciprocal",
        source: "onnxruntime/core/providers/coreml/builders/impl/unary_op_builder.cc: UnaryOpBuilder",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16; lowered to MIL inverse with epsilon 1e-4, i.e. 1/(x+1e-4)",
        check: no_check,
    },
    OpRule {
        op_type: "Sin",
        source: "onnxruntime/core/providers/coreml/builders/impl/unary_op_builder.cc: UnaryOpBuilder::IsOpSupportedImpl (PR #28596)",
        min_opset: 1,
        mlprogram_only: true,
        dtype: DtypeRule::Input0Float,
        conditions: "ML Program only; input 0 float32/float16",
        check: no_check,
    },
    OpRule {
        op_type: "Cos",
        source: "onnxruntime/core/providers/coreml/builders/impl/unary_op_builder.cc: UnaryOpBuilder::IsOpSupportedImpl (PR #28596)",
        min_opset: 1,
        mlprogram_only: true,
        dtype: DtypeRule::Input0Float,
        conditions: "ML Program only; input 0 float32/float16",
        check: no_check,
    },
    OpRule {
        op_type: "Erf",
        source: "onnxruntime/core/providers/coreml/builders/impl/unary_op_builder.cc: UnaryOpBuilder::IsOpSupportedImpl",
        min_opset: 1,
        mlprogram_only: true,
        dtype: DtypeRule::Input0Float,
        conditions: "ML Program only; input 0 float32/float16",
        check: no_check,
    },
    OpRule {
        op_type: "Sigmoid",
        source: "onnxruntime/core/providers/coreml/builders/impl/activation_op_builder.cc: ActivationOpBuilder",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16",
        check: no_check,
    },
    OpRule {
        op_type: "Tanh",
        source: "onnxruntime/core/providers/coreml/builders/impl/activation_op_builder.cc: ActivationOpBuilder",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16",
        check: no_check,
    },
    OpRule {
        op_type: "Relu",
        source: "onnxruntime/core/providers/coreml/builders/impl/activation_op_builder.cc: ActivationOpBuilder",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16",
        check: no_check,
    },
    OpRule {
        op_type: "Where",
        source: "onnxruntime/core/providers/coreml/builders/impl/where_op_builder.cc: WhereOpBuilder::HasSupportedInputsImpl (PR #28597)",
        min_opset: 1,
        mlprogram_only: true,
        dtype: DtypeRule::Custom,
        conditions: "ML Program only; condition bool; X and Y float32/float16 of one type",
        check: check_where,
    },
    OpRule {
        op_type: "Cast",
        source: "onnxruntime/core/providers/coreml/builders/impl/cast_op_builder.cc: CastOpBuilder::HasSupportedInputsImpl (bool: PR #28595)",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Custom,
        conditions: "input and output types in {float32, float16, int32, int64, bool}",
        check: check_cast,
    },
    OpRule {
        op_type: "Softmax",
        source: "onnxruntime/core/providers/coreml/builders/impl/softmax_op_builder.cc: SoftmaxOpBuilder::IsOpSupportedImpl",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16 with a static, non-empty shape",
        check: check_softmax,
    },
    OpRule {
        op_type: "ReduceMean",
        source: "onnxruntime/core/providers/coreml/builders/impl/reduction_op_builder.cc: ReductionOpBuilder::IsOpSupportedImpl",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16; 'axes' input (if any) a constant initializer",
        check: check_reduce,
    },
    OpRule {
        op_type: "ReduceSum",
        source: "onnxruntime/core/providers/coreml/builders/impl/reduction_op_builder.cc: ReductionOpBuilder::IsOpSupportedImpl",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16; 'axes' input (if any) a constant initializer",
        check: check_reduce,
    },
    OpRule {
        op_type: "ReduceMax",
        source: "onnxruntime/core/providers/coreml/builders/impl/reduction_op_builder.cc: ReductionOpBuilder::IsOpSupportedImpl",
        min_opset: 1,
        mlprogram_only: true,
        dtype: DtypeRule::Input0Float,
        conditions: "ML Program only; input 0 float32/float16; 'axes' a constant initializer",
        check: check_reduce,
    },
    OpRule {
        op_type: "ArgMax",
        source: "onnxruntime/core/providers/coreml/builders/impl/argmax_op_builder.cc: ArgMaxOpBuilder::IsOpSupportedImpl",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16; select_last_index 0; exactly one consuming node, and a consuming Cast must cast to int32",
        check: check_argmax,
    },
    OpRule {
        op_type: "MatMul",
        source: "onnxruntime/core/providers/coreml/builders/impl/gemm_op_builder.cc: GemmOpBuilder::IsOpSupportedImpl",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16; with ML Program B may be non-constant and any rank (numpy semantics)",
        check: no_check,
    },
    OpRule {
        op_type: "Conv",
        source: "onnxruntime/core/providers/coreml/builders/impl/conv_op_builder.cc: ConvOpBuilder::IsOpSupportedImpl",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16; 1-D or 2-D (weight rank 3 or 4); bias a constant initializer; kernel_shape matches the weight; no dim > 16384 in input or weight (CheckShapeForConvMemoryLimit, PR #24594)",
        check: check_conv,
    },
    OpRule {
        op_type: "ConvTranspose",
        source: "onnxruntime/core/providers/coreml/builders/impl/convtranspose_op_builder.cc: ConvTransposeOpBuilder::IsOpSupportedImpl",
        min_opset: 1,
        mlprogram_only: true,
        dtype: DtypeRule::Input0Float,
        conditions: "ML Program only; input 0 float32/float16; weight and bias constant initializers; no dim > 16384 in input or weight; auto_pad not SAME_*; all pads equal; kernel_shape matches the weight; no output_shape; output_padding all 0",
        check: check_conv_transpose,
    },
    OpRule {
        op_type: "Reshape",
        source: "onnxruntime/core/providers/coreml/builders/impl/reshape_op_builder.cc: ReshapeOpBuilder::IsOpSupportedImpl",
        min_opset: 5,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "opset >= 5; input 0 float32/float16; 'shape' a non-empty constant initializer of rank <= 5; no 0 with allowzero; no 0 where the input dim is dynamic",
        check: check_reshape,
    },
    OpRule {
        op_type: "Slice",
        source: "onnxruntime/core/providers/coreml/builders/impl/slice_op_builder.cc: SliceOpBuilder::IsOpSupportedImpl",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Custom,
        conditions: "input 0 float32 or int64 (float16 from CoreML 6); static input shape; starts/ends/axes/steps constant initializers; no empty slice",
        check: check_slice,
    },
    OpRule {
        op_type: "Shape",
        source: "onnxruntime/core/providers/coreml/builders/impl/shape_op_builder.cc: ShapeOpBuilder::HasSupportedInputsImpl",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Custom,
        conditions: "input 0 float32, float16 or int32 (not int64); start/end slice not empty",
        check: check_shape,
    },
    OpRule {
        op_type: "Transpose",
        source: "onnxruntime/core/providers/coreml/builders/impl/transpose_op_builder.cc: TransposeOpBuilder::IsOpSupportedImpl",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16 of rank <= 5 (6 only with perm[0..2] = [0, 1])",
        check: no_check,
    },
    OpRule {
        op_type: "Unsqueeze",
        source: "onnxruntime/core/providers/coreml/builders/impl/squeeze_op_builder.cc: SqueezeOpBuilder::IsOpSupportedImpl",
        min_opset: 1,
        mlprogram_only: true,
        dtype: DtypeRule::Input0Float,
        conditions: "ML Program only; input 0 float32/float16; 'axes' a constant initializer; output rank <= 5",
        check: check_unsqueeze,
    },
    OpRule {
        op_type: "Squeeze",
        source: "onnxruntime/core/providers/coreml/builders/impl/squeeze_op_builder.cc: SqueezeOpBuilder::IsOpSupportedImpl",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16; 'axes' a constant initializer",
        check: check_squeeze,
    },
    OpRule {
        op_type: "Concat",
        source: "onnxruntime/core/providers/coreml/builders/impl/concat_op_builder.cc: ConcatOpBuilder::IsOpSupportedImpl",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16; at least 2 inputs",
        check: check_concat,
    },
    OpRule {
        op_type: "Split",
        source: "onnxruntime/core/providers/coreml/builders/impl/split_op_builder.cc: SplitOpBuilder::IsOpSupportedImpl",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16; 'split' a constant initializer of >= 2 non-zero sizes summing to the (static) split dim; opset 18 needs num_outputs >= 2",
        check: check_split,
    },
    OpRule {
        op_type: "Gather",
        source: "onnxruntime/core/providers/coreml/builders/impl/gather_op_builder.cc: GatherOpBuilder::IsOpSupportedImpl (ML Program: PR #24387, #26442, #28278)",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Custom,
        conditions: "data float32 or int64 (float16 from CoreML 6); output rank <= 5; scalar indices only with static data of rank <= 4",
        check: check_gather,
    },
    OpRule {
        op_type: "Identity",
        source: "onnxruntime/core/providers/coreml/builders/impl/identity_op_builder.cc: IdentityOpBuilder (PR #28293)",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16",
        check: no_check,
    },
    OpRule {
        op_type: "Tile",
        source: "onnxruntime/core/providers/coreml/builders/impl/tile_op_builder.cc: TileOpBuilder (PR #28293)",
        min_opset: 1,
        mlprogram_only: false,
        dtype: DtypeRule::Input0Float,
        conditions: "input 0 float32/float16 of rank <= 5; 'repeats' constant (runtime repeats with ML Program)",
        check: no_check,
    },
];

/// Op types our graphs use that have no CoreML builder, with what is known about them.
pub const NO_BUILDER_NOTES: &[(&str, &str)] = &[
    ("Less", "no Less builder"),
    (
        "Equal",
        "no Equal builder (proposed in onnxruntime PR #28807, not merged)",
    ),
    ("Neg", "no Neg builder (PR #28809 was closed unmerged)"),
    (
        "ReduceL2",
        "no ReduceL2 builder (only ReduceMean/Sum/Max/Min/Prod are registered)",
    ),
    (
        "Expand",
        "no Expand builder (proposed in onnxruntime PR #27681, not merged)",
    ),
    ("MatMulNBits", "com.microsoft contrib op: no CoreML builder"),
    ("ScatterElements", "no ScatterElements builder"),
    ("ScatterND", "no ScatterND builder"),
];

/// The rule for `op_type`, if the provider has a builder for it.
pub fn op_rule(op_type: &str) -> Option<&'static OpRule> {
    OP_RULES.iter().find(|r| r.op_type == op_type)
}

/// One node seen through the recorded values of its graph; what [`OpRule::check`] gets.
pub struct NodeView<'a> {
    pub(crate) graph: &'a Graph<'a>,
    pub(crate) node: &'a NodeProto,
}

impl NodeView<'_> {
    fn name(&self, i: usize) -> Option<&str> {
        self.node
            .input
            .get(i)
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
    }
    pub(crate) fn input(&self, i: usize) -> &ValueInfo {
        self.name(i).map_or(&UNKNOWN, |n| self.graph.get(n))
    }
    pub(crate) fn has_input(&self, i: usize) -> bool {
        self.name(i).is_some()
    }
    pub(crate) fn ints(&self, i: usize) -> Option<&[i64]> {
        self.input(i).ints.as_deref()
    }
    pub(crate) fn is_const(&self, i: usize) -> bool {
        self.input(i).constant
    }
    pub(crate) fn dtype(&self, i: usize) -> i32 {
        self.input(i).dtype
    }
    pub(crate) fn label(&self, i: usize) -> String {
        format!("`{}`", self.name(i).unwrap_or("<none>"))
    }
    pub(crate) fn not_const(&self, i: usize, what: &str) -> String {
        format!(
            "{what} input {} is not a constant initializer",
            self.label(i)
        )
    }
}

fn check_pow(v: &NodeView) -> Vec<String> {
    if v.dtype(0) != v.dtype(1) {
        vec![format!(
            "Pow inputs differ in type ({} vs {})",
            dtype_name(v.dtype(0)),
            dtype_name(v.dtype(1))
        )]
    } else {
        Vec::new()
    }
}

pub(crate) fn is_float(t: i32) -> bool {
    t == FLOAT || t == FLOAT16
}

fn check_where(v: &NodeView) -> Vec<String> {
    let mut out = Vec::new();
    if v.dtype(0) != BOOL {
        out.push(format!(
            "condition {} is {}, not bool",
            v.label(0),
            dtype_name(v.dtype(0))
        ));
    }
    let (x, y) = (v.dtype(1), v.dtype(2));
    if !is_float(x) || x != y {
        out.push(format!(
            "X and Y must both be float32 or float16 (got {} and {})",
            dtype_name(x),
            dtype_name(y)
        ));
    }
    out
}

fn check_cast(v: &NodeView) -> Vec<String> {
    let ok = |t: i32| matches!(t, FLOAT | FLOAT16 | INT32 | INT64 | BOOL);
    let to = attr_i(v.node, "to").unwrap_or(0) as i32;
    let mut out = Vec::new();
    if !ok(v.dtype(0)) {
        out.push(format!(
            "Cast from {} is not supported",
            dtype_name(v.dtype(0))
        ));
    }
    if !ok(to) {
        out.push(format!("Cast to {} is not supported", dtype_name(to)));
    }
    out
}

fn check_softmax(v: &NodeView) -> Vec<String> {
    let x = v.input(0);
    if !x.is_static() {
        vec![format!(
            "Softmax needs a static input shape, {} is {}",
            v.label(0),
            fmt_dims(&x.shape)
        )]
    } else if x.static_dims().unwrap().contains(&0) {
        vec!["Softmax input is empty".into()]
    } else {
        Vec::new()
    }
}

fn check_reduce(v: &NodeView) -> Vec<String> {
    if v.has_input(1) && !v.is_const(1) {
        vec![v.not_const(1, "'axes'")]
    } else {
        Vec::new()
    }
}

fn check_argmax(v: &NodeView) -> Vec<String> {
    let mut out = Vec::new();
    if attr_i(v.node, "select_last_index").unwrap_or(0) != 0 {
        out.push("select_last_index must be 0".into());
    }
    let consumers: Vec<usize> = v
        .node
        .output
        .iter()
        .flat_map(|o| v.graph.consumers.get(o).cloned().unwrap_or_default())
        .collect();
    match consumers.as_slice() {
        [one] => {
            let c = &v.graph.nodes[*one];
            if c.op_type == "Cast" && attr_i(c, "to") != Some(INT32 as i64) {
                out.push(format!(
                    "the consuming Cast `{}` must cast to int32 (ML Program argmax output is int32)",
                    c.name
                ));
            }
        }
        other => out.push(format!(
            "ML Program ArgMax needs exactly one consuming node, it has {}",
            other.len()
        )),
    }
    out
}

const CONV_LIMIT: i64 = 16384;

fn conv_limit(v: &NodeView, out: &mut Vec<String>) {
    for i in [0, 1] {
        if let Some(d) = &v.input(i).shape {
            if d.iter().flatten().any(|&x| x > CONV_LIMIT) {
                out.push(format!(
                    "{} {} has a dim > {CONV_LIMIT} (CoreML convolution memory limit)",
                    v.label(i),
                    fmt_dims(&v.input(i).shape)
                ));
            }
        }
    }
}

fn kernel_matches(v: &NodeView, out: &mut Vec<String>) {
    if let (Some(ks), Some(w)) = (attr_ints(v.node, "kernel_shape"), &v.input(1).shape) {
        let spatial: Dims = w.iter().skip(2).copied().collect();
        let ks: Dims = ks.iter().map(|&k| Some(k)).collect();
        if ks != spatial {
            out.push("kernel_shape attribute does not match the weight shape".into());
        }
    }
}

fn check_conv(v: &NodeView) -> Vec<String> {
    let mut out = Vec::new();
    match v.input(1).rank() {
        Some(3) | Some(4) => {}
        r => out.push(format!(
            "only 1-D and 2-D Conv are supported (weight rank {})",
            r.map_or("unknown".into(), |r| r.to_string())
        )),
    }
    if v.has_input(2) && !v.is_const(2) {
        out.push(v.not_const(2, "bias"));
    }
    if attr_s(v.node, "auto_pad").as_deref() == Some("SAME_LOWER")
        && v.graph.opts.coreml_version < 6
    {
        out.push("auto_pad SAME_LOWER needs CoreML 6".into());
    }
    kernel_matches(v, &mut out);
    conv_limit(v, &mut out);
    out
}

fn check_conv_transpose(v: &NodeView) -> Vec<String> {
    let mut out = Vec::new();
    if !v.is_const(1) {
        out.push(v.not_const(1, "weight"));
    }
    if v.has_input(2) && !v.is_const(2) {
        out.push(v.not_const(2, "bias"));
    }
    conv_limit(v, &mut out);
    match attr_s(v.node, "auto_pad").as_deref() {
        Some("SAME_UPPER") | Some("SAME_LOWER") => {
            out.push("auto_pad SAME_UPPER/SAME_LOWER is not supported".into())
        }
        Some("VALID") => {}
        _ => {
            if let Some(p) = attr_ints(v.node, "pads") {
                if p.iter().any(|&x| x != p[0]) {
                    out.push(format!("all pads must be equal (pads {p:?})"));
                }
            }
        }
    }
    kernel_matches(v, &mut out);
    if attr(v.node, "output_shape").is_some() {
        out.push("output_shape is not supported".into());
    }
    if attr_ints(v.node, "output_padding").is_some_and(|p| p.iter().any(|&x| x != 0)) {
        out.push("output_padding must be 0".into());
    }
    out
}

fn check_reshape(v: &NodeView) -> Vec<String> {
    if !v.is_const(1) {
        return vec![v.not_const(1, "'shape'")];
    }
    let Some(shape) = v.ints(1) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if shape.is_empty() {
        out.push("the new shape is empty".into());
    }
    if shape.len() > 5 {
        out.push(format!("new shape {shape:?} has rank > 5"));
    }
    if attr_i(v.node, "allowzero") == Some(1) && shape.contains(&0) {
        out.push("0 in the new shape with allowzero".into());
    }
    if let Some(x) = &v.input(0).shape {
        if shape.iter().zip(x).any(|(&s, d)| s == 0 && d.is_none()) {
            out.push("0 in the new shape where the input dim is dynamic".into());
        }
    }
    out
}

/// Slice and Gather take float32 or int64 input 0, and float16 from Core ML 6 on.
fn float_int64_or_f16(v: &NodeView, what: &str) -> Option<String> {
    let t = v.dtype(0);
    let f16_ok = t == FLOAT16 && v.graph.opts.coreml_version >= 6;
    (t != FLOAT && t != INT64 && !f16_ok).then(|| {
        format!(
            "{what} {} is {}, not float32/int64/float16",
            v.label(0),
            dtype_name(t)
        )
    })
}

fn check_slice(v: &NodeView) -> Vec<String> {
    let mut out: Vec<String> = float_int64_or_f16(v, "input 0").into_iter().collect();
    let x = v.input(0);
    if !x.is_static() {
        out.push(format!(
            "Slice needs a static input shape, {} is {}",
            v.label(0),
            fmt_dims(&x.shape)
        ));
    }
    for (i, what) in [
        (1, "'starts'"),
        (2, "'ends'"),
        (3, "'axes'"),
        (4, "'steps'"),
    ] {
        if v.has_input(i) && !v.is_const(i) {
            out.push(v.not_const(i, what));
        }
    }
    let out_shape = v
        .node
        .output
        .first()
        .and_then(|o| v.graph.get(o).static_dims());
    if out_shape.is_some_and(|d| d.contains(&0)) {
        out.push("the slice is empty".into());
    }
    out
}

fn check_shape(v: &NodeView) -> Vec<String> {
    let t = v.dtype(0);
    if !matches!(t, FLOAT | FLOAT16 | INT32) {
        vec![format!(
            "Shape of {} ({}): ML Program Shape takes float32, float16 or int32 input",
            v.label(0),
            dtype_name(t)
        )]
    } else {
        Vec::new()
    }
}

fn check_unsqueeze(v: &NodeView) -> Vec<String> {
    let mut out = Vec::new();
    let n_axes = if v.has_input(1) {
        if !v.is_const(1) {
            out.push(v.not_const(1, "'axes'"));
        }
        v.ints(1).map(|a| a.len())
    } else {
        attr_ints(v.node, "axes").map(|a| a.len())
    };
    if let (Some(r), Some(n)) = (v.input(0).rank(), n_axes) {
        if r + n > 5 {
            out.push(format!("output rank {} > 5", r + n));
        }
    }
    out
}

fn check_squeeze(v: &NodeView) -> Vec<String> {
    if v.has_input(1) && !v.is_const(1) {
        vec![v.not_const(1, "'axes'")]
    } else {
        Vec::new()
    }
}

fn check_concat(v: &NodeView) -> Vec<String> {
    if v.node.input.len() < 2 {
        vec![format!(
            "Concat needs 2+ inputs, it has {}",
            v.node.input.len()
        )]
    } else {
        Vec::new()
    }
}

fn check_split(v: &NodeView) -> Vec<String> {
    let mut out = Vec::new();
    let x = v.input(0);
    let axis = attr_i(v.node, "axis").unwrap_or(0);
    let dim = x
        .shape
        .as_ref()
        .and_then(|s| norm_axis(axis, s.len()).map(|a| s[a]));
    if v.has_input(1) {
        if !v.is_const(1) {
            out.push(v.not_const(1, "'split'"));
        }
        if let Some(sizes) = v.ints(1) {
            if sizes.len() < 2 {
                out.push("Split must produce at least 2 outputs".into());
            }
            if sizes.contains(&0) {
                out.push("a split size is 0".into());
            }
            match dim {
                Some(Some(d)) if d != sizes.iter().sum::<i64>() => {
                    out.push(format!("split sizes {sizes:?} do not sum to {d}"))
                }
                Some(None) => out.push("the split dim is dynamic".into()),
                _ => {}
            }
        }
    } else if v.graph.opset >= 18 {
        match attr_i(v.node, "num_outputs") {
            Some(n) if n >= 2 && n as usize == v.node.output.len() => {}
            _ => out.push("opset 18 Split needs num_outputs >= 2 matching the outputs".into()),
        }
    }
    out
}

fn check_gather(v: &NodeView) -> Vec<String> {
    let mut out: Vec<String> = float_int64_or_f16(v, "data").into_iter().collect();
    let (data, idx) = (v.input(0), v.input(1));
    if let (Some(dr), Some(ir)) = (data.rank(), idx.rank()) {
        if ir == 0 && (!data.is_static() || dr > 4) {
            out.push("scalar indices need static data of rank <= 4".into());
        }
        if dr + ir > 6 {
            out.push(format!("output rank {} > 5", dr + ir - 1));
        }
    }
    out
}
