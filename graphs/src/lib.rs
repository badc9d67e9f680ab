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
pub mod dtype;
pub mod encoder;
pub mod mlp;
pub mod norm;
pub mod onnx;
pub mod quant;
pub mod rope;
mod safetensors_files;
pub mod tensor;
pub mod weights;

pub use builder::{Builder, DType, ExternalData, Value, WrittenFile};

pub use checkpoint::{Checkpoint, CheckpointError, Layout};
pub use dac::{DacCheckpoint, DacConfig, DacConfigError, DacError, DacLayout, DacWeights};
/// What the graphs are built for: the bundle contract's target.
pub use dia_bundle::Target;
pub use safetensors_files::{Expected, WeightsError};
