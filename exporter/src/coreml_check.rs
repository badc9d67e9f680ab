//! `dia-export check BUNDLE --ep coreml`: which nodes of a bundle's graphs ONNX Runtime's CoreML
//! execution provider (ML Program format) would not take, and why.
//!
//! The provider decides per node (`CoreMLExecutionProvider::GetCapability` ->
//! `coreml::GetSupportedNodes` -> `IOpBuilder::IsOpSupported`): a node is taken when an op builder
//! is registered for its type, the builder supports ML Program, every input passes the general
//! checks (`helper.cc: IsInputSupported`), the input types pass the builder's
//! `HasSupportedInputsImpl` and its `IsOpSupportedImpl` accepts the attributes and shapes. This
//! module keeps those rules in code, one [`OpRule`] per op type that has a builder plus the
//! [`GENERAL_RULES`], each naming the onnxruntime file and function it comes from, and checks
//! them against our prost [`ModelProto`] with a small shape/type inference over the ops our
//! graphs use (our graphs carry value_info for graph inputs and outputs only).
//!
//! The rules are those of onnxruntime `main` as of mid-2026, the newest sources available when
//! they were written (the code ORT 1.31 is cut from; re-check on upgrades): on top
//! of the long-standing builders they include the ML Program Gather (PR #24387, fp16 #26442,
//! scalar indices #28278), the 16384-dim limit moved to Conv/ConvTranspose (#24594), Identity
//! (#28293), bool Cast (#28595), Sin/Cos (#28596) and Where (#28597). Builders that were only
//! proposed (Equal #28807, Expand #27681) or closed (Neg #28809) count as missing.
//!
//! Beyond the provider's own rules, the coreml target must have static shapes, so a dynamic
//! input dim is always reported (the provider's `RequireStaticInputShapes` option, which the
//! coreml target's session turns on). ONNX Runtime's basic (level 1) optimisations run before
//! partitioning and fold constant subgraphs, so a value computed only from initializers (or
//! from `Shape` of a static tensor) counts as a constant initializer here and the nodes
//! computing it are skipped (folded away before the provider sees them); no other rewrite is
//! simulated, so the check is a little stricter than the provider on graphs it would rewrite.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use dia_bundle::Manifest;
use dia_graphs::onnx::{DimensionValue, ModelProto, NodeProto, TensorProto};
use prost::Message;

/// The onnxruntime code the rules were taken from.
pub const ORT_REFERENCE: &str =
    "onnxruntime main as of mid-2026 (the newest sources available; ORT 1.31), CoreML EP, ML Program";

/// Execution providers `dia-export check --ep` knows.
pub const SUPPORTED_EPS: &[&str] = &["coreml"];

// `TensorProto.DataType` values.
const FLOAT: i32 = 1;
const UINT8: i32 = 2;
const INT32: i32 = 6;
const INT64: i32 = 7;
const BOOL: i32 = 9;
const FLOAT16: i32 = 10;

const HELPER: &str = "onnxruntime/core/providers/coreml/builders/helper.cc: IsInputSupported";
const FACTORY: &str =
    "onnxruntime/core/providers/coreml/builders/op_builder_factory.cc: CreateOpBuilderRegistrations";
const DTYPE: &str =
    "onnxruntime/core/providers/coreml/builders/impl/base_op_builder.cc: BaseOpBuilder::IsInputDtypeSupport";
const BASE: &str =
    "onnxruntime/core/providers/coreml/builders/impl/base_op_builder.cc: BaseOpBuilder::IsOpSupported";
const BOUNDARY: &str =
    "onnxruntime/core/providers/coreml/builders/model_builder.cc: ModelBuilder::RegisterModelInputOutput";

/// One node the provider would not take.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    pub node: String,
    pub op_type: String,
    /// Every rule the node fails, `; `-separated.
    pub reason: String,
    /// The onnxruntime file and function of each failed rule, `; `-separated.
    pub source: String,
}

/// What the check assumes about the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckOptions {
    /// Report every dynamic input dim: the coreml target is static (ORT's
    /// `RequireStaticInputShapes`, `COREML_FLAG_ONLY_ALLOW_STATIC_INPUT_SHAPES`).
    pub require_static_shapes: bool,
    /// CoreML version the model is built for (ORT's `coreml_version`: 6 = iOS 16 / macOS 13,
    /// 7 = iOS 17 / macOS 14); a few builders accept float16 only from 6 on.
    pub coreml_version: i32,
}

impl Default for CheckOptions {
    fn default() -> Self {
        Self {
            require_static_shapes: true,
            coreml_version: 7,
        }
    }
}

/// A provider-wide rule (not tied to one op type).
#[derive(Clone, Copy, Debug)]
pub struct GeneralRule {
    pub id: &'static str,
    pub rule: &'static str,
    pub source: &'static str,
}

