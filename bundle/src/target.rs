//! What a bundle's graphs are built for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The graph target a bundle was exported for (`dia-export --target`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// Standard ONNX operators only (plus `MatMulNBits` when quantised), for any ONNX runtime
    /// and every ONNX Runtime provider (CUDA float32 included): dynamic text length in the
    /// encoder, in-place cache update with `ScatterElements`, bool masks, a fixed text length
    /// in the step.
    Portable,
    /// ONNX Runtime's CoreML provider (MLProgram): static shapes everywhere, int32 ids, float
    /// masks added as biases, no `ScatterElements`/`Expand`/`Less`/`Equal`; the step outputs
    /// only the new K/V row and the runtime writes it into the cache.
    #[serde(rename = "coreml")]
    CoreMl,
    /// ONNX Runtime's CPU and CUDA providers, the fastest on both: the decoder step is written
    /// with ONNX Runtime's fused contrib ops (`GroupQueryAttention` with RoPE and the in-place
    /// cache append, `MultiHeadAttention` for cross-attention, `SkipSimplifiedLayerNormalization`
    /// for each residual add and RMSNorm), about a quarter of the portable step's nodes, and
    /// takes the text length as a dynamic dim so the runtime pads to a short bucket. K caches
    /// are `[B, KV, F, d]` (not transposed). On CUDA it needs float16 or bfloat16 (no float32
    /// `GroupQueryAttention` kernel there). Bundles of format 3 written before the rename call
    /// it `cuda`.
    #[default]
    #[serde(alias = "cuda")]
    Fused,
}

impl Target {
    pub const ALL: [Target; 3] = [Target::Portable, Target::Fused, Target::CoreMl];

    /// The name in manifests and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Target::Portable => "portable",
            Target::CoreMl => "coreml",
            Target::Fused => "fused",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A target name that is none of [`Target::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown target `{0}` (known: portable, fused, coreml)")]
pub struct UnknownTarget(pub String);

impl FromStr for Target {
    type Err = UnknownTarget;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "portable" => Ok(Target::Portable),
            "fused" | "cuda" => Ok(Target::Fused),
            "coreml" => Ok(Target::CoreMl),
            other => Err(UnknownTarget(other.to_string())),
        }
    }
}
