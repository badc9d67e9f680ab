//! Element types of graph values and initializers.

/// Element types (values of `TensorProto.DataType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
    I64,
    I32,
    Bool,
    U8,
}

impl From<dia_bundle::Dtype> for DType {
    fn from(d: dia_bundle::Dtype) -> Self {
        match d {
            dia_bundle::Dtype::Float32 => DType::F32,
            dia_bundle::Dtype::Float16 => DType::F16,
            dia_bundle::Dtype::Bfloat16 => DType::BF16,
        }
    }
}

impl DType {
    pub fn onnx(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::I32 => 6,
            DType::I64 => 7,
            DType::Bool => 9,
            DType::U8 => 2,
            DType::F16 => 10,
            DType::BF16 => 16,
        }
    }
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I64 => 8,
            DType::Bool | DType::U8 => 1,
        }
    }
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }
    /// The element type the manifest records.
    pub fn element_type(self) -> dia_bundle::ElementType {
        use dia_bundle::ElementType as E;
        match self {
            DType::F32 => E::Float32,
            DType::F16 => E::Float16,
            DType::BF16 => E::Bfloat16,
            DType::I64 => E::Int64,
            DType::I32 => E::Int32,
            DType::Bool => E::Bool,
            DType::U8 => E::Uint8,
        }
    }
    /// The bundle dtype of a float type (`None` for the others).
    pub fn bundle_dtype(self) -> Option<dia_bundle::Dtype> {
        use dia_bundle::Dtype as D;
        match self {
            DType::F32 => Some(D::Float32),
            DType::F16 => Some(D::Float16),
            DType::BF16 => Some(D::Bfloat16),
            _ => None,
        }
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
            DType::U8 => "uint8",
        }
    }
}
