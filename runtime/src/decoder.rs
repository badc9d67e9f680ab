//! The decoder step: its session, the bundle's step layout, and a pool of decoder states.
//!
//! A state ([`StepState`]) is everything bound to the step session for one utterance: the
//! cross K/V and mask, the self-attention cache and the per-step inputs and output, bound once
//! with IO binding, so a step only writes the new tokens and position, runs, and reads the
//! logits. With the CUDA provider the cache and cross K/V live on the GPU; only tokens, the
//! position (in) and the logits (out) cross to the host each step.
//!
//! States are expensive (the cache is hundreds of MB at full size) and a captured CUDA graph
//! replays the device addresses it was captured with, so states are pooled per text bucket:
//! an utterance checks one out ([`DecoderStep::checkout`]), refills its cross K/V and mask in
//! place, and gives it back when dropped. Two utterances alive at once get two states.
//!
//! In CUDA-graph mode there is one state per bucket, captured as graph `gpu_graph_id = bucket`,
//! and utterances take turns whole: with ONNX Runtime 1.31.1 on the H200, captured graphs
//! replayed step by step in turn from several threads gave wrong codes, whether each state
//! had its own graph id or only buckets did (`benchmarks/gpu.md`, runs 11 and 12). A second
//! utterance waits for the first to end; on the thread whose utterance is alive it would wait
//! forever, so it gets [`RuntimeError::StateBusy`] instead.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;

use dia_bundle::layout::{CacheUpdate, KLayout, PositionInput, StepLayout, TokenIds};
use dia_bundle::{names, DecoderConfig, MASK_BIAS};
use ort::memory::Allocator;
use ort::session::{IoBinding, RunOptions, Session};
use ort::value::{DynTensor, PrimitiveTensorElementType, Tensor, TensorElementType};

use crate::cuda_copy::CudaCopy;
use crate::encoder::CrossInputs;
use crate::error::RuntimeError;
use crate::kv_cache::{tensor_type, KvCache, Placement};

/// Where a step's wall time went, summed over the steps run so far (seconds).
#[derive(Clone, Copy, Debug, Default)]
pub struct StepTimings {
    /// Host-to-device copies of the tokens and position (GPU only).
    pub upload_s: f64,
    /// The session run (graph replay, or every kernel launch, plus ONNX Runtime's own copies).
    pub run_s: f64,
    /// Device-to-host copy of the logits (GPU only), and writing returned cache rows.
    pub download_s: f64,
    pub steps: usize,
}

impl StepTimings {
    /// Adds another generation's timings (a script's segments).
    pub fn add(&mut self, other: &StepTimings) {
        self.upload_s += other.upload_s;
        self.run_s += other.run_s;
        self.download_s += other.download_s;
        self.steps += other.steps;
    }
}

/// Decoder states by text bucket.
#[derive(Default)]
struct Pool {
    idle: HashMap<usize, Vec<StepState>>,
    /// Turn-taking mode: the thread whose utterance is alive.
    held: Option<ThreadId>,
}

/// The decoder-step graph and what runs it.
pub struct DecoderStep {
    /// Declared first: states are bound to the session and are dropped before it.
    pool: Mutex<Pool>,
    /// Signalled when a state goes back to the pool (CUDA-graph mode waits on it).
    returned: Condvar,
    session: Mutex<Session>,
    layout: StepLayout,
    cfg: DecoderConfig,
    bos: i64,
    /// The GPU the state lives on, when the step runs on CUDA.
    on_cuda: bool,
    /// Capture the step as a CUDA graph (one per bucket).
    cuda_graph: bool,
    /// One utterance at a time, one state per bucket (CUDA-graph mode, or asked for).
    exclusive: bool,
    /// Direct copies of the per-step inputs and logits (CUDA provider only).
    cuda_copy: Option<CudaCopy>,
}

impl DecoderStep {
    pub fn new(
        session: Session,
        layout: StepLayout,
        cfg: DecoderConfig,
        bos: i64,
        on_cuda: bool,
        cuda_graph: bool,
        utterances_take_turns: bool,
    ) -> Self {
        Self {
            pool: Mutex::new(Pool::default()),
            returned: Condvar::new(),
            session: Mutex::new(session),
            layout,
            cfg,
            bos,
            on_cuda,
            cuda_graph: cuda_graph && on_cuda,
            exclusive: utterances_take_turns || (cuda_graph && on_cuda),
            cuda_copy: on_cuda.then(CudaCopy::load).flatten(),
        }
    }

