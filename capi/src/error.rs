//! Errors of the C API: each one a status code for the caller's `switch` and a message for
//! `dia_last_error()`, kept per thread.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

use dia_run::RuntimeError;

use crate::status::*;

#[derive(Debug, thiserror::Error)]
pub enum CapiError {
    #[error("{what} is NULL")]
    Null { what: &'static str },
    #[error("{what} is not valid UTF-8 (invalid byte at offset {offset})")]
    Utf8 { what: &'static str, offset: usize },
    #[error(
        "{what}.struct_size is {got}: it must be at least {min} (this struct's first version) \
         and at most {max}; fill the struct with its dia_*_init function first"
    )]
    StructSize {
        what: &'static str,
        got: usize,
        min: usize,
        max: usize,
    },
    #[error(
        "{what} sets fields beyond the {known} bytes this libdia ({version}) knows (byte \
         {byte} is not 0): use a newer libdia, or leave those fields at their defaults"
    )]
    UnknownFields {
        what: &'static str,
        known: usize,
        byte: usize,
        version: &'static str,
    },
    #[error("{what} is not a live {kind} handle (it was freed already, or never was one)")]
    Handle {
        what: &'static str,
        kind: &'static str,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("the bundle directory {0} does not exist or is not a directory (give the directory dia-export wrote)")]
    BundleDir(std::path::PathBuf),
    #[error("stopped: the callback returned 0 (no audio was returned)")]
    Stopped,
    #[error("the stream has ended: its last chunk (is_last = 1) was handed out already")]
    StreamEnded,
    #[error("the stream is not finished: its codes are complete once dia_stream_next has returned the chunk with is_last = 1")]
    StreamRunning,
    #[error("the stream is in use by another thread: a stream is used by one thread at a time")]
    Busy,
    #[error("the stream failed earlier and cannot go on: {0}")]
    StreamFailed(String),
    /// Loading the model failed.
    #[error("{0}")]
    Load(RuntimeError),
    /// Generating failed.
    #[error("{0}")]
    Run(RuntimeError),
    #[error("internal error (a panic, caught; please report it): {0}")]
    Panic(String),
}

impl CapiError {
    pub fn status(&self) -> DiaStatus {
        match self {
            CapiError::Null { .. } => DIA_ERR_NULL_POINTER,
            CapiError::Utf8 { .. } => DIA_ERR_INVALID_UTF8,
            CapiError::StructSize { .. } | CapiError::UnknownFields { .. } => DIA_ERR_STRUCT_SIZE,
            CapiError::Handle { .. } => DIA_ERR_INVALID_HANDLE,
            CapiError::InvalidArgument(_) | CapiError::StreamRunning => DIA_ERR_INVALID_ARGUMENT,
            CapiError::BundleDir(_) => DIA_ERR_LOAD,
            CapiError::Stopped => DIA_ERR_STOPPED,
            CapiError::StreamEnded => DIA_ERR_STREAM_ENDED,
            CapiError::Busy => DIA_ERR_BUSY,
            CapiError::StreamFailed(_) => DIA_ERR_GENERATION,
            CapiError::Load(e) => runtime_status(e, DIA_ERR_LOAD),
            CapiError::Run(e) => runtime_status(e, DIA_ERR_GENERATION),
            CapiError::Panic(_) => DIA_ERR_PANIC,
        }
    }
}

/// The status of a runtime error; `other` for failures of the phase itself (ONNX Runtime's
/// errors while loading are load errors, while generating generation errors).
fn runtime_status(e: &RuntimeError, other: DiaStatus) -> DiaStatus {
    match e {
        RuntimeError::OrtMissing { .. } | RuntimeError::OrtLoad { .. } => DIA_ERR_ONNXRUNTIME,
        RuntimeError::Bundle(_)
        | RuntimeError::MissingFile { .. }
        | RuntimeError::GraphMismatch { .. }
        | RuntimeError::GraphSpecMismatch { .. } => DIA_ERR_LOAD,
        RuntimeError::EmptyText
        | RuntimeError::NothingToSay
        | RuntimeError::TextTooLong { .. }
        | RuntimeError::InvalidOption(_)
        | RuntimeError::Resample { .. }
        | RuntimeError::BadAudio { .. } => DIA_ERR_INVALID_ARGUMENT,
        RuntimeError::NoCodec { .. } => DIA_ERR_NO_CODEC,
        RuntimeError::StateBusy => DIA_ERR_BUSY,
        _ => other,
    }
}

thread_local! {
    /// The message of the last failed call on this thread (C string, handed out by pointer).
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

pub fn set_last_error(msg: &str) {
    // A message with a NUL in it (from a path, say) is cut there rather than lost.
    let bytes = msg.as_bytes();
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    let c = CString::new(&bytes[..end]).expect("no NUL before `end`");
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// The pointer stays valid until the next failing call on this thread replaces the message
/// (the thread-local `CString` is only ever replaced, never mutated in place).
pub fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}
