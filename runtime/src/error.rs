//! Errors of the runtime library.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "ONNX Runtime library not found (looked in: {searched}). Run scripts/setup-onnxruntime.sh \
         from the repository root, or set ORT_DYLIB_PATH to a libonnxruntime shared library \
         (version 1.31 or newer, e.g. from the `onnxruntime` wheel on PyPI)"
    )]
    OrtMissing { searched: String },
    #[error("loading ONNX Runtime from {path}: {detail}")]
    OrtLoad { path: PathBuf, detail: String },
    #[error("ONNX Runtime: {0}")]
    Ort(#[from] ort::Error),
    #[error(transparent)]
    Bundle(#[from] dia_bundle::BundleError),
    #[error("{path}: missing from the bundle ({what}); re-export it with dia-export")]
    MissingFile { path: PathBuf, what: String },
    #[error("bundle graph `{graph}` has no {kind} `{name}` as the manifest promises")]
    GraphMismatch {
        graph: String,
        kind: &'static str,
        name: String,
    },
    #[error("bundle graph `{graph}` input `{name}` is {graph_has} but the manifest says {manifest}: the manifest and the graphs disagree; re-export the bundle")]
    GraphSpecMismatch {
        graph: String,
        name: String,
        manifest: String,
        graph_has: String,
    },
    #[error("the text is empty: give dia-run something to say, e.g. \"[S1] Hello.\"")]
    EmptyText,
    #[error("the script has speaker tags but nothing to say: add the words after them, e.g. \"[S1] Hello.\"")]
    NothingToSay,
    #[error("the text is {tokens} tokens (bytes) long but the bundle's encoder takes at most {max}; shorten it or split it into several runs")]
    TextTooLong { tokens: usize, max: usize },
    /// An option out of its range, or options that contradict each other.
    #[error("{0}")]
    InvalidOption(String),
    #[error("decoder step {position} is past the bundle's {max_frames} frames")]
    PastCache { position: usize, max_frames: usize },
    #[error("cannot copy a {from} tensor into a {to} one")]
    TensorCopy { from: String, to: String },
    #[error("CUDA: {0}")]
    Cuda(String),
    #[error("resampling {from} Hz -> {to} Hz: {msg}")]
    Resample { from: u32, to: u32, msg: String },
    #[error("this thread already has a generation alive, and with CUDA graphs generations take turns whole: finish or drop it before starting another on this thread, or run them on separate threads (they then wait for each other)")]
    StateBusy,
    /// A broken invariant of this library (a bug): please report it.
    #[error("internal error (please report it): {0}")]
    Internal(String),
    #[error("the bundle {bundle} has no DAC codec, so it cannot {what}: re-export it with `dia-export CHECKPOINT --out BUNDLE --dac DAC_DIR`, DAC_DIR holding the 44.1 kHz DAC (config.json + model.safetensors, e.g. the Hub's descript/dac_44khz)")]
    NoCodec { bundle: PathBuf, what: String },
    #[error("{path}: {msg}")]
    BadAudio { path: PathBuf, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}
