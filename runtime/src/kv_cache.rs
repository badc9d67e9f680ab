//! Where an utterance's decoder state lives, and the self-attention cache.
//!
//! The cache is, per layer, a K buffer (`[2, KV, d, F]` or `[2, KV, F, d]`, see
//! [`dia_bundle::KLayout`]) and a V buffer `[2, KV, F, d]` in the bundle's dtype, on the device the decoder runs on (host memory for
//! the CPU provider, GPU memory for CUDA). Each buffer is bound to the step session as both
//! the cache input and the present-cache output, so every step writes its one slot in place
//! inside the graph: the runtime never touches or copies the cache, and on a GPU it never
//! crosses to the host.

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::Session;
use ort::value::{DynTensor, TensorElementType, TensorRefMut};

use dia_bundle::{Dtype, StepLayout};

use crate::error::RuntimeError;

/// Allocates the decoder's state on the device its session runs on.
pub struct Placement {
    device: Option<Allocator>,
}

impl Placement {
    /// Host memory, or the GPU's when `cuda` (through the session's CUDA allocator).
    pub fn new(session: &Session, cuda: bool) -> Result<Self, RuntimeError> {
        let device = if cuda {
            let info = MemoryInfo::new(
                AllocationDevice::CUDA,
                0,
                AllocatorType::Device,
                MemoryType::Default,
            )?;
            Some(Allocator::new(session, info)?)
        } else {
            None
        };
        Ok(Self { device })
    }

    pub fn on_device(&self) -> bool {
        self.device.is_some()
    }

    /// The device allocator, when the state lives on a GPU.
    pub fn device_allocator(&self) -> Option<&Allocator> {
        self.device.as_ref()
    }

    /// Moves a host tensor to the device (a copy, once); on the host it is returned as is.
    pub fn upload(&self, host: DynTensor) -> Result<DynTensor, RuntimeError> {
        match &self.device {
            None => Ok(host),
            Some(alloc) => {
                let shape: Vec<i64> = host.shape().iter().copied().collect();
                let mut dev = DynTensor::new(alloc, *host.data_type(), shape)?;
                self.upload_into(&host, &mut dev)?;
                Ok(dev)
            }
        }
    }

    /// Copies a host tensor into an existing tensor of the same type and shape (on the device,
    /// or on the host).
    pub fn upload_into(&self, host: &DynTensor, dst: &mut DynTensor) -> Result<(), RuntimeError> {
        let shape: Vec<i64> = host.shape().iter().copied().collect();
        let dshape: Vec<i64> = dst.shape().iter().copied().collect();
        if shape != dshape || host.data_type() != dst.data_type() {
            return Err(RuntimeError::TensorCopy {
                from: format!("{:?} {shape:?}", host.data_type()),
                to: format!("{:?} {dshape:?}", dst.data_type()),
            });
        }
        if self.device.is_some() && *host.data_type() == TensorElementType::Bfloat16 {
            copy_as_f16(host, dst, shape)
        } else {
            host.copy_into(dst)?;
            Ok(())
        }
    }

    /// A zero-filled tensor on the device.
    pub fn zeros(
        &self,
        dtype: TensorElementType,
        shape: &[usize],
    ) -> Result<DynTensor, RuntimeError> {
        // The host allocator zero-fills; device memory gets those zeros by copy.
        let host = DynTensor::new(&Allocator::default(), dtype, shape.to_vec())?;
        self.upload(host)
    }
}

/// Copies a bfloat16 tensor as float16 bits: ONNX Runtime copies between devices by running
/// the `ort` crate's Identity model, whose opset has no bfloat16 Identity; the copy is bytes
/// either way.
fn copy_as_f16(host: &DynTensor, dev: &mut DynTensor, shape: Vec<i64>) -> Result<(), RuntimeError> {
    let dst_ptr = dev.data_ptr_mut();
    // SAFETY: both views cover exactly their tensor's buffer (same element count, 2-byte
    // elements), live only inside this function while `host` and `dev` are borrowed, and the
    // source view is only read.
    unsafe {
        let src = TensorRefMut::<half::f16>::from_raw(
            host.memory_info().clone(),
            host.data_ptr() as *mut _,
            shape.clone().into(),
        )?;
        let dst =
            TensorRefMut::<half::f16>::from_raw(dev.memory_info().clone(), dst_ptr, shape.into())?;
        src.copy_into(dst)?;
    }
    Ok(())
}

pub struct LayerCache {
    pub k: DynTensor,
    pub v: DynTensor,
}

pub struct KvCache {
    pub layers: Vec<LayerCache>,
}

impl KvCache {
    /// Zeroed caches of `rows` rows (2 per utterance, the CFG pair): slots past the current
    /// step are masked, but must hold finite values (0 · NaN is NaN in the attention product).
    /// K is laid out as `layout` says.
    pub fn new(
        place: &Placement,
        dtype: TensorElementType,
        rows: usize,
        layers: usize,
        kv_heads: usize,
        head_dim: usize,
        layout: &StepLayout,
    ) -> Result<Self, RuntimeError> {
        let frames = layout.max_frames;
        let k_shape = layout.k_shape(rows, kv_heads, head_dim, frames);
        let layers = (0..layers)
            .map(|_| {
                Ok(LayerCache {
                    k: place.zeros(dtype, &k_shape)?,
                    v: place.zeros(dtype, &[rows, kv_heads, frames, head_dim])?,
                })
            })
            .collect::<Result<Vec<_>, RuntimeError>>()?;
        Ok(Self { layers })
    }
}

/// The ONNX Runtime element type of a bundle dtype.
pub fn tensor_type(d: Dtype) -> TensorElementType {
    crate::session::ort_type(d.element_type())
}
