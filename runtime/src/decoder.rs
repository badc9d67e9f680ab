//! One utterance's decoder state: the encoder's cross K/V, the self-attention cache and the
//! step inputs/outputs, all bound once to the decoder-step session with IO binding, so a step
//! only writes the new tokens and step index, runs, and reads the logits. With the CUDA
//! provider the cache and cross K/V live on the GPU; only tokens, the step index (in) and the
//! logits (out) cross to the host each step.
//!
//! A captured CUDA graph replays the device addresses it was captured with, so in CUDA-graph
//! mode (or with `ModelOptions::reuse_state`) the model keeps one `StepState` for its
//! lifetime and each utterance writes its cross K/V and mask into those same buffers
//! (utterances then take turns). Otherwise each utterance allocates its own.

use std::fmt::Debug;

use ort::memory::Allocator;
use std::collections::HashMap;
use std::sync::MutexGuard;

use ort::session::{IoBinding, RunOptions};
use ort::value::{DynTensor, DynValue, PrimitiveTensorElementType, Tensor, TensorElementType};

use crate::error::RuntimeError;
use crate::kv_cache::{element_type, KvCache, Placement};
use crate::model::DiaModel;
use crate::providers::ExecutionProvider;
use dia_bundle::MASK_BIAS;

/// Copies the encoder's cross K (`[2, KV, d, len]`, `transposed`) or V (`[2, KV, len, d]`)
/// into a zeroed host buffer of the step graph's fixed text length `t` (once per utterance).
fn pad_typed<T: PrimitiveTensorElementType + Copy + Default + Debug>(
    v: &DynValue,
    t: usize,
    transposed: bool,
) -> Result<DynTensor, RuntimeError> {
    let (shape, src) = v.try_extract_tensor::<T>()?;
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let (rows, len, d) = if transposed {
        (dims[0] * dims[1] * dims[2], dims[3], 1)
    } else {
        (dims[0] * dims[1], dims[2], dims[3])
    };
    let out_shape = if transposed {
        [dims[0], dims[1], dims[2], t]
    } else {
        [dims[0], dims[1], t, dims[3]]
    };
    let mut out = Tensor::<T>::new(&Allocator::default(), out_shape)?;
    let dst = out.extract_tensor_mut().1;
    dst.fill(T::default());
    // Each row holds `len` runs of `d` values; the padded row holds `t` of them.
    for r in 0..rows {
        dst[r * t * d..(r * t + len) * d].copy_from_slice(&src[r * len * d..(r + 1) * len * d]);
    }
    Ok(out.upcast())
}

fn pad_cross(
    v: &DynValue,
    dtype: TensorElementType,
    t: usize,
    transposed: bool,
) -> Result<DynTensor, RuntimeError> {
    match dtype {
        TensorElementType::Float16 => pad_typed::<half::f16>(v, t, transposed),
        TensorElementType::Bfloat16 => pad_typed::<half::bf16>(v, t, transposed),
        _ => pad_typed::<f32>(v, t, transposed),
    }
}

/// Where a step's wall time went, summed over the steps run so far (seconds).
#[derive(Clone, Copy, Debug, Default)]
pub struct StepTimings {
    /// Host-to-device copies of the tokens and step index (CUDA graph mode only).
    pub upload_s: f64,
    /// The session run (graph replay, or every kernel launch, plus ONNX Runtime's own copies).
    pub run_s: f64,
    /// Device-to-host copy of the logits (CUDA graph mode only).
    pub download_s: f64,
    pub steps: usize,
}

/// Device copies of the step's inputs and output, when the step runs on a GPU: ONNX Runtime
/// copies a host input to the device when it is bound, not when the step runs, so per-step
/// inputs must be device buffers the runtime copies into (and a CUDA graph needs them at fixed
/// addresses anyway).
struct DeviceIo {
    tokens: Tensor<i64>,
    step: DynTensor,
    logits: Tensor<f32>,
}

/// The step position input: int64 `[1]` (portable graphs) or int32 `[2]`, one per CFG row
/// (fused-target graphs: `GroupQueryAttention`'s `seqlens_k`).
fn step_input(alloc: &Allocator, fused: bool) -> Result<DynTensor, RuntimeError> {
    Ok(if fused {
        Tensor::<i32>::new(alloc, [2usize])?.upcast()
    } else {
        Tensor::<i64>::new(alloc, [1usize])?.upcast()
    })
}

