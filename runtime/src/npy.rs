//! Writing codes as `.npy` (int64, `[frames, channels]`), atomically.

use std::io::Write;
use std::path::Path;

use crate::delay::Frames;
use crate::error::RuntimeError;

/// Writes `frames` as an int64 `.npy` of shape `[frames, channels]` to a temporary file beside
/// `path`, then renames it, so a failure never leaves a partial file.
pub fn write_codes(path: &Path, frames: &Frames) -> Result<(), RuntimeError> {
    let header_dict = format!(
        "{{'descr': '<i8', 'fortran_order': False, 'shape': ({}, {}), }}",
        frames.len(),
        frames.channels
    );
    // Header padded with spaces so data starts on a 64-byte boundary (npy format 1.0).
    let unpadded = 10 + header_dict.len() + 1;
    let pad = (64 - unpadded % 64) % 64;
    let mut bytes = Vec::with_capacity(unpadded + pad + frames.data.len() * 8);
    bytes.extend_from_slice(b"\x93NUMPY\x01\x00");
    bytes.extend_from_slice(&((header_dict.len() + pad + 1) as u16).to_le_bytes());
    bytes.extend_from_slice(header_dict.as_bytes());
    bytes.extend(std::iter::repeat_n(b' ', pad));
    bytes.push(b'\n');
    for v in &frames.data {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    write_atomic(path, &bytes)
}

/// Writes `bytes` to `path` through a temporary sibling file and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    let io = |e| RuntimeError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| RuntimeError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a file path (it names no file)",
        ),
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}