    pub fn layout(&self) -> &StepLayout {
        &self.layout
    }

    pub(crate) fn cfg(&self) -> &DecoderConfig {
        &self.cfg
    }

    pub(crate) fn bos(&self) -> i64 {
        self.bos
    }

    pub(crate) fn on_cuda(&self) -> bool {
        self.on_cuda
    }

    pub(crate) fn cuda_copy(&self) -> Option<&CudaCopy> {
        self.cuda_copy.as_ref()
    }

    /// Whether the step replays captured CUDA graphs.
    pub fn cuda_graph(&self) -> bool {
        self.cuda_graph
    }

    pub(crate) fn session(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn pool(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A state for these cross inputs: an idle one of the same bucket, refilled, or a new one.
    /// It goes back to the pool when the returned utterance is dropped. In turn-taking
    /// (CUDA-graph) mode this waits while another thread's utterance is alive.
    pub fn checkout(&self, cross: CrossInputs) -> Result<Utterance<'_>, RuntimeError> {
        let bucket = cross.bucket;
        let idle = {
            let mut pool = self.pool();
            if self.exclusive {
                let me = std::thread::current().id();
                while let Some(holder) = pool.held {
                    if holder == me {
                        return Err(RuntimeError::StateBusy);
                    }
                    pool = self.returned.wait(pool).unwrap_or_else(|e| e.into_inner());
                }
                pool.held = Some(me);
            }
            pool.idle.get_mut(&bucket).and_then(|v| v.pop())
        };
        // Built or refilled outside the pool's lock; on failure the bucket is free again.
        let state = match idle {
            Some(mut s) => s.refill(cross).map(|()| s),
            None => StepState::new(self, cross, bucket),
        };
        match state {
            Ok(state) => Ok(Utterance {
                decoder: self,
                state: Some(state),
                bucket,
                timings: StepTimings::default(),
            }),
            Err(e) => {
                self.release(bucket, None);
                Err(e)
            }
        }
    }

    /// Gives a bucket's state back (if any) and ends the utterance's turn.
    fn release(&self, bucket: usize, state: Option<StepState>) {
        let mut pool = self.pool();
        if let Some(s) = state {
            pool.idle.entry(bucket).or_default().push(s);
        }
        pool.held = None;
        drop(pool);
        self.returned.notify_all();
    }

    /// States built so far and idle now, for tests and diagnostics.
    pub fn idle_states(&self) -> usize {
        self.pool().idle.values().map(Vec::len).sum()
    }
}

/// Device copies of the step's inputs and output, when the step runs on a GPU: ONNX Runtime
/// copies a host input to the device when it is bound, not when the step runs, so per-step
/// inputs must be device buffers the runtime copies into (and a CUDA graph needs them at fixed
/// addresses anyway).
struct DeviceIo {
    tokens: DynTensor,
    position: DynTensor,
    logits: Tensor<f32>,
}

/// Extra inputs and outputs of a step that returns its cache rows (coreml).
struct ReturnedRows {
    self_bias: Tensor<f32>,
    rows: Vec<(DynTensor, DynTensor)>,
}

/// Everything bound to the step session for an utterance.
pub struct StepState {
    binding: IoBinding,
    /// This step's token ids, `[2, C]` (int64, or int32 offset per channel).
    tokens: DynTensor,
    position: DynTensor,
    logits: Tensor<f32>,
    cache: KvCache,
    cross: Vec<DynTensor>,
    mask: DynTensor,
    device_io: Option<DeviceIo>,
    returned: Option<ReturnedRows>,
    place: Placement,
    run_options: Option<RunOptions>,
}

fn id_tensor(alloc: &Allocator, ids: TokenIds, c: usize) -> Result<DynTensor, RuntimeError> {
    Ok(match ids {
        TokenIds::I64 => Tensor::<i64>::new(alloc, [2usize, c])?.upcast(),
        TokenIds::I32ChannelOffset => Tensor::<i32>::new(alloc, [2usize, c])?.upcast(),
    })
}

fn position_tensor(alloc: &Allocator, p: PositionInput) -> Result<DynTensor, RuntimeError> {
    Ok(match p {
        PositionInput::I64 => Tensor::<i64>::new(alloc, [1usize])?.upcast(),
        PositionInput::I32 => Tensor::<i32>::new(alloc, [1usize])?.upcast(),
        PositionInput::I32PerRow => Tensor::<i32>::new(alloc, [2usize])?.upcast(),
    })
}

impl StepState {
    /// Allocates a state (on the GPU with the CUDA provider) around these cross inputs (host
    /// tensors, uploaded here) and binds it all to the step session.
    fn new(dec: &DecoderStep, cross: CrossInputs, bucket: usize) -> Result<Self, RuntimeError> {
        let l = &dec.layout;
        let d = &dec.cfg;
        let c = d.num_channels;
        let dtype = tensor_type(l.dtype);
        let session = dec.session();
        let place = Placement::new(&session, dec.on_cuda)?;
        let host = Allocator::default();
        let mut binding = session.create_binding()?;

        let mut tokens = id_tensor(&host, l.tokens, c)?;
        let mut position = position_tensor(&host, l.position)?;
        write_tokens(&mut tokens, &vec![dec.bos; c], d.vocab_size)?;
        set_position(&mut position, 0)?;
        let mut logits = Tensor::<f32>::new(&host, [2usize, c, d.vocab_size])?;
        let mut device_io = match place.device_allocator() {
            Some(dev) => Some(DeviceIo {
                tokens: id_tensor(dev, l.tokens, c)?,
                position: position_tensor(dev, l.position)?,
                logits: Tensor::<f32>::new(dev, [2usize, c, d.vocab_size])?,
            }),
            None => None,
        };
        let mut cache = KvCache::new(
            &place,
            dtype,
            2,
            d.num_hidden_layers,
            d.num_key_value_heads,
            d.head_dim,
            l,
        )?;
        let mut cross_dev = Vec::with_capacity(2 * cross.layers.len());
        for layer in cross.layers {
            cross_dev.push(place.upload(layer.k)?);
            cross_dev.push(place.upload(layer.v)?);
        }
        let mask = place.upload(cross.mask)?;
        binding.bind_input(l.cross_mask_name(), &mask)?;
        match &device_io {
            Some(io) => {
                binding.bind_input(names::step::TOKENS, &io.tokens)?;
                binding.bind_input(names::step::STEP, &io.position)?;
            }
            None => {
                binding.bind_input(names::step::TOKENS, &tokens)?;
                binding.bind_input(names::step::STEP, &position)?;
            }
        }
        let mut returned = match l.cache_update {
            CacheUpdate::InPlace => None,
            CacheUpdate::ReturnedRows => {
                let mut self_bias = Tensor::<f32>::new(&host, [l.max_frames])?;
                self_bias.extract_tensor_mut().1.fill(MASK_BIAS);
                binding.bind_input(names::step::SELF_BIAS, &self_bias)?;
                Some(ReturnedRows {
                    self_bias,
                    rows: Vec::new(),
                })
            }
        };
        let (kv, hd) = (d.num_key_value_heads, d.head_dim);
        for (i, layer) in cache.layers.iter_mut().enumerate() {
            binding.bind_input(names::step::self_k(i), &layer.k)?;
            binding.bind_input(names::step::self_v(i), &layer.v)?;
            binding.bind_input(names::step::cross_k(i), &cross_dev[2 * i])?;
            binding.bind_input(names::step::cross_v(i), &cross_dev[2 * i + 1])?;
            match returned.as_mut() {
                Some(r) => {
                    // The step returns the new rows; the runtime writes them after the step.
                    let mut nk = DynTensor::new(&host, dtype, l.k_shape(2, kv, hd, 1).to_vec())?;
                    let mut nv = DynTensor::new(&host, dtype, vec![2, kv, 1, hd])?;
                    binding.bind_output(names::step::new_k(i), &mut nk)?;
                    binding.bind_output(names::step::new_v(i), &mut nv)?;
                    r.rows.push((nk, nv));
                }
                None => {
                    // The same buffers as outputs: the step writes its slot in place.
                    binding.bind_output(names::step::present_k(i), &mut layer.k)?;
                    binding.bind_output(names::step::present_v(i), &mut layer.v)?;
                }
            }
        }
        match device_io.as_mut() {
            Some(io) => binding.bind_output(names::step::LOGITS, &mut io.logits)?,
            None => binding.bind_output(names::step::LOGITS, &mut logits)?,
        }
        drop(session);
        let run_options = if dec.cuda_graph {
            let mut o = RunOptions::new()?;
            o.set("gpu_graph_id", bucket.to_string())?;
            Some(o)
        } else {
            None
        };
        Ok(Self {
            binding,
            tokens,
            position,
            logits,
            cache,
            cross: cross_dev,
            mask,
            device_io,
            returned,
            place,
            run_options,
        })
    }