fn set_position(step: &mut DynTensor, position: usize) -> Result<(), RuntimeError> {
    match *step.data_type() {
        TensorElementType::Int32 => step
            .try_extract_tensor_mut::<i32>()?
            .1
            .fill(position as i32),
        _ => step
            .try_extract_tensor_mut::<i64>()?
            .1
            .fill(position as i64),
    }
    Ok(())
}

/// `values` (float32) as a host tensor of the bundle's float dtype.
fn float_tensor(
    dtype: TensorElementType,
    shape: Vec<usize>,
    values: Vec<f32>,
) -> Result<DynTensor, RuntimeError> {
    Ok(match dtype {
        TensorElementType::Float16 => Tensor::<half::f16>::from_array((
            shape,
            values
                .into_iter()
                .map(half::f16::from_f32)
                .collect::<Vec<_>>(),
        ))?
        .upcast(),
        TensorElementType::Bfloat16 => Tensor::<half::bf16>::from_array((
            shape,
            values
                .into_iter()
                .map(half::bf16::from_f32)
                .collect::<Vec<_>>(),
        ))?
        .upcast(),
        _ => Tensor::<f32>::from_array((shape, values))?.upcast(),
    })
}

/// Writes a step's key (`[2, KV, d, 1]` into K `[2, KV, d, F]`, `transposed`) or value
/// (`[2, KV, 1, d]` into V `[2, KV, F, d]`) into cache slot `slot`.
fn write_row_typed<T: PrimitiveTensorElementType + Copy + Debug>(
    cache: &mut DynTensor,
    row: &DynTensor,
    slot: usize,
    transposed: bool,
) -> Result<(), RuntimeError> {
    let src = row.try_extract_tensor::<T>()?.1;
    let (shape, dst) = cache.try_extract_tensor_mut::<T>()?;
    let dims: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    if transposed {
        let (f, d) = (dims[3], dims[2]);
        for (r, col) in src.chunks_exact(d).enumerate() {
            for (i, &x) in col.iter().enumerate() {
                dst[(r * d + i) * f + slot] = x;
            }
        }
    } else {
        let (f, d) = (dims[2], dims[3]);
        for (r, v) in src.chunks_exact(d).enumerate() {
            dst[(r * f + slot) * d..(r * f + slot + 1) * d].copy_from_slice(v);
        }
    }
    Ok(())
}

fn write_row(
    cache: &mut DynTensor,
    row: &DynTensor,
    slot: usize,
    transposed: bool,
) -> Result<(), RuntimeError> {
    match *cache.data_type() {
        TensorElementType::Float16 => write_row_typed::<half::f16>(cache, row, slot, transposed),
        TensorElementType::Bfloat16 => write_row_typed::<half::bf16>(cache, row, slot, transposed),
        _ => write_row_typed::<f32>(cache, row, slot, transposed),
    }
}

/// State of a `--target coreml` step graph: int32 ids, float mask biases, and the new K/V
/// rows the runtime writes into the cache (Core ML updates nothing in place).
struct RowsMode {
    tokens: Tensor<i32>,
    step: Tensor<i32>,
    self_bias: Tensor<f32>,
    rows: Vec<(DynTensor, DynTensor)>,
    vocab: i64,
}

/// Everything bound to the decoder-step session for an utterance: the cache, cross K/V and
/// mask, and the per-step inputs and output.
pub(crate) struct StepState {
    binding: IoBinding,
    tokens: Tensor<i64>,
    step: DynTensor,
    logits: Tensor<f32>,
    cache: KvCache,
    /// Cross K, cross V per layer (in that order), then the cross mask or bias.
    cross: Vec<DynTensor>,
    device_io: Option<DeviceIo>,
    rows_mode: Option<RowsMode>,
    place: Placement,
    /// CUDA-graph mode: `gpu_graph_id` = the text bucket, one captured graph per bucket.
    run_options: Option<RunOptions>,
}