/// The provider-wide rules, as checked by [`check_model`].
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

// ---------------------------------------------------------------------------------------------
// values: dtype, shape (None: unknown rank; a None dim: dynamic), known int values

type Dims = Vec<Option<i64>>;

#[derive(Clone, Debug, Default)]
struct ValueInfo {
    /// `TensorProto.DataType`; 0 when unknown.
    dtype: i32,
    shape: Option<Dims>,
    /// Values of a small integer tensor, when known at export time.
    ints: Option<Vec<i64>>,
    /// An initializer, or a value ONNX Runtime's constant folding computes from initializers.
    constant: bool,
}

impl ValueInfo {
    fn is_static(&self) -> bool {
        matches!(&self.shape, Some(d) if d.iter().all(|x| x.is_some()))
    }
    fn static_dims(&self) -> Option<Vec<i64>> {
        self.shape.as_ref()?.iter().copied().collect()
    }
    fn rank(&self) -> Option<usize> {
        self.shape.as_ref().map(|s| s.len())
    }
}

fn dtype_name(t: i32) -> &'static str {
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

fn fmt_dims(shape: &Option<Dims>) -> String {
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
    if t.data_location == dia_graphs::onnx::DATA_LOCATION_EXTERNAL || t.raw_data.is_empty() {
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

fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// Numpy broadcast; a dynamic dim against 1 stays dynamic.
fn broadcast(shapes: &[&Option<Dims>]) -> Option<Dims> {
    let shapes: Vec<&Dims> = shapes.iter().map(|s| s.as_ref()).collect::<Option<_>>()?;
    let rank = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    Some(
        (0..rank)
            .map(|i| {
                let dims: Vec<Option<i64>> = shapes
                    .iter()
                    .map(|s| {
                        let off = rank - s.len();
                        if i < off {
                            Some(1)
                        } else {
                            s[i - off]
                        }
                    })
                    .collect();
                if let Some(d) = dims.iter().flatten().find(|&&d| d != 1) {
                    Some(*d)
                } else if dims.iter().any(|d| d.is_none()) {
                    None
                } else {
                    Some(1)
                }
            })
            .collect(),
    )
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a dia_graphs::onnx::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}
fn attr_i(node: &NodeProto, name: &str) -> Option<i64> {
    attr(node, name).map(|a| a.i)
}
fn attr_ints<'a>(node: &'a NodeProto, name: &str) -> Option<&'a [i64]> {
    attr(node, name).map(|a| a.ints.as_slice())
}
fn attr_s(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).to_string())
}

/// Output size of a python-style slice `[start:end:step]` over `dim` elements.
fn slice_len(dim: i64, start: i64, end: i64, step: i64) -> i64 {
    if step > 0 {
        let c = |i: i64| if i < 0 { (i + dim).max(0) } else { i.min(dim) };
        let (s, e) = (c(start), c(end));
        ((e - s).max(0) + step - 1) / step
    } else {
        let c = |i: i64| {
            if i < 0 {
                (i + dim).max(-1)
            } else {
                i.min(dim - 1)
            }
        };
        let (s, e) = (c(start), c(end));
        ((s - e).max(0) + (-step) - 1) / (-step)
    }
}

/// The graph being checked: every value's inferred type and shape, and who consumes what.
struct Graph<'a> {
    nodes: &'a [NodeProto],
    values: HashMap<String, ValueInfo>,
    consumers: HashMap<String, Vec<usize>>,
    graph_inputs: HashMap<String, i32>,
    graph_outputs: HashMap<String, i32>,
    opset: i64,
    opts: CheckOptions,
}

/// One node seen through the inferred values of its graph; what [`OpRule::check`] gets.
pub struct NodeView<'a> {
    graph: &'a Graph<'a>,
    node: &'a NodeProto,
}

const UNKNOWN: ValueInfo = ValueInfo {
    dtype: 0,
    shape: None,
    ints: None,
    constant: false,
};

