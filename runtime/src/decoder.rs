//! One utterance's decoder state: the encoder's cross K/V, the self-attention cache and the
//! step inputs/outputs, all bound once to the decoder-step session with IO binding, so a step
//! only writes the new tokens and step index, runs, and reads the logits. With the CUDA
//! provider the cache and cross K/V live on the GPU; only tokens, the step index (in) and the
//! logits (out) cross to the host each step.

use std::fmt::Debug;

use ort::memory::Allocator;
use ort::session::IoBinding;
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

/// Device copies of the step's inputs and output (CUDA graph mode).
struct GraphIo {
    tokens: Tensor<i64>,
    step: DynTensor,
    logits: Tensor<f32>,
}

/// The step position input: int64 `[1]` (portable graphs) or int32 `[2]`, one per CFG row
/// (cuda-target graphs: `GroupQueryAttention`'s `seqlens_k`).
fn step_input(
    alloc: &Allocator,
    fused: bool,
) -> Result<DynTensor, RuntimeError> {
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
            values.into_iter().map(half::f16::from_f32).collect::<Vec<_>>(),
        ))?
        .upcast(),
        TensorElementType::Bfloat16 => Tensor::<half::bf16>::from_array((
            shape,
            values.into_iter().map(half::bf16::from_f32).collect::<Vec<_>>(),
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

pub struct Utterance<'m> {
    model: &'m DiaModel,
    binding: IoBinding,
    tokens: Tensor<i64>,
    step: DynTensor,
    logits: Tensor<f32>,
    /// The self-attention cache, bound to the session as inputs and outputs.
    _cache: KvCache,
    /// Cross K/V and mask, kept alive for the binding.
    _held: Vec<DynTensor>,
    /// Device-side step inputs/outputs when the step replays a CUDA graph.
    graph_io: Option<GraphIo>,
    /// Set for `--target coreml` bundles.
    rows_mode: Option<RowsMode>,
    pub timings: StepTimings,
    max_frames: usize,
}

impl<'m> Utterance<'m> {
    /// Runs the encoder on the CFG pair for `text` (conditional tokens, unpadded) and prepares
    /// a fresh decoder state.
    pub fn new(model: &'m DiaModel, text: &[i64]) -> Result<Self, RuntimeError> {
        let m = model.manifest();
        let cfg = &m.config;
        let d = &cfg.decoder_config;
        let t = m.max_text_len;
        if text.len() > t {
            return Err(RuntimeError::TextTooLong {
                tokens: text.len(),
                max: t,
            });
        }
        let dtype = element_type(&m.dtype)?;
        // The encoder runs on the text's own tokens: row 0 unconditional (all pad), row 1
        // conditional, both with the conditional mask (all true here). Positions past the text
        // are padding, which the decoder's cross-attention masks out: their K/V stay zero.
        let len = text.len();
        let mut tok = vec![0i64; 2 * len];
        tok[len..].copy_from_slice(text);
        let mut enc_out = model.run_encoder(tok, vec![true; 2 * len])?;
        let mut mask = vec![false; 2 * t];
        mask[..len].fill(true);
        mask[t..t + len].fill(true);

        let decoder = model.decoder_session();
        let cuda = model.provider() == ExecutionProvider::Cuda;
        let fused = model.is_cuda_target();
        let place = Placement::new(&decoder, cuda)?;
        let alloc = Allocator::default();
        let mut binding = decoder.create_binding()?;
        let mut tokens = Tensor::<i64>::new(&alloc, [2usize, d.num_channels])?;
        tokens.extract_tensor_mut().1.fill(cfg.bos_token_id);
        let mut step = step_input(&alloc, fused)?;
        set_position(&mut step, 0)?;
        let mut held = Vec::new();
        let mut logits = Tensor::<f32>::new(&alloc, [2usize, d.num_channels, d.vocab_size])?;
        // A CUDA graph replays fixed device addresses: then the step's inputs and outputs live
        // on the GPU too, and each step copies the tokens and step index up and the logits down.
        let graph_io = match (model.cuda_graph(), place.device_allocator()) {
            (true, Some(dev)) => Some(GraphIo {
                tokens: Tensor::<i64>::new(dev, [2usize, d.num_channels])?,
                step: step_input(dev, fused)?,
                logits: Tensor::<f32>::new(dev, [2usize, d.num_channels, d.vocab_size])?,
            }),
            _ => None,
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
        let coreml = model.is_coreml_target();
        match (&graph_io, coreml) {
            (_, true) => {}
            (Some(g), false) => {
                binding.bind_input("tokens", &g.tokens)?;
                binding.bind_input("step", &g.step)?;
            }
            (None, false) => {
                binding.bind_input("tokens", &tokens)?;
                binding.bind_input("step", &step)?;
            }
        }
        let mut rows_mode = None;
        if coreml {
            let mut tok32 = Tensor::<i32>::new(&alloc, [2usize, d.num_channels])?;
            tok32.extract_tensor_mut().1.fill(0);
            let mut step32 = Tensor::<i32>::new(&alloc, [1usize])?;
            step32.extract_tensor_mut().1[0] = 0;
            let mut self_bias = Tensor::<f32>::new(&alloc, [m.max_frames])?;
            self_bias.extract_tensor_mut().1.fill(MASK_BIAS);
            // 0 on text, the mask bias on padding.
            let cross: Vec<f32> = (0..2 * t)
                .map(|i| if i % t < len { 0.0 } else { MASK_BIAS })
                .collect();
            let cross_bias = Tensor::<f32>::from_array(([2usize, t], cross))?.upcast();
            binding.bind_input("tokens", &tok32)?;
            binding.bind_input("step", &step32)?;
            binding.bind_input("self_bias", &self_bias)?;
            binding.bind_input("cross_bias", &cross_bias)?;
            held.push(cross_bias);
            rows_mode = Some(RowsMode {
                tokens: tok32,
                step: step32,
                self_bias,
                rows: Vec::new(),
                vocab: d.vocab_size as i64,
            });
        } else if fused {
            // 0 on text, the mask bias on padding, added to the scores by MultiHeadAttention.
            let bias: Vec<f32> = mask
                .iter()
                .map(|&keep| if keep { 0.0 } else { MASK_BIAS })
                .collect();
            let bias = place.upload(float_tensor(dtype, vec![2, 1, 1, t], bias)?)?;
            binding.bind_input("cross_bias", &bias)?;
            held.push(bias);
        } else {
            let mask_t = place.upload(Tensor::<bool>::from_array(([2usize, t], mask))?.upcast())?;
            binding.bind_input("cross_mask", &mask_t)?;
            held.push(mask_t);
        }
        for (i, l) in cache.layers.iter_mut().enumerate() {
            binding.bind_input(format!("self_k_{i}"), &l.k)?;
            binding.bind_input(format!("self_v_{i}"), &l.v)?;
            // Portable graphs keep cross K transposed; the fused attention takes it as V is.
            for (kind, transposed) in [("cross_k", !fused), ("cross_v", false)] {
                let name = format!("{kind}_{i}");
                let v = enc_out
                    .remove(&name)
                    .ok_or_else(|| RuntimeError::GraphMismatch {
                        graph: "encoder".into(),
                        kind: "output",
                        name: name.clone(),
                    })?;
                let padded = place.upload(pad_cross(&v, dtype, t, transposed)?)?;
                binding.bind_input(&name, &padded)?;
                held.push(padded);
            }
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
                // The same buffers as outputs: the step's scatter writes its slot in place.
                binding.bind_output(format!("present_k_{i}"), &mut l.k)?;
                binding.bind_output(format!("present_v_{i}"), &mut l.v)?;
            }
        }
        let mut graph_io = graph_io;
        match graph_io.as_mut() {
            Some(g) => binding.bind_output("logits", &mut g.logits)?,
            None => binding.bind_output("logits", &mut logits)?,
        }
        drop(decoder);
        Ok(Self {
            model,
            binding,
            tokens,
            step,
            logits,
            _cache: cache,
            _held: held,
            graph_io,
            rows_mode,
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
        {
            let buf = self.tokens.extract_tensor_mut().1;
            let c = tokens.len();
            buf[..c].copy_from_slice(tokens);
            buf[c..].copy_from_slice(tokens);
        }
        set_position(&mut self.step, position)?;
        if let Some(rm) = self.rows_mode.as_mut() {
            let ids = rm.tokens.extract_tensor_mut().1;
            let c = tokens.len();
            for row in 0..2 {
                for (ch, &tk) in tokens.iter().enumerate() {
                    ids[row * c + ch] = (tk + ch as i64 * rm.vocab) as i32;
                }
            }
            rm.step.extract_tensor_mut().1[0] = position as i32;
        }
        let t0 = std::time::Instant::now();
        if let Some(g) = self.graph_io.as_mut() {
            self.tokens.copy_into(&mut g.tokens)?;
            self.step.copy_into(&mut g.step)?;
        }
        let t1 = std::time::Instant::now();
        {
            let mut session = self.model.decoder_session();
            session.run_binding(&self.binding)?;
        }
        let t2 = std::time::Instant::now();
        if let Some(g) = self.graph_io.as_ref() {
            g.logits.copy_into(&mut self.logits)?;
        }
        if let Some(rm) = self.rows_mode.as_mut() {
            for (l, (nk, nv)) in self._cache.layers.iter_mut().zip(&rm.rows) {
                write_row(&mut l.k, nk, position, true)?;
                write_row(&mut l.v, nv, position, false)?;
            }
            // The next step attends this slot too.
            rm.self_bias.extract_tensor_mut().1[position] = 0.0;
        }
        let t3 = std::time::Instant::now();
        self.timings.upload_s += (t1 - t0).as_secs_f64();
        self.timings.run_s += (t2 - t1).as_secs_f64();
        self.timings.download_s += (t3 - t2).as_secs_f64();
        self.timings.steps += 1;
        Ok(self.logits.extract_tensor().1)
    }
}