/// The cross mask (portable), or the additive bias (coreml `[2, T]` float32, cuda
/// `[2, 1, 1, T]` in the bundle dtype) for a text of `len` tokens padded to `t`.
fn cross_mask(
    model: &DiaModel,
    dtype: TensorElementType,
    len: usize,
    t: usize,
) -> Result<DynTensor, RuntimeError> {
    let keep = |i: usize| i % t < len;
    let bias = |i: usize| if keep(i) { 0.0 } else { MASK_BIAS };
    Ok(if model.is_coreml_target() {
        Tensor::<f32>::from_array(([2usize, t], (0..2 * t).map(bias).collect::<Vec<_>>()))?.upcast()
    } else if model.is_fused_target() {
        float_tensor(dtype, vec![2, 1, 1, t], (0..2 * t).map(bias).collect())?
    } else {
        Tensor::<bool>::from_array(([2usize, t], (0..2 * t).map(keep).collect::<Vec<_>>()))?
            .upcast()
    })
}

/// The encoder's cross K/V of every layer padded to `t` (host tensors, K then V per layer).
fn padded_cross(
    model: &DiaModel,
    enc_out: &mut std::collections::HashMap<String, DynValue>,
    dtype: TensorElementType,
    t: usize,
) -> Result<Vec<DynTensor>, RuntimeError> {
    // Portable and coreml graphs keep cross K transposed; the fused attention takes it as V is.
    let k_transposed = !model.is_fused_target();
    let layers = model.config().decoder_config.num_hidden_layers;
    let mut out = Vec::with_capacity(2 * layers + 1);
    for i in 0..layers {
        for (kind, transposed) in [("cross_k", k_transposed), ("cross_v", false)] {
            let name = format!("{kind}_{i}");
            let v = enc_out
                .remove(&name)
                .ok_or_else(|| RuntimeError::GraphMismatch {
                    graph: "encoder".into(),
                    kind: "output",
                    name: name.clone(),
                })?;
            out.push(pad_cross(&v, dtype, t, transposed)?);
        }
    }
    Ok(out)
}