impl NodeView<'_> {
    fn name(&self, i: usize) -> Option<&str> {
        self.node
            .input
            .get(i)
            .map(|s| s.as_str())
            .filter(|s| !s.is_empty())
    }
    fn input(&self, i: usize) -> &ValueInfo {
        self.name(i)
            .and_then(|n| self.graph.values.get(n))
            .unwrap_or(&UNKNOWN)
    }
    fn has_input(&self, i: usize) -> bool {
        self.name(i).is_some()
    }
    fn ints(&self, i: usize) -> Option<&[i64]> {
        self.input(i).ints.as_deref()
    }
    fn is_const(&self, i: usize) -> bool {
        self.input(i).constant
    }
    fn dtype(&self, i: usize) -> i32 {
        self.input(i).dtype
    }
    fn label(&self, i: usize) -> String {
        format!("`{}`", self.name(i).unwrap_or("<none>"))
    }
    fn not_const(&self, i: usize, what: &str) -> String {
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

fn is_float(t: i32) -> bool {
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
        .and_then(|o| v.graph.values.get(o))
        .and_then(|o| o.static_dims());
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

// ---------------------------------------------------------------------------------------------
// shape and type inference over the ops our graphs use

fn same(x: &ValueInfo) -> ValueInfo {
    ValueInfo {
        dtype: x.dtype,
        shape: x.shape.clone(),
        ints: None,
        constant: false,
    }
}

fn reduced(shape: &Option<Dims>, axes: Option<&[i64]>, keepdims: bool) -> Option<Dims> {
    let s = shape.as_ref()?;
    let axes: Vec<usize> = match axes {
        Some(a) if !a.is_empty() => a.iter().filter_map(|&x| norm_axis(x, s.len())).collect(),
        Some(_) => (0..s.len()).collect(),
        None => return None,
    };
    Some(
        s.iter()
            .enumerate()
            .filter_map(|(i, &d)| {
                if axes.contains(&i) {
                    keepdims.then_some(Some(1))
                } else {
                    Some(d)
                }
            })
            .collect(),
    )
}

fn elementwise_ints(op: &str, a: &[i64], b: &[i64]) -> Option<Vec<i64>> {
    let n = a.len().max(b.len());
    if (a.len() != n && a.len() != 1) || (b.len() != n && b.len() != 1) {
        return None;
    }
    let at = |v: &[i64], i: usize| if v.len() == 1 { v[0] } else { v[i] };
    (0..n)
        .map(|i| {
            let (x, y) = (at(a, i), at(b, i));
            match op {
                "Add" => Some(x + y),
                "Sub" => Some(x - y),
                "Mul" => Some(x * y),
                _ => None,
            }
        })
        .collect()
}

impl Graph<'_> {
    fn get(&self, name: &str) -> &ValueInfo {
        self.values.get(name).unwrap_or(&UNKNOWN)
    }

    /// Output types/shapes of `node`.
    fn infer(&self, node: &NodeProto) -> Vec<ValueInfo> {
        let ins: Vec<&ValueInfo> = node
            .input
            .iter()
            .map(|n| if n.is_empty() { &UNKNOWN } else { self.get(n) })
            .collect();
        let inp = |i: usize| ins.get(i).copied().unwrap_or(&UNKNOWN);
        let x = inp(0);
        let n_out = node.output.len();
        let one = |v: ValueInfo| vec![v];
        let mut outs = match node.op_type.as_str() {
            "Add" | "Sub" | "Mul" | "Div" | "Max" | "Min" | "Pow" => {
                let shapes: Vec<&Option<Dims>> = ins.iter().map(|v| &v.shape).collect();
                let ints = match (inp(0).ints.as_deref(), inp(1).ints.as_deref()) {
                    (Some(a), Some(b)) => elementwise_ints(&node.op_type, a, b),
                    _ => None,
                };
                one(ValueInfo {
                    dtype: x.dtype,
                    shape: broadcast(&shapes),
                    ints,
                    constant: false,
                })
            }
            "Less" | "Equal" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" => {
                one(ValueInfo {
                    dtype: BOOL,
                    shape: broadcast(&[&inp(0).shape, &inp(1).shape]),
                    ..Default::default()
                })
            }
            "Where" => one(ValueInfo {
                dtype: inp(1).dtype,
                shape: broadcast(&[&inp(0).shape, &inp(1).shape, &inp(2).shape]),
                ..Default::default()
            }),
            "Cast" => {
                let to = attr_i(node, "to").unwrap_or(0) as i32;
                let ints = if matches!(to, INT32 | INT64) {
                    x.ints.clone()
                } else {
                    None
                };
                one(ValueInfo {
                    dtype: to,
                    shape: x.shape.clone(),
                    ints,
                    constant: false,
                })
            }
            "Identity" => one(ValueInfo {
                ints: x.ints.clone(),
                ..same(x)
            }),
            "Sqrt" | "Reciprocal" | "Sigmoid" | "Sin" | "Cos" | "Tanh" | "Neg" | "Relu" | "Erf"
            | "Exp" | "Abs" | "Softmax" | "ScatterElements" | "ScatterND" => one(same(x)),
            "ReduceMean" | "ReduceSum" | "ReduceL2" | "ReduceMax" | "ReduceMin" => {
                let keep = attr_i(node, "keepdims").unwrap_or(1) != 0;
                let axes = if node.input.len() > 1 && !node.input[1].is_empty() {
                    inp(1).ints.as_deref()
                } else {
                    Some(attr_ints(node, "axes").unwrap_or(&[]))
                };
                let shape = match (axes, &x.shape) {
                    (None, Some(s)) if keep => Some(vec![None; s.len()]),
                    _ => reduced(&x.shape, axes, keep),
                };
                one(ValueInfo { shape, ..same(x) })
            }
            "ArgMax" | "ArgMin" => {
                let axis = attr_i(node, "axis").unwrap_or(0);
                let keep = attr_i(node, "keepdims").unwrap_or(1) != 0;
                one(ValueInfo {
                    dtype: INT64,
                    shape: reduced(&x.shape, Some(&[axis]), keep),
                    ..Default::default()
                })
            }
            "MatMul" => {
                let (a, b) = (&inp(0).shape, &inp(1).shape);
                let shape = match (a, b) {
                    (Some(a), Some(b)) if a.len() >= 2 && b.len() >= 2 => {
                        let ab = Some(a[..a.len() - 2].to_vec());
                        let bb = Some(b[..b.len() - 2].to_vec());
                        broadcast(&[&ab, &bb]).map(|mut s| {
                            s.push(a[a.len() - 2]);
                            s.push(b[b.len() - 1]);
                            s
                        })
                    }
                    _ => None,
                };
                one(ValueInfo { shape, ..same(x) })
            }
            "MatMulNBits" => {
                let n = attr_i(node, "N");
                let shape = x.shape.as_ref().map(|s| {
                    let mut s = s.clone();
                    if let Some(last) = s.last_mut() {
                        *last = n;
                    }
                    s
                });
                one(ValueInfo { shape, ..same(x) })
            }
            "Conv" | "ConvTranspose" => one(ValueInfo {
                shape: self.conv_shape(node, x, inp(1)),
                ..same(x)
            }),
            "Reshape" => {
                let allow_zero = attr_i(node, "allowzero") == Some(1);
                let shape = match (inp(1).ints.as_deref(), &x.shape) {
                    (Some(t), xs) => {
                        let mut dims: Dims = t
                            .iter()
                            .enumerate()
                            .map(|(i, &d)| match d {
                                0 if !allow_zero => xs.as_ref().and_then(|s| s.get(i).copied()?),
                                -1 => None,
                                d => Some(d),
                            })
                            .collect();
                        if let (Some(pos), Some(numel)) = (
                            t.iter().position(|&d| d == -1),
                            x.static_dims().map(|d| d.iter().product::<i64>()),
                        ) {
                            let known: Option<i64> = dims
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| *i != pos)
                                .map(|(_, d)| *d)
                                .product();
                            if let Some(k) = known.filter(|&k| k > 0) {
                                dims[pos] = Some(numel / k);
                            }
                        }
                        Some(dims)
                    }
                    (None, _) => inp(1)
                        .static_dims()
                        .and_then(|d| d.first().copied())
                        .map(|n| vec![None; n as usize]),
                };
                one(ValueInfo {
                    shape,
                    ints: x.ints.clone(),
                    ..same(x)
                })
            }
            "Slice" => one(self.slice(node, &ins)),
            "Shape" => {
                let rank = x.rank();
                let start = attr_i(node, "start").unwrap_or(0);
                let end = attr_i(node, "end");
                let range = rank.map(|r| {
                    let r = r as i64;
                    let c = |i: i64| if i < 0 { (i + r).max(0) } else { i.min(r) };
                    (c(start), c(end.unwrap_or(r)))
                });
                let dims = x.static_dims();
                one(ValueInfo {
                    dtype: INT64,
                    shape: range.map(|(s, e)| vec![Some((e - s).max(0))]),
                    ints: match (dims, range) {
                        (Some(d), Some((s, e))) if s <= e => {
                            Some(d[s as usize..e as usize].to_vec())
                        }
                        _ => None,
                    },
                    constant: x.is_static(),
                })
            }
            "Transpose" => {
                let shape = x.shape.as_ref().map(|s| match attr_ints(node, "perm") {
                    Some(p) => p
                        .iter()
                        .map(|&i| s.get(i as usize).copied().flatten())
                        .collect(),
                    None => s.iter().rev().copied().collect(),
                });
                one(ValueInfo { shape, ..same(x) })
            }
            "Unsqueeze" => {
                let axes = if node.input.len() > 1 {
                    inp(1).ints.clone()
                } else {
                    attr_ints(node, "axes").map(|a| a.to_vec())
                };
                let shape = match (&x.shape, axes) {
                    (Some(s), Some(axes)) => {
                        let rank = s.len() + axes.len();
                        let axes: Vec<usize> =
                            axes.iter().filter_map(|&a| norm_axis(a, rank)).collect();
                        let mut src = s.iter();
                        Some(
                            (0..rank)
                                .map(|i| {
                                    if axes.contains(&i) {
                                        Some(1)
                                    } else {
                                        src.next().copied().flatten()
                                    }
                                })
                                .collect(),
                        )
                    }
                    _ => None,
                };
                one(ValueInfo {
                    shape,
                    ints: x.ints.clone(),
                    ..same(x)
                })
            }
            "Concat" => {
                let axis = attr_i(node, "axis").unwrap_or(0);
                let shape = x.shape.as_ref().and_then(|s0| {
                    let ax = norm_axis(axis, s0.len())?;
                    let mut s = s0.clone();
                    let mut total = Some(0i64);
                    for v in &ins {
                        let d = v.shape.as_ref().and_then(|s| s.get(ax).copied().flatten());
                        total = total.zip(d).map(|(t, d)| t + d);
                    }
                    s[ax] = total;
                    Some(s)
                });
                let ints = if x.rank() == Some(1) {
                    ins.iter()
                        .map(|v| v.ints.clone())
                        .collect::<Option<Vec<_>>>()
                        .map(|v| v.concat())
                } else {
                    None
                };
                one(ValueInfo {
                    shape,
                    ints,
                    ..same(x)
                })
            }
            "Split" => {
                let axis = attr_i(node, "axis").unwrap_or(0);
                let sizes: Option<Vec<i64>> = if node.input.len() > 1 {
                    inp(1).ints.clone()
                } else {
                    x.shape.as_ref().and_then(|s| {
                        let d = s.get(norm_axis(axis, s.len())?).copied().flatten()?;
                        let n = n_out as i64;
                        let chunk = (d + n - 1) / n;
                        Some((0..n).map(|i| chunk.min(d - i * chunk)).collect())
                    })
                };
                (0..n_out)
                    .map(|i| ValueInfo {
                        shape: x.shape.as_ref().and_then(|s| {
                            let ax = norm_axis(axis, s.len())?;
                            let mut s = s.clone();
                            s[ax] = sizes.as_ref().and_then(|z| z.get(i).copied());
                            Some(s)
                        }),
                        ..same(x)
                    })
                    .collect()
            }
            "Gather" => {
                let axis = attr_i(node, "axis").unwrap_or(0);
                let idx = inp(1);
                let shape = match (&x.shape, &idx.shape) {
                    (Some(d), Some(i)) => norm_axis(axis, d.len()).map(|ax| {
                        let mut s = d[..ax].to_vec();
                        s.extend(i.iter().copied());
                        s.extend(d[ax + 1..].iter().copied());
                        s
                    }),
                    _ => None,
                };
                let ints = match (x.ints.as_deref(), idx.ints.as_deref(), x.rank()) {
                    (Some(d), Some(i), Some(1)) => i
                        .iter()
                        .map(|&j| {
                            let j = if j < 0 { j + d.len() as i64 } else { j };
                            d.get(j as usize).copied()
                        })
                        .collect(),
                    _ => None,
                };
                one(ValueInfo {
                    shape,
                    ints,
                    ..same(x)
                })
            }
            "Expand" => {
                let target: Option<Option<Dims>> = inp(1)
                    .ints
                    .as_ref()
                    .map(|t| Some(t.iter().map(|&d| Some(d)).collect()));
                let shape = match target {
                    Some(t) => broadcast(&[&x.shape, &t]),
                    None => None,
                };
                one(ValueInfo { shape, ..same(x) })
            }
            _ => vec![UNKNOWN; n_out],
        };
        outs.resize(n_out, UNKNOWN);
        // ONNX Runtime's constant folding computes a node whose inputs are all constants.
        let all_const = !node.input.is_empty()
            && node
                .input
                .iter()
                .all(|n| n.is_empty() || self.get(n).constant);
        if all_const && node.domain.is_empty() {
            for o in &mut outs {
                o.constant = true;
            }
        }
        outs
    }

    fn conv_shape(&self, node: &NodeProto, x: &ValueInfo, w: &ValueInfo) -> Option<Dims> {
        let xs = x.shape.as_ref()?;
        let ws = w.static_dims()?;
        let sp = ws.len().checked_sub(2)?;
        if xs.len() != ws.len() {
            return None;
        }
        let ones = vec![1; sp];
        let zeros = vec![0; 2 * sp];
        let strides = attr_ints(node, "strides").unwrap_or(&ones);
        let dil = attr_ints(node, "dilations").unwrap_or(&ones);
        let pads = attr_ints(node, "pads").unwrap_or(&zeros);
        let group = attr_i(node, "group").unwrap_or(1);
        let transpose = node.op_type == "ConvTranspose";
        let zero_out = vec![0; sp];
        let out_pad = attr_ints(node, "output_padding").unwrap_or(&zero_out);
        let mut out = vec![xs[0], Some(if transpose { ws[1] * group } else { ws[0] })];
        for i in 0..sp {
            let k = ws[2 + i];
            let (s, d) = (*strides.get(i)?, *dil.get(i)?);
            let (pb, pe) = (*pads.get(i)?, *pads.get(i + sp)?);
            out.push(xs[2 + i].map(|l| {
                if transpose {
                    s * (l - 1) + out_pad.get(i).copied().unwrap_or(0) + (k - 1) * d + 1 - pb - pe
                } else {
                    (l + pb + pe - d * (k - 1) - 1) / s + 1
                }
            }));
        }
        Some(out)
    }

    fn slice(&self, node: &NodeProto, ins: &[&ValueInfo]) -> ValueInfo {
        let x = ins[0];
        let get = |i: usize| ins.get(i).and_then(|v| v.ints.as_deref());
        let present = |i: usize| node.input.get(i).is_some_and(|n| !n.is_empty());
        let Some(s) = x.shape.as_ref() else {
            return same(x);
        };
        let mut shape = s.clone();
        let (starts, ends) = (get(1), get(2));
        let axes: Option<Vec<i64>> = if present(3) {
            get(3).map(|a| a.to_vec())
        } else {
            starts
                .or(ends)
                .map(|v| (0..v.len() as i64).collect())
                .or(ins
                    .get(1)
                    .and_then(|v| v.static_dims())
                    .map(|d| (0..d.first().copied().unwrap_or(0)).collect()))
        };
        let steps: Option<Vec<i64>> = if present(4) {
            get(4).map(|a| a.to_vec())
        } else {
            axes.as_ref().map(|a| vec![1; a.len()])
        };
        let mut ints = None;
        match axes {
            None => shape = vec![None; s.len()],
            Some(axes) => {
                for (j, &a) in axes.iter().enumerate() {
                    let Some(ax) = norm_axis(a, s.len()) else {
                        continue;
                    };
                    shape[ax] = match (s[ax], starts, ends, steps.as_ref()) {
                        (Some(d), Some(st), Some(en), Some(sp)) => {
                            Some(slice_len(d, st[j], en[j], sp[j]))
                        }
                        _ => None,
                    };
                }
                if let (Some(v), Some(st), Some(en), Some(sp), [0]) = (
                    x.ints.as_ref(),
                    starts,
                    ends,
                    steps.as_ref(),
                    axes.as_slice(),
                ) {
                    if sp[0] == 1 {
                        let d = v.len() as i64;
                        let c = |i: i64| if i < 0 { (i + d).max(0) } else { i.min(d) };
                        let (a, b) = (c(st[0]), c(en[0]));
                        if a <= b {
                            ints = Some(v[a as usize..b as usize].to_vec());
                        }
                    }
                }
            }
        }
        ValueInfo {
            dtype: x.dtype,
            shape: Some(shape),
            ints,
            constant: false,
        }
    }
}

