//! Element types: of the graphs' weights and activations ([`Dtype`]), and of every graph input
//! and output the manifest lists ([`ElementType`]).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Weight and activation dtype of a bundle's Dia graphs (`dia-export --dtype`); norms, RoPE,
/// softmax and logits are float32 whatever it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    #[default]
    Float32,
    Float16,
    Bfloat16,
}

impl Dtype {
    pub fn element_type(self) -> ElementType {
        match self {
            Dtype::Float32 => ElementType::Float32,
            Dtype::Float16 => ElementType::Float16,
            Dtype::Bfloat16 => ElementType::Bfloat16,
        }
    }
    pub fn name(self) -> &'static str {
        self.element_type().name()
    }
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::Float32 => 4,
            Dtype::Float16 | Dtype::Bfloat16 => 2,
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Element type of a graph input or output (numpy's spelling in the manifest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElementType {
    Float32,
    Float16,
    Bfloat16,
    Int64,
    Int32,
    Bool,
    Uint8,
}

impl ElementType {
    pub fn name(self) -> &'static str {
        match self {
            ElementType::Float32 => "float32",
            ElementType::Float16 => "float16",
            ElementType::Bfloat16 => "bfloat16",
            ElementType::Int64 => "int64",
            ElementType::Int32 => "int32",
            ElementType::Bool => "bool",
            ElementType::Uint8 => "uint8",
        }
    }
}

impl fmt::Display for ElementType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