impl StepState {
    /// Allocates the state (on the GPU with the CUDA provider) around this utterance's cross
    /// K/V and mask (host tensors, uploaded here) and binds it all to the step session.
    fn new(model: &DiaModel, host_cross: Vec<DynTensor>, t: usize) -> Result<Self, RuntimeError> {
        let m = model.manifest();
        let cfg = &m.config;
        let d = &cfg.decoder_config;
        let dtype = element_type(&m.dtype)?;
        let fused = model.is_fused_target();
        let coreml = model.is_coreml_target();
        let decoder = model.decoder_session();
        let cuda = model.provider() == ExecutionProvider::Cuda;
        let place = Placement::new(&decoder, cuda)?;
        let alloc = Allocator::default();
        let mut binding = decoder.create_binding()?;

        let mut tokens = Tensor::<i64>::new(&alloc, [2usize, d.num_channels])?;
        tokens.extract_tensor_mut().1.fill(cfg.bos_token_id);
        let mut step = step_input(&alloc, fused)?;
        set_position(&mut step, 0)?;
        let mut logits = Tensor::<f32>::new(&alloc, [2usize, d.num_channels, d.vocab_size])?;
        let mut device_io = match place.device_allocator() {
            Some(dev) => Some(DeviceIo {
                tokens: Tensor::<i64>::new(dev, [2usize, d.num_channels])?,
                step: step_input(dev, fused)?,
                logits: Tensor::<f32>::new(dev, [2usize, d.num_channels, d.vocab_size])?,
            }),
            None => None,
        };
        let mut cache = KvCache::new(
            &place,
            dtype,
            d.num_hidden_layers,
            2,
            d.num_key_value_heads,
            d.head_dim,
            m.max_frames,
            !fused,
        )?;
        let cross = host_cross
            .into_iter()
            .map(|h| place.upload(h))
            .collect::<Result<Vec<_>, _>>()?;
        let mask_name = if fused || coreml {
            "cross_bias"
        } else {
            "cross_mask"
        };
        binding.bind_input(mask_name, cross.last().expect("the mask"))?;

        let mut rows_mode = None;
        if coreml {
            let mut tok32 = Tensor::<i32>::new(&alloc, [2usize, d.num_channels])?;
            tok32.extract_tensor_mut().1.fill(0);
            let mut step32 = Tensor::<i32>::new(&alloc, [1usize])?;
            step32.extract_tensor_mut().1[0] = 0;
            let mut self_bias = Tensor::<f32>::new(&alloc, [m.max_frames])?;
            self_bias.extract_tensor_mut().1.fill(MASK_BIAS);
            binding.bind_input("tokens", &tok32)?;
            binding.bind_input("step", &step32)?;
            binding.bind_input("self_bias", &self_bias)?;
            rows_mode = Some(RowsMode {
                tokens: tok32,
                step: step32,
                self_bias,
                rows: Vec::new(),
                vocab: d.vocab_size as i64,
            });
        } else if let Some(io) = &device_io {
            binding.bind_input("tokens", &io.tokens)?;
            binding.bind_input("step", &io.step)?;
        } else {
            binding.bind_input("tokens", &tokens)?;
            binding.bind_input("step", &step)?;
        }
        for (i, l) in cache.layers.iter_mut().enumerate() {
            binding.bind_input(format!("self_k_{i}"), &l.k)?;
            binding.bind_input(format!("self_v_{i}"), &l.v)?;
            binding.bind_input(format!("cross_k_{i}"), &cross[2 * i])?;
            binding.bind_input(format!("cross_v_{i}"), &cross[2 * i + 1])?;
            if let Some(rm) = rows_mode.as_mut() {
                // Core ML graphs return the new rows; the runtime writes them after the step.
                let kd: Vec<i64> = l.k.shape().iter().copied().collect();
                let vd: Vec<i64> = l.v.shape().iter().copied().collect();
                let mut nk = DynTensor::new(&alloc, dtype, vec![kd[0], kd[1], kd[2], 1])?;
                let mut nv = DynTensor::new(&alloc, dtype, vec![vd[0], vd[1], 1, vd[3]])?;
                binding.bind_output(format!("new_k_{i}"), &mut nk)?;
                binding.bind_output(format!("new_v_{i}"), &mut nv)?;
                rm.rows.push((nk, nv));
            } else {
                // The same buffers as outputs: the step writes its slot in place.
                binding.bind_output(format!("present_k_{i}"), &mut l.k)?;
                binding.bind_output(format!("present_v_{i}"), &mut l.v)?;
            }
        }
        match device_io.as_mut() {
            Some(io) => binding.bind_output("logits", &mut io.logits)?,
            None => binding.bind_output("logits", &mut logits)?,
        }
        drop(decoder);
        let run_options = if model.cuda_graph() {
            let mut o = RunOptions::new()?;
            o.set("gpu_graph_id", t.to_string())?;
            Some(o)
        } else {
            None
        };
        Ok(Self {
            run_options,
            binding,
            tokens,
            step,
            logits,
            cache,
            cross,
            device_io,
            rows_mode,
            place,
        })
    }

    /// Writes a new utterance's cross K/V and mask into the bound buffers. The cache is not
    /// cleared: every step attends only the slots it has written (stale slots are masked).
    fn refill(&mut self, host_cross: Vec<DynTensor>) -> Result<(), RuntimeError> {
        for (dst, src) in self.cross.iter_mut().zip(host_cross) {
            self.place.upload_into(&src, dst)?;
        }
        Ok(())
    }
}

/// An utterance's state: its own, or the model's shared one.
enum StateRef<'m> {
    Owned(Box<StepState>),
    Shared(MutexGuard<'m, HashMap<usize, StepState>>, usize),
}

impl StateRef<'_> {
    fn get(&mut self) -> &mut StepState {
        match self {
            StateRef::Owned(s) => s,
            StateRef::Shared(g, t) => g.get_mut(t).expect("inserted before use"),
        }
    }
}

pub struct Utterance<'m> {
    model: &'m DiaModel,
    state: StateRef<'m>,
    pub timings: StepTimings,
    max_frames: usize,
}