fn value_info_dims(vi: &dia_graphs::onnx::ValueInfoProto) -> (i32, Option<Dims>) {
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

// ---------------------------------------------------------------------------------------------
// the check

/// Every node of `model` the CoreML EP (ML Program) would not take, in graph order.
pub fn check_model(model: &ModelProto, opts: &CheckOptions) -> Vec<Unsupported> {
    let Some(g) = model.graph.as_ref() else {
        return Vec::new();
    };
    let opset = model
        .opset_import
        .iter()
        .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map_or(1, |o| o.version);
    let mut graph = Graph {
        nodes: &g.node,
        values: HashMap::new(),
        consumers: HashMap::new(),
        graph_inputs: HashMap::new(),
        graph_outputs: HashMap::new(),
        opset,
        opts: *opts,
    };
    for t in &g.initializer {
        graph.values.insert(
            t.name.clone(),
            ValueInfo {
                dtype: t.data_type,
                shape: Some(t.dims.iter().map(|&d| Some(d)).collect()),
                ints: initializer_ints(t),
                constant: true,
            },
        );
    }
    for vi in g.input.iter().chain(&g.value_info) {
        if graph.values.contains_key(&vi.name) && g.initializer.iter().any(|t| t.name == vi.name) {
            continue;
        }
        let (dtype, shape) = value_info_dims(vi);
        graph.values.insert(
            vi.name.clone(),
            ValueInfo {
                dtype,
                shape,
                ..Default::default()
            },
        );
    }
    for vi in &g.input {
        let (dtype, _) = value_info_dims(vi);
        if !g.initializer.iter().any(|t| t.name == vi.name) {
            graph.graph_inputs.insert(vi.name.clone(), dtype);
        }
    }
    for vi in &g.output {
        graph
            .graph_outputs
            .insert(vi.name.clone(), value_info_dims(vi).0);
    }
    for (i, n) in g.node.iter().enumerate() {
        for inp in n.input.iter().filter(|s| !s.is_empty()) {
            let c = graph.consumers.entry(inp.clone()).or_default();
            if !c.contains(&i) {
                c.push(i);
            }
        }
    }
    // Inference in graph order (the builder writes nodes topologically).
    for n in &g.node {
        let outs = graph.infer(n);
        for (name, v) in n.output.iter().zip(outs) {
            // Declared value_info (graph outputs) wins over inference where it says more.
            let v = match graph.values.get(name) {
                Some(decl) if decl.shape.is_some() => ValueInfo {
                    dtype: if decl.dtype != 0 { decl.dtype } else { v.dtype },
                    shape: decl.shape.clone(),
                    ..v
                },
                _ => v,
            };
            graph.values.insert(name.clone(), v);
        }
    }

    let mut found = Vec::new();
    for node in &g.node {
        // ONNX Runtime's constant folding (a level 1 optimisation, run before partitioning)
        // replaces a node computed only from constants by initializers: no EP sees it.
        let folded = !node.output.is_empty()
            && node
                .output
                .iter()
                .all(|o| graph.values.get(o).is_some_and(|v| v.constant));
        if folded {
            continue;
        }
        let (reasons, sources) = check_node(&graph, node);
        if !reasons.is_empty() {
            let mut srcs: Vec<&str> = Vec::new();
            for s in sources {
                if !srcs.contains(&s) {
                    srcs.push(s);
                }
            }
            found.push(Unsupported {
                node: node.name.clone(),
                op_type: if node.domain.is_empty() {
                    node.op_type.clone()
                } else {
                    format!("{}:{}", node.domain, node.op_type)
                },
                reason: reasons.join("; "),
                source: srcs.join("; "),
            });
        }
    }
    found
}

fn check_node(graph: &Graph, node: &NodeProto) -> (Vec<String>, Vec<&'static str>) {
    let mut reasons = Vec::new();
    let mut sources: Vec<&'static str> = Vec::new();
    let mut fail = |r: String, s: &'static str| {
        reasons.push(r);
        sources.push(s);
    };
    let view = NodeView { graph, node };

    // General rule "builder": the op type must have a builder (default domain only).
    let rule = if node.domain.is_empty() || node.domain == "ai.onnx" {
        op_rule(&node.op_type)
    } else {
        None
    };
    let Some(rule) = rule else {
        let note = NO_BUILDER_NOTES
            .iter()
            .find(|(op, _)| *op == node.op_type)
            .map_or_else(
                || {
                    if node.domain.is_empty() {
                        format!("no CoreML op builder for {}", node.op_type)
                    } else {
                        format!(
                            "{}:{} is not an ONNX op; no CoreML op builder",
                            node.domain, node.op_type
                        )
                    }
                },
                |(_, n)| n.to_string(),
            );
        fail(note, FACTORY);
        return (reasons, sources);
    };

    // General rule "opset".
    if graph.opset < rule.min_opset {
        fail(
            format!(
                "opset {} < {} supported by the builder",
                graph.opset, rule.min_opset
            ),
            "onnxruntime/core/providers/coreml/builders/impl/base_op_builder.cc: BaseOpBuilder::HasSupportedOpSet",
        );
    }

    // General rules "shape", "static", "empty", "rank" on every input.
    let mut dynamic = Vec::new();
    for (i, name) in node.input.iter().enumerate() {
        if name.is_empty() {
            continue;
        }
        let v = view.input(i);
        match &v.shape {
            None => fail(format!("input `{name}` has no known shape"), HELPER),
            Some(d) => {
                if graph.opts.require_static_shapes && d.iter().any(|x| x.is_none()) {
                    dynamic.push(format!("`{name}` is {}", fmt_dims(&v.shape)));
                }
                if d.contains(&Some(0)) {
                    fail(
                        format!("input `{name}` {} is empty (a 0 dim)", fmt_dims(&v.shape)),
                        HELPER,
                    );
                }
                if d.len() > 5 {
                    fail(format!("input `{name}` has rank {} > 5", d.len()), HELPER);
                }
            }
        }
    }

    if !dynamic.is_empty() {
        fail(
            format!(
                "dynamic input shape: {} (the coreml target must be static)",
                dynamic.join(", ")
            ),
            HELPER,
        );
    }

    // General rule "dtype" (the builder's HasSupportedInputsImpl when it has none of its own).
    if rule.dtype == DtypeRule::Input0Float {
        let t = view.dtype(0);
        // An input of unknown type has already failed the shape rule.
        if t != 0 && !is_float(t) {
            fail(
                format!(
                    "input 0 {} is {}, the builder takes float32/float16 only",
                    view.label(0),
                    dtype_name(t)
                ),
                DTYPE,
            );
        }
    }

    // The builder's own conditions.
    for r in (rule.check)(&view) {
        fail(r, rule.source);
    }

    // General rule "boundary": graph inputs/outputs become CoreML model inputs/outputs.
    let boundary_ok = |t: i32| matches!(t, FLOAT | FLOAT16 | INT32 | INT64);
    for name in &node.input {
        if let Some(&t) = graph.graph_inputs.get(name) {
            if !boundary_ok(t) {
                fail(
                    format!(
                        "graph input `{name}` is {}: CoreML model inputs are float32/float16/int32/int64 (no bool)",
                        dtype_name(t)
                    ),
                    BOUNDARY,
                );
            }
        }
    }
    for name in &node.output {
        if let Some(&t) = graph.graph_outputs.get(name) {
            if !boundary_ok(t) {
                fail(
                    format!(
                        "graph output `{name}` is {}: CoreML model outputs are float32/float16/int32/int64 (no bool)",
                        dtype_name(t)
                    ),
                    BOUNDARY,
                );
            }
        }
    }
    (reasons, sources)
}

