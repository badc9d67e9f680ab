//! What the exporter and the runtime agree on, as types: Dia's model config ([`config`]), the
//! bundle manifest ([`manifest`]), the graph targets and dtypes ([`target`], [`dtype`]), the
//! names of every graph input and output ([`names`]) and the decoder step's contract derived
//! from them ([`layout`]). Strings from `manifest.json` are parsed into these types once, when
//! the manifest is read; everything after branches on the types.

pub mod config;
pub mod dtype;
pub mod layout;
pub mod manifest;
pub mod names;
pub mod target;

pub use config::{DecoderConfig, DiaConfig, EncoderConfig};
pub use dtype::{Dtype, ElementType};
pub use layout::{
    CacheUpdate, CrossMask, EncoderLayout, KLayout, PositionInput, StepLayout, TextLength, TokenIds,
};
pub use manifest::{BundleFile, DacInfo, GraphSpec, Graphs, Manifest, Quantization, TensorSpec};
pub use target::Target;

/// Bumped whenever graph inputs/outputs or their meaning change. Version 3 added the fused
/// target (first named `cuda`); version 4 gave its step a dynamic batch (many utterances a
/// step); versions 2 and 3 read unchanged.
pub const FORMAT_VERSION: u32 = 4;
/// The oldest format this crate still reads.
pub const MIN_FORMAT_VERSION: u32 = 2;
pub const MANIFEST_FILE: &str = "manifest.json";
/// Frames of codes on each side of a frame that its audio depends on, in the 44.1 kHz DAC's
/// decoder (its receptive field is about ±10 latent frames: conv k7 ±3; transposed convs ±1;
/// the residual units' ±39 samples at 8× the frame rate, ±5; the later stages less than one
/// frame together). Chunked and streamed decoding keep this much context at every cut.
pub const DAC_CONTEXT_FRAMES: usize = 11;
/// The additive attention bias of masked positions in float mask inputs (coreml and fused
/// targets): finite, so float16 arithmetic stays finite; exp of it is 0 in float32 and float16.
pub const MASK_BIAS: f32 = -30000.0;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {msg}")]
    Invalid { path: String, msg: String },
    /// A file of the bundle is not what the manifest recorded (size at load, hash on verify).
    #[error("{path}: {msg}; the bundle is damaged or incomplete: download or export it again")]
    Damaged { path: String, msg: String },
}