    /// Writes a new utterance's cross K/V and mask into the bound buffers. The cache is not
    /// cleared: every step attends only the slots it has written (stale slots are masked).
    fn refill(&mut self, cross: CrossInputs) -> Result<(), RuntimeError> {
        let mut dst = self.cross.iter_mut();
        for layer in cross.layers {
            for src in [layer.k, layer.v] {
                let d = dst.next().ok_or_else(|| {
                    RuntimeError::Internal("cross inputs of another layer count".into())
                })?;
                self.place.upload_into(&src, d)?;
            }
        }
        self.place.upload_into(&cross.mask, &mut self.mask)
    }
}

/// Writes one frame's tokens (one per channel, the same for both CFG rows) into `ids`.
fn write_tokens(ids: &mut DynTensor, frame: &[i64], vocab: usize) -> Result<(), RuntimeError> {
    let c = frame.len();
    match *ids.data_type() {
        TensorElementType::Int32 => {
            let buf = ids.try_extract_tensor_mut::<i32>()?.1;
            for row in buf.chunks_exact_mut(c) {
                for (ch, (dst, &tk)) in row.iter_mut().zip(frame).enumerate() {
                    *dst = (tk + (ch * vocab) as i64) as i32;
                }
            }
        }
        _ => {
            let buf = ids.try_extract_tensor_mut::<i64>()?.1;
            buf[..c].copy_from_slice(frame);
            buf[c..].copy_from_slice(frame);
        }
    }
    Ok(())
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

/// One utterance's hold on a decoder state: run steps with [`Utterance::step`]; dropping it
/// gives the state back to the pool.
pub struct Utterance<'d> {
    decoder: &'d DecoderStep,
    state: Option<StepState>,
    bucket: usize,
    pub timings: StepTimings,
}

impl Drop for Utterance<'_> {
    fn drop(&mut self) {
        self.decoder.release(self.bucket, self.state.take());
    }
}

