//! Host <-> GPU copies of the per-step inputs and logits through the CUDA runtime itself.
//!
//! ONNX Runtime has no plain copy call: the `ort` crate copies by running a one-node Identity
//! session, about 25 µs a call, and a step makes three (tokens, position, logits). `cudaMemcpy`
//! on these few-KB buffers takes a few µs. The CUDA runtime library is the one ONNX Runtime's
//! CUDA provider already loaded; when it cannot be found the session copy is used instead.

use std::ffi::{c_int, c_void};

use ort::value::{DefiniteTensorValueTypeMarker, Value};

use crate::error::RuntimeError;

type Memcpy = unsafe extern "C" fn(*mut c_void, *const c_void, usize, c_int) -> c_int;

const HOST_TO_DEVICE: c_int = 1;
const DEVICE_TO_HOST: c_int = 2;

/// `cudaMemcpy` from the CUDA runtime library.
pub struct CudaCopy {
    memcpy: Memcpy,
    _lib: libloading::Library,
}

impl CudaCopy {
    /// Loads the CUDA runtime (CUDA 13, 12 or 11 names); `None` if none loads.
    pub fn load() -> Option<Self> {
        let names: &[&str] = if cfg!(windows) {
            &["cudart64_13.dll", "cudart64_12.dll", "cudart64_110.dll"]
        } else {
            &[
                "libcudart.so.13",
                "libcudart.so.12",
                "libcudart.so.11.0",
                "libcudart.so",
            ]
        };
        names.iter().find_map(|name| {
            // SAFETY: loading the CUDA runtime runs no initialisation beyond the library's own;
            // the symbol has cudaMemcpy's C signature.
            unsafe {
                let lib = libloading::Library::new(*name).ok()?;
                let memcpy = *lib.get::<Memcpy>(b"cudaMemcpy\0").ok()?;
                Some(Self { memcpy, _lib: lib })
            }
        })
    }

    fn copy(
        &self,
        dst: *mut c_void,
        src: *const c_void,
        bytes: usize,
        kind: c_int,
    ) -> Result<(), RuntimeError> {
        // SAFETY: callers pass the data pointers of two tensors of `bytes` bytes each, the
        // source on the side `kind` says; cudaMemcpy returns after the copy is complete.
        let status = unsafe { (self.memcpy)(dst, src, bytes, kind) };
        if status == 0 {
            Ok(())
        } else {
            Err(RuntimeError::Cuda(format!(
                "cudaMemcpy failed with CUDA error {status}"
            )))
        }
    }

    /// Copies host tensor `src` into device tensor `dst` (same shape and type).
    pub fn to_device<A, B>(&self, src: &Value<A>, dst: &mut Value<B>) -> Result<(), RuntimeError>
    where
        A: DefiniteTensorValueTypeMarker + ?Sized,
        B: DefiniteTensorValueTypeMarker + ?Sized,
    {
        let bytes = byte_len(src, dst)?;
        self.copy(dst.data_ptr_mut(), src.data_ptr(), bytes, HOST_TO_DEVICE)
    }

    /// Copies all of host tensor `src` into device tensor `dst` from byte `offset` on (a
    /// block of rows of a batch).
    pub fn to_device_at<A, B>(
        &self,
        src: &Value<A>,
        dst: &mut Value<B>,
        offset: usize,
    ) -> Result<(), RuntimeError>
    where
        A: DefiniteTensorValueTypeMarker + ?Sized,
        B: DefiniteTensorValueTypeMarker + ?Sized,
    {
        let (bytes, room) = region(src, dst, offset)?;
        debug_assert!(bytes <= room);
        // SAFETY: `region` checked that the block lies inside `dst`.
        let at = unsafe { dst.data_ptr_mut().cast::<u8>().add(offset) };
        self.copy(at.cast(), src.data_ptr(), bytes, HOST_TO_DEVICE)
    }

    /// Copies device tensor `src` into host tensor `dst` (same shape and type).
    pub fn to_host<A, B>(&self, src: &Value<A>, dst: &mut Value<B>) -> Result<(), RuntimeError>
    where
        A: DefiniteTensorValueTypeMarker + ?Sized,
        B: DefiniteTensorValueTypeMarker + ?Sized,
    {
        let bytes = byte_len(src, dst)?;
        self.copy(dst.data_ptr_mut(), src.data_ptr(), bytes, DEVICE_TO_HOST)
    }
}

fn byte_len<A, B>(a: &Value<A>, b: &Value<B>) -> Result<usize, RuntimeError>
where
    A: DefiniteTensorValueTypeMarker + ?Sized,
    B: DefiniteTensorValueTypeMarker + ?Sized,
{
    let (sa, sb) = (a.shape(), b.shape());
    if sa != sb || a.data_type() != b.data_type() {
        return Err(RuntimeError::TensorCopy {
            from: format!("{:?} {sa:?}", a.data_type()),
            to: format!("{:?} {sb:?}", b.data_type()),
        });
    }
    a.size()
        .ok_or_else(|| RuntimeError::Internal("copy of a tensor without a size".into()))
}

/// The byte size of `src` and of `dst`, checking that `src` fits in `dst` from `offset` and
/// that both hold the same element type.
pub(crate) fn region<A, B>(
    src: &Value<A>,
    dst: &Value<B>,
    offset: usize,
) -> Result<(usize, usize), RuntimeError>
where
    A: DefiniteTensorValueTypeMarker + ?Sized,
    B: DefiniteTensorValueTypeMarker + ?Sized,
{
    let size = |v: Option<usize>| {
        v.ok_or_else(|| RuntimeError::Internal("copy of a tensor without a size".into()))
    };
    let (bytes, room) = (size(src.size())?, size(dst.size())?);
    if src.data_type() != dst.data_type() || offset.checked_add(bytes).is_none_or(|e| e > room) {
        return Err(RuntimeError::TensorCopy {
            from: format!("{:?} {:?}", src.data_type(), src.shape()),
            to: format!("{:?} {:?} at byte {offset}", dst.data_type(), dst.shape()),
        });
    }
    Ok((bytes, room))
}
