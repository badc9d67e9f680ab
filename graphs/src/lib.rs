//! ONNX graphs of Dia, built in Rust.
//!
//! - [`builder`]: a small typed ONNX graph builder over `prost` messages ([`onnx`]), with
//!   weights written as external data.
//! - [`checkpoint`]: a Dia checkpoint in the nari-labs or `transformers` layout.
//! - Dia's blocks, one function each, mirroring the PyTorch modules: [`norm`], [`rope`],
//!   [`attention`], [`mlp`]; and the two graphs, [`encoder`] and [`decoder`].
//! - [`contrib`]: ONNX Runtime's fused operators used by the fused target.
//! - [`dac`]: the audio codec (DAC 44.1 kHz) as two graphs, codes -> waveform and back, with
//!   its own checkpoint reader (transformers or descript layout, weight norm folded).
//!
//! # The decoder step and its KV cache
//!
//! The step graph has fixed shapes: the CFG pair (row 0 unconditional, row 1 conditional),
//! one frame, and a self-attention cache of `max_frames` slots per layer, K stored transposed
//! (`[2, kv_heads, head_dim, max_frames]`) and V as `[2, kv_heads, max_frames, head_dim]`.
//! The cache is owned by the runtime and is both an input (`self_k_i`) and an output
//! (`present_k_i`) of the step: the graph scatters the step's key/value into slot `step` and
//! attends to slots `0..=step`. The runtime binds the same buffer to the input and the output
//! (IO binding), and ONNX Runtime's `ScatterElements` skips its input copy when the two are
//! the same buffer, so a step writes a few KB per layer in place and never copies the cache,
//! on the CPU or with a device-resident cache on a GPU (fixed addresses, as CUDA graphs need).
//! Cross-attention K/V are computed once per utterance by the encoder graph.
//!
//! For ONNX Runtime's CPU and CUDA providers ([`Target::Fused`], the default) the same step is
//! written with ONNX Runtime's fused
//! contrib kernels ([`contrib`]): `GroupQueryAttention` appends to the shared past/present cache
//! buffers itself (K stored like V, `[2, kv_heads, max_frames, head_dim]`), and the text length
//! is dynamic so the runtime can pad to a short bucket.

pub mod attention;
pub mod builder;
pub mod checkpoint;
pub mod contrib;
pub mod dac;
pub mod decoder;
pub mod encoder;
pub mod mlp;
pub mod norm;
pub mod onnx;
pub mod quant;
pub mod rope;
mod safetensors_files;
pub mod tensor;
pub mod weights;

pub use builder::{Builder, DType, ExternalData, Value};

/// What the graphs are built for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// Standard ONNX operators only (plus `MatMulNBits` when quantised), for any ONNX runtime
    /// and every ONNX Runtime provider (CUDA float32 included): dynamic text length in the
    /// encoder, in-place cache update with `ScatterElements`, bool masks, a fixed text length
    /// in the step.
    Portable,
    /// ONNX Runtime's CoreML provider (MLProgram): static shapes everywhere, int32 ids, float
    /// masks added as biases, no `ScatterElements`/`Expand`/`Less`/`Equal`; the step outputs
    /// only the new K/V row and the runtime writes it into the cache.
    CoreMl,
    /// ONNX Runtime's CPU and CUDA providers, the fastest on both: the decoder step is written
    /// with ONNX Runtime's fused contrib ops (`GroupQueryAttention` with RoPE and the in-place
    /// cache append, `MultiHeadAttention` for cross-attention, `SkipSimplifiedLayerNormalization`
    /// for each residual add and RMSNorm), about a quarter of the portable step's nodes, and
    /// takes the text length as a dynamic dim so the runtime pads to a short bucket. K caches
    /// are `[B, KV, F, d]` (not transposed). On CUDA it needs float16 or bfloat16 (no float32
    /// `GroupQueryAttention` kernel there).
    #[default]
    Fused,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Portable => "portable",
            Target::CoreMl => "coreml",
            Target::Fused => "fused",
        }
    }
}
pub use checkpoint::{Checkpoint, CheckpointError, Layout};
pub use dac::{DacCheckpoint, DacConfig, DacError, DacLayout, DacWeights};