impl Utterance<'_> {
    /// Runs one decoder step at `position` with this frame's `tokens` (one per channel, the
    /// same for both CFG rows); returns the logits `[2, C, V]` (unconditional, conditional).
    pub fn step(&mut self, tokens: &[i64], position: usize) -> Result<&[f32], RuntimeError> {
        let dec = self.decoder;
        if position >= dec.layout.max_frames {
            return Err(RuntimeError::PastCache {
                position,
                max_frames: dec.layout.max_frames,
            });
        }
        if tokens.len() != dec.cfg.num_channels {
            return Err(RuntimeError::Internal(format!(
                "a frame of {} tokens for {} channels",
                tokens.len(),
                dec.cfg.num_channels
            )));
        }
        let st = self.state.as_mut().expect("held until drop");
        write_tokens(&mut st.tokens, tokens, dec.cfg.vocab_size)?;
        set_position(&mut st.position, position)?;
        if let Some(r) = st.returned.as_mut() {
            // Slots from `position` on are masked (stale rows of an earlier utterance too).
            let bias = r.self_bias.extract_tensor_mut().1;
            bias[..position].fill(0.0);
            bias[position..].fill(MASK_BIAS);
        }
        let t0 = std::time::Instant::now();
        if let Some(io) = st.device_io.as_mut() {
            match &dec.cuda_copy {
                Some(cc) => {
                    cc.to_device(&st.tokens, &mut io.tokens)?;
                    cc.to_device(&st.position, &mut io.position)?;
                }
                None => {
                    st.tokens.copy_into(&mut io.tokens)?;
                    st.position.copy_into(&mut io.position)?;
                }
            }
        }
        let t1 = std::time::Instant::now();
        {
            let mut session = dec.session();
            match &st.run_options {
                Some(o) => session.run_binding_with_options(&st.binding, o)?,
                None => session.run_binding(&st.binding)?,
            };
        }
        let t2 = std::time::Instant::now();
        if let Some(io) = st.device_io.as_ref() {
            match &dec.cuda_copy {
                Some(cc) => cc.to_host(&io.logits, &mut st.logits)?,
                None => io.logits.copy_into(&mut st.logits)?,
            }
        }
        if let Some(r) = st.returned.as_ref() {
            let transposed = dec.layout.k_layout == KLayout::Transposed;
            for (l, (nk, nv)) in st.cache.layers.iter_mut().zip(&r.rows) {
                write_row(&mut l.k, nk, position, transposed)?;
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