impl<'m> Utterance<'m> {
    /// Runs the encoder on the CFG pair for `text` (conditional tokens, unpadded) and prepares
    /// the decoder state.
    pub fn new(model: &'m DiaModel, text: &[i64]) -> Result<Self, RuntimeError> {
        let m = model.manifest();
        if text.len() > m.max_text_len {
            return Err(RuntimeError::TextTooLong {
                tokens: text.len(),
                max: m.max_text_len,
            });
        }
        let t = model.text_bucket(text.len());
        let dtype = element_type(&m.dtype)?;
        // The encoder runs on the text's own tokens: row 0 unconditional (all pad), row 1
        // conditional, both with the conditional mask (all true here). Positions past the text
        // are padding, which the decoder's cross-attention masks out: their K/V stay zero.
        let len = text.len();
        let mut tok = vec![0i64; 2 * len];
        tok[len..].copy_from_slice(text);
        let mut enc_out = model.run_encoder(tok, vec![true; 2 * len])?;
        let mut host = padded_cross(model, &mut enc_out, dtype, t)?;
        host.push(cross_mask(model, dtype, len, t)?);

        let state = if model.reuse_state() {
            let mut shared = model.graph_state();
            match shared.get_mut(&t) {
                Some(s) => s.refill(host)?,
                None => {
                    let s = StepState::new(model, host, t)?;
                    shared.insert(t, s);
                }
            }
            StateRef::Shared(shared, t)
        } else {
            StateRef::Owned(Box::new(StepState::new(model, host, t)?))
        };
        Ok(Self {
            model,
            state,
            timings: StepTimings::default(),
            max_frames: m.max_frames,
        })
    }

    /// Runs one decoder step at `position` with this frame's `tokens` (one per channel, the
    /// same for both CFG rows); returns the logits `[2, C, V]` (unconditional, conditional).
    pub fn step(&mut self, tokens: &[i64], position: usize) -> Result<&[f32], RuntimeError> {
        if position >= self.max_frames {
            return Err(RuntimeError::InvalidOption(format!(
                "decoder step {position} is past the bundle's {} frames",
                self.max_frames
            )));
        }
        let st = self.state.get();
        {
            let buf = st.tokens.extract_tensor_mut().1;
            let c = tokens.len();
            buf[..c].copy_from_slice(tokens);
            buf[c..].copy_from_slice(tokens);
        }
        set_position(&mut st.step, position)?;
        if let Some(rm) = st.rows_mode.as_mut() {
            let ids = rm.tokens.extract_tensor_mut().1;
            let c = tokens.len();
            for row in 0..2 {
                for (ch, &tk) in tokens.iter().enumerate() {
                    ids[row * c + ch] = (tk + ch as i64 * rm.vocab) as i32;
                }
            }
            rm.step.extract_tensor_mut().1[0] = position as i32;
            // Slots from `position` on are masked (stale rows of an earlier utterance too).
            let bias = rm.self_bias.extract_tensor_mut().1;
            bias[..position].fill(0.0);
            bias[position..].fill(MASK_BIAS);
        }
        let t0 = std::time::Instant::now();
        let fast = self.model.cuda_copy();
        if let Some(io) = st.device_io.as_mut() {
            match fast {
                Some(cc) => {
                    cc.to_device(&st.tokens, &mut io.tokens)?;
                    cc.to_device(&st.step, &mut io.step)?;
                }
                None => {
                    st.tokens.copy_into(&mut io.tokens)?;
                    st.step.copy_into(&mut io.step)?;
                }
            }
        }
        let t1 = std::time::Instant::now();
        {
            let mut session = self.model.decoder_session();
            match &st.run_options {
                Some(o) => session.run_binding_with_options(&st.binding, o)?,
                None => session.run_binding(&st.binding)?,
            };
        }
        let t2 = std::time::Instant::now();
        if let Some(io) = st.device_io.as_ref() {
            match fast {
                Some(cc) => cc.to_host(&io.logits, &mut st.logits)?,
                None => io.logits.copy_into(&mut st.logits)?,
            }
        }
        if let Some(rm) = st.rows_mode.as_mut() {
            for (l, (nk, nv)) in st.cache.layers.iter_mut().zip(&rm.rows) {
                write_row(&mut l.k, nk, position, true)?;
                write_row(&mut l.v, nv, position, false)?;
            }
        }
        let t3 = std::time::Instant::now();
        self.timings.upload_s += (t1 - t0).as_secs_f64();
        self.timings.run_s += (t2 - t1).as_secs_f64();
        self.timings.download_s += (t3 - t2).as_secs_f64();
        self.timings.steps += 1;
        Ok(st.logits.extract_tensor().1)
    }
}
