//! ONNX graphs of Dia, built in Rust.
//!
//! - [`builder`]: a small typed ONNX graph builder over `prost` messages ([`onnx`]), with
//!   weights written as external data.
//! - [`checkpoint`]: a Dia checkpoint in the nari-labs or `transformers` layout.
//! - Dia's blocks, one function each, mirroring the PyTorch modules: [`norm`], [`rope`],
//!   [`attention`], [`mlp`]; and the two graphs, [`encoder`] and [`decoder`].
//! - [`dac`]: the audio codec (DAC 44.1 kHz) as two graphs, codes -> waveform and back, with
//!   its own checkpoint reader (transformers or descript layout, weight norm folded).
//!
//! # The decoder step and its KV cache
//!
//! The step graph has fixed shapes: the CFG pair (row 0 unconditional, row 1 conditional),
//! one frame, and a self-attention cache of `max_frames` slots per layer, K stored transposed
//! (`[2, kv_heads, head_dim, max_frames]`) and V as `[2, kv_heads, max_frames, head_dim]`.
//! The cache is a graph *input* that the runtime owns; the graph attends to slots
//! `0..step` of it plus the step's own key/value and outputs only that new key/value
//! (`new_k_i`, `new_v_i`). The runtime then writes the new row into slot `step` of its
//! buffers in place. No step copies the cache, neither inside the graph (no Concat/Scatter
//! over it) nor outside (the buffers are bound to the session without copying). Cross-attention
//! K/V are computed once by the encoder graph and passed to every step unchanged.

pub mod attention;
pub mod builder;
pub mod checkpoint;
pub mod dac;
pub mod decoder;
pub mod encoder;
pub mod mlp;
pub mod norm;
pub mod onnx;
pub mod quant;
pub mod rope;
pub mod tensor;
pub mod weights;

pub use builder::{Builder, DType, ExternalData, Value};
pub use checkpoint::{Checkpoint, CheckpointError, Layout};
pub use dac::{DacCheckpoint, DacConfig, DacError, DacLayout, DacWeights};
