//! Memory-mapped safetensors files (one, or the shards of a checkpoint) with their tensor
//! index: the reading both checkpoint kinds (Dia's and the DAC's) share. Tensors are decoded
//! one at a time to float32, and their mapped pages released afterwards, so export streams.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use crate::tensor::{decode_to_f32, SourceDType, Tensor};

struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Byte range inside the file's mmap (header included in the offset).
    start: usize,
    end: usize,
}

/// What is wrong with a checkpoint's files or with one of its tensors: one error for the Dia
/// and the DAC readers alike, naming the model and the layout where a tensor was expected.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{file}: not a valid safetensors file ({detail}); is it truncated or still downloading?"
    )]
    Corrupt { file: PathBuf, detail: String },
    #[error("tensor `{name}` is missing from the {} checkpoint (expected shape {expected:?}, {} layout)", at.model, at.layout)]
    MissingTensor {
        name: String,
        expected: Vec<usize>,
        at: Expected,
    },
    #[error("tensor `{name}` has shape {found:?} but the {} config implies {expected:?} ({} layout)", at.model, at.layout)]
    ShapeMismatch {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
        at: Expected,
    },
    #[error("tensor `{name}` has element type {dtype}; only F32, F16 and BF16 are supported")]
    UnsupportedDtype { name: String, dtype: String },
}

/// Where tensors are looked for, for messages: which model's checkpoint, in which layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expected {
    /// `Dia` or `DAC`.
    pub model: &'static str,
    pub layout: &'static str,
}

impl WeightsError {
    /// A file that cannot be read.
    pub fn io(file: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| WeightsError::Io {
            file: file.to_path_buf(),
            source,
        }
    }
}

pub(crate) struct TensorFiles {
    files: Vec<(PathBuf, Mmap)>,
    entries: HashMap<String, Entry>,
}

fn open_mmap(path: &Path) -> Result<Mmap, WeightsError> {
    let io = |e| WeightsError::Io {
        file: path.to_path_buf(),
        source: e,
    };
    let f = File::open(path).map_err(io)?;
    // SAFETY: the file is opened read-only; a checkpoint being rewritten while we export is
    // the user's error and at worst yields garbage weights, which validation cannot catch anyway.
    unsafe { Mmap::map(&f) }.map_err(io)
}

/// Drops the mapped pages of `start..end` from this process's resident set once a tensor has
/// been decoded, so export holds about one tensor at a time instead of the whole checkpoint.
#[cfg(unix)]
fn release_pages(mmap: &Mmap, start: usize, end: usize) {
    const PAGE: usize = 4096;
    let first = start.div_ceil(PAGE) * PAGE;
    let last = end / PAGE * PAGE;
    if last > first {
        // SAFETY: the mapping is private and read-only; after DONTNEED the kernel re-reads the
        // file if those pages are touched again, so later reads still see the file's bytes.
        let _ = unsafe {
            mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, last - first)
        };
    }
}

#[cfg(not(unix))]
fn release_pages(_: &Mmap, _: usize, _: usize) {}

/// safetensors' limit on the JSON header.
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Checks a file's header length and its tensors' data offsets against the file's real length,
/// before `safetensors` reads them: it adds the largest end offset to the header length
/// unchecked, so an offset near 2^64 in a corrupt header overflows (a panic in debug builds, a
/// wrapped sum in release), and its errors do not say how short a truncated file is.
fn check_against_length(path: &Path, bytes: &[u8]) -> Result<(), WeightsError> {
    let corrupt = |detail: String| WeightsError::Corrupt {
        file: path.to_path_buf(),
        detail,
    };
    let len = bytes.len() as u64;
    let Some(prefix) = bytes.first_chunk::<8>() else {
        return Err(corrupt(format!(
            "the file is {len} bytes, too short for the 8-byte header length"
        )));
    };
    let header_len = u64::from_le_bytes(*prefix);
    if header_len > len - 8 {
        return Err(corrupt(format!(
            "the header length field says {header_len} bytes but only {} bytes follow it",
            len - 8
        )));
    }
    if header_len > MAX_HEADER_BYTES {
        return Err(corrupt(format!(
            "the header is {header_len} bytes, more than safetensors' limit of \
             {MAX_HEADER_BYTES}"
        )));
    }
    let data_len = len - 8 - header_len;
    // Invalid JSON or fields of the wrong type are left to safetensors to report.
    let header = &bytes[8..8 + header_len as usize];
    let Ok(serde_json::Value::Object(tensors)) = serde_json::from_slice(header) else {
        return Ok(());
    };
    for (name, info) in &tensors {
        let Some([start, end]) = info
            .get("data_offsets")
            .and_then(|o| o.as_array())
            .and_then(|o| <&[serde_json::Value; 2]>::try_from(o.as_slice()).ok())
        else {
            continue;
        };
        for offset in [start, end] {
            if let Some(offset) = offset.as_u64().filter(|&o| o > data_len) {
                return Err(corrupt(format!(
                    "tensor `{name}`'s data_offsets reach byte {offset} of the data, but the \
                     file holds only {data_len} bytes after its header"
                )));
            }
        }
    }
    Ok(())
}

impl TensorFiles {
    /// Maps `paths` and reads their headers; a truncated or corrupt file is an error naming it.
    pub fn open(paths: Vec<PathBuf>) -> Result<Self, WeightsError> {
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (fi, path) in paths.into_iter().enumerate() {
            let mmap = open_mmap(&path)?;
            check_against_length(&path, &mmap)?;
            let (header, meta) =
                SafeTensors::read_metadata(&mmap).map_err(|e| WeightsError::Corrupt {
                    file: path.clone(),
                    detail: format!("{e:?}"),
                })?;
            for (name, info) in meta.tensors() {
                entries.insert(
                    name,
                    Entry {
                        file: fi,
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        start: 8 + header + info.data_offsets.0,
                        end: 8 + header + info.data_offsets.1,
                    },
                );
            }
            files.push((path, mmap));
        }
        Ok(Self { files, entries })
    }

    /// The first file (for messages about the checkpoint as a whole).
    pub fn first_path(&self) -> &Path {
        &self.files[0].0
    }

    /// How many tensors the files hold.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.entries.keys()
    }

    /// Checks that `name` exists with `shape` and a float element type.
    /// Checks that `name` is there with `shape` and a float type.
    pub fn check(&self, name: &str, shape: &[usize], at: Expected) -> Result<(), WeightsError> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| WeightsError::MissingTensor {
                name: name.to_string(),
                expected: shape.to_vec(),
                at,
            })?;
        if e.shape != shape {
            return Err(WeightsError::ShapeMismatch {
                name: name.to_string(),
                expected: shape.to_vec(),
                found: e.shape.clone(),
                at,
            });
        }
        if !matches!(e.dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16) {
            return Err(WeightsError::UnsupportedDtype {
                name: name.to_string(),
                dtype: format!("{:?}", e.dtype),
            });
        }
        Ok(())
    }

    /// Decodes `name` (checked before) to float32 in its file shape.
    pub fn read(&self, name: &str) -> Tensor {
        let e = &self.entries[name];
        let mmap = &self.files[e.file].1;
        let dtype = match e.dtype {
            Dtype::F32 => SourceDType::F32,
            Dtype::F16 => SourceDType::F16,
            _ => SourceDType::BF16,
        };
        let t = Tensor::new(e.shape.clone(), decode_to_f32(&mmap[e.start..e.end], dtype));
        release_pages(mmap, e.start, e.end);
        t
    }
}