/// One graph of a bundle, checked.
#[derive(Clone, Debug)]
pub struct GraphReport {
    /// The graph's file name in the bundle (`encoder.onnx`, ...).
    pub file: String,
    pub nodes: usize,
    pub unsupported: Vec<Unsupported>,
}

impl GraphReport {
    /// Unsupported nodes counted per op type, most frequent first.
    pub fn by_op(&self) -> Vec<(String, usize)> {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for u in &self.unsupported {
            *m.entry(u.op_type.clone()).or_default() += 1;
        }
        let mut v: Vec<(String, usize)> = m.into_iter().collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

fn check_ep(ep: &str) -> Result<()> {
    if !SUPPORTED_EPS.contains(&ep) {
        bail!("unknown execution provider `--ep {ep}`: only `coreml` is supported for now");
    }
    Ok(())
}

/// Reads and decodes one `.onnx` file (the weights stay in their external file).
pub fn load_model(path: &Path) -> Result<ModelProto> {
    let bytes = fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    ModelProto::decode(bytes.as_slice())
        .with_context(|| format!("{}: not an ONNX model", path.display()))
}

/// Checks every graph the bundle at `dir` lists (encoder, decoder_step, and the DAC graphs when
/// present) for `ep`, with the number of nodes of each.
pub fn check_bundle_report(dir: &Path, ep: &str) -> Result<Vec<GraphReport>> {
    check_ep(ep)?;
    let manifest = Manifest::load(dir)?;
    let g = &manifest.graphs;
    let specs = [
        Some(&g.encoder),
        Some(&g.decoder_step),
        g.dac_decoder.as_ref(),
        g.dac_encoder.as_ref(),
    ];
    let opts = CheckOptions::default();
    specs
        .into_iter()
        .flatten()
        .map(|spec| {
            let model = load_model(&dir.join(&spec.file))?;
            let nodes = model.graph.as_ref().map_or(0, |g| g.node.len());
            Ok(GraphReport {
                file: spec.file.clone(),
                nodes,
                unsupported: check_model(&model, &opts),
            })
        })
        .collect()
}

/// [`check_bundle_report`] as (graph file name, unsupported nodes) pairs.
pub fn check_bundle(dir: &Path, ep: &str) -> Result<Vec<(String, Vec<Unsupported>)>> {
    Ok(check_bundle_report(dir, ep)?
        .into_iter()
        .map(|r| (r.file, r.unsupported))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_lengths_follow_python() {
        assert_eq!(slice_len(10, 0, i64::MAX, 1), 10);
        assert_eq!(slice_len(10, 1, -1, 1), 8);
        assert_eq!(slice_len(10, 5, 2, 1), 0);
        assert_eq!(slice_len(10, -1, i64::MIN, -1), 10);
        assert_eq!(slice_len(10, 0, 10, 3), 4);
    }

    #[test]
    fn broadcast_keeps_dynamic_against_one() {
        let a = Some(vec![Some(2), None, Some(1)]);
        let b = Some(vec![Some(1), Some(4)]);
        assert_eq!(broadcast(&[&a, &b]), Some(vec![Some(2), None, Some(4)]));
    }

    #[test]
    fn every_rule_names_an_onnxruntime_source() {
        for r in OP_RULES {
            assert!(
                r.source.starts_with("onnxruntime/core/providers/coreml/"),
                "{}",
                r.op_type
            );
        }
        for r in GENERAL_RULES {
            assert!(r.source.starts_with("onnxruntime/core/providers/coreml/"));
        }
    }
}
