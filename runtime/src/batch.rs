//! Many utterances decoded together: one decoder step runs the CFG pairs of up to `slots`
//! utterances, each at its own position, with its own text, voice prompt, sampling settings,
//! seed and EOS. Utterances join and leave at step boundaries (continuous batching): a finished
//! one frees its slot for the next waiting one.
//!
//! A step reads the weights once for the whole batch, so while a step is bound by memory
//! latency rather than compute, B utterances cost little more than one.
//!
//! [`Batch`] is the single-threaded core (submit, step, events); [`Scheduler`] runs one on a
//! thread of its own and streams each request's frames back over a channel, for servers.
//!
//! How rows are laid out: slot `s` owns rows `2s` (unconditional) and `2s + 1` (conditional)
//! of every batch tensor: tokens `[2B, C]`, positions `[2B]` (`GroupQueryAttention`'s
//! per-row `seqlens_k`), the cross-attention bias `[2B, 1, 1, T]`, the caches `[2B, KV, F, d]`
//! and cross K/V `[2B, KVc, T, d]`. A joining utterance's encoder output is written into its
//! rows once; its cache rows are not cleared (every row attends only the slots it has
//! written). An idle slot runs at position 0 with BOS and its logits are ignored.
//!
//! Needs a bundle whose step takes a dynamic batch ([`dia_bundle::Manifest::step_batches`]:
//! the fused target, format 4 on).

use std::collections::VecDeque;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ort::memory::Allocator;
use ort::session::{IoBinding, RunOptions};
use ort::value::{DynTensor, Tensor};

use dia_bundle::{names, MASK_BIAS};

use crate::decoder::StepTimings;
use crate::encoder::{float_tensor, CrossInputs};
use crate::error::RuntimeError;
use crate::generate::{GenerateOptions, Generation};
use crate::kv_cache::{tensor_type, KvCache, Placement};
use crate::model::DiaModel;
use crate::sequence::Sequence;
use crate::tokenizer::encode_text;

/// How big a batch is.
#[derive(Clone, Copy, Debug)]
pub struct BatchOptions {
    /// Utterances decoded at once (each takes two rows of the step).
    pub slots: usize,
    /// Text positions every slot's cross-attention reads (a text bucket; default: the
    /// bundle's maximum text length). Cross-attention reads all of them every step, so a
    /// server of short requests wants this small; longer texts are refused at submit.
    pub text_len: Option<usize>,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            slots: 4,
            text_len: None,
        }
    }
}

/// A submitted utterance, as [`Batch::submit`] returns it.
pub type RequestId = u64;

/// What a batch step produced for a request.
#[derive(Debug)]
pub enum Event {
    /// Codes `[n, C]` (frame-major, delay reverted) of frames that became complete.
    Frames { id: RequestId, codes: Vec<i64> },
    /// The request is done; its generation holds every frame (also sent as `Frames`).
    Done {
        id: RequestId,
        generation: Box<Generation>,
    },
}

/// The decoder state of a whole batch: every step input and output bound once.
struct BatchState {
    binding: IoBinding,
    slots: usize,
    text_len: usize,
    channels: usize,
    vocab: usize,
    tokens: Tensor<i64>,
    position: Tensor<i32>,
    logits: Tensor<f32>,
    /// Device copies of tokens, position and logits (CUDA).
    device_io: Option<(Tensor<i64>, Tensor<i32>, Tensor<f32>)>,
    _cache: KvCache,
    /// Per layer cross K then V, `[2B, KVc, T, d]`.
    cross: Vec<DynTensor>,
    bias: DynTensor,
    place: Placement,
    run_options: Option<RunOptions>,
}

impl BatchState {
    fn new(model: &DiaModel, slots: usize, text_len: usize) -> Result<Self, RuntimeError> {
        let dec = model.decoder();
        let l = *dec.layout();
        let d = dec.cfg().clone();
        let (c, v) = (d.num_channels, d.vocab_size);
        let rows = 2 * slots;
        let dtype = tensor_type(l.dtype);
        let session = dec.session();
        let place = Placement::new(&session, dec.on_cuda())?;
        if place.on_device() && dec.cuda_copy().is_none() {
            return Err(RuntimeError::Cuda(
                "batched decoding on CUDA needs the CUDA runtime library (libcudart) that \
                 ONNX Runtime's CUDA provider uses, and it could not be loaded"
                    .into(),
            ));
        }
        let host = Allocator::default();
        let mut binding = session.create_binding()?;
        let mut tokens = Tensor::<i64>::new(&host, [rows, c])?;
        tokens.extract_tensor_mut().1.fill(dec.bos());
        let position = Tensor::<i32>::new(&host, [rows])?;
        let logits = Tensor::<f32>::new(&host, [rows, c, v])?;
        let mut device_io = match place.device_allocator() {
            Some(dev) => Some((
                Tensor::<i64>::new(dev, [rows, c])?,
                Tensor::<i32>::new(dev, [rows])?,
                Tensor::<f32>::new(dev, [rows, c, v])?,
            )),
            None => None,
        };
        let mut cache = KvCache::new(
            &place,
            dtype,
            rows,
            d.num_hidden_layers,
            d.num_key_value_heads,
            d.head_dim,
            &l,
        )?;
        let (ckv, chd) = (d.cross_num_key_value_heads, d.cross_head_dim);
        let mut cross = Vec::with_capacity(2 * d.num_hidden_layers);
        for _ in 0..2 * d.num_hidden_layers {
            cross.push(place.zeros(dtype, &[rows, ckv, text_len, chd])?);
        }
        // Every text position masked until a slot is filled.
        let bias = float_tensor(
            l.dtype,
            vec![rows, 1, 1, text_len],
            vec![MASK_BIAS; rows * text_len],
        )?;
        let bias = place.upload(bias)?;
        binding.bind_input(l.cross_mask_name(), &bias)?;
        match &device_io {
            Some((t, p, _)) => {
                binding.bind_input(names::step::TOKENS, t)?;
                binding.bind_input(names::step::STEP, p)?;
            }
            None => {
                binding.bind_input(names::step::TOKENS, &tokens)?;
                binding.bind_input(names::step::STEP, &position)?;
            }
        }
        for (i, layer) in cache.layers.iter_mut().enumerate() {
            binding.bind_input(names::step::self_k(i), &layer.k)?;
            binding.bind_input(names::step::self_v(i), &layer.v)?;
            binding.bind_input(names::step::cross_k(i), &cross[2 * i])?;
            binding.bind_input(names::step::cross_v(i), &cross[2 * i + 1])?;
            // The same buffers as outputs: the step writes each row's slot in place.
            binding.bind_output(names::step::present_k(i), &mut layer.k)?;
            binding.bind_output(names::step::present_v(i), &mut layer.v)?;
        }
        let mut logits = logits;
        match device_io.as_mut() {
            Some((_, _, lg)) => binding.bind_output(names::step::LOGITS, lg)?,
            None => binding.bind_output(names::step::LOGITS, &mut logits)?,
        }
        drop(session);
        let run_options = if model.cuda_graph() {
            // One graph per batch state, apart from the single-utterance buckets' ids.
            let mut o = RunOptions::new()?;
            o.set(
                "gpu_graph_id",
                (1_000_000 + slots * 10_000 + text_len).to_string(),
            )?;
            Some(o)
        } else {
            None
        };
        Ok(Self {
            binding,
            slots,
            text_len,
            channels: c,
            vocab: v,
            tokens,
            position,
            logits,
            device_io,
            _cache: cache,
            cross,
            bias,
            place,
            run_options,
        })
    }

    /// Writes an utterance's encoder output (`[2, KVc, T, d]` per layer, its mask `[2, 1, 1,
    /// T]`) into the rows of `slot`.
    fn fill(
        &mut self,
        model: &DiaModel,
        slot: usize,
        cross: CrossInputs,
    ) -> Result<(), RuntimeError> {
        let mut dst = self.cross.iter_mut();
        for layer in cross.layers {
            for src in [layer.k, layer.v] {
                let d = dst.next().ok_or_else(|| {
                    RuntimeError::Internal("cross inputs of another layer count".into())
                })?;
                write_rows(model, &self.place, &src, d, slot)?;
            }
        }
        write_rows(model, &self.place, &cross.mask, &mut self.bias, slot)
    }

    /// Runs one step with the tokens and positions written; returns the step's timings.
    fn run(&mut self, model: &DiaModel, t: &mut StepTimings) -> Result<(), RuntimeError> {
        let dec = model.decoder();
        let t0 = Instant::now();
        if let Some((tok, pos, _)) = self.device_io.as_mut() {
            let cc = dec.cuda_copy().expect("checked at creation");
            cc.to_device(&self.tokens, tok)?;
            cc.to_device(&self.position, pos)?;
        }
        let t1 = Instant::now();
        {
            let mut session = dec.session();
            match &self.run_options {
                Some(o) => session.run_binding_with_options(&self.binding, o)?,
                None => session.run_binding(&self.binding)?,
            };
        }
        let t2 = Instant::now();
        if let Some((_, _, lg)) = self.device_io.as_ref() {
            dec.cuda_copy()
                .expect("checked at creation")
                .to_host(lg, &mut self.logits)?;
        }
        let t3 = Instant::now();
        t.upload_s += (t1 - t0).as_secs_f64();
        t.run_s += (t2 - t1).as_secs_f64();
        t.download_s += (t3 - t2).as_secs_f64();
        t.steps += 1;
        Ok(())
    }
}

/// Copies `src` (`[2, ...]`: one utterance's rows) over rows `2 slot, 2 slot + 1` of `dst`
/// (`[2B, ...]`, same inner dims and type), on the host or the GPU.
fn write_rows(
    model: &DiaModel,
    place: &Placement,
    src: &DynTensor,
    dst: &mut DynTensor,
    slot: usize,
) -> Result<(), RuntimeError> {
    let inner = |t: &DynTensor| t.shape().iter().skip(1).copied().collect::<Vec<i64>>();
    if src.shape().first() != Some(&2) || inner(src) != inner(dst) {
        return Err(RuntimeError::TensorCopy {
            from: format!("{:?} {:?}", src.data_type(), src.shape()),
            to: format!("rows of {:?} {:?}", dst.data_type(), dst.shape()),
        });
    }
    let (bytes, _) = crate::cuda_copy::region(src, dst, 0)?;
    let offset = slot * bytes;
    if place.on_device() {
        let cc = model
            .decoder()
            .cuda_copy()
            .ok_or_else(|| RuntimeError::Cuda("no CUDA runtime to copy with".into()))?;
        return cc.to_device_at(src, dst, offset);
    }
    crate::cuda_copy::region(src, dst, offset)?;
    // SAFETY: `region` checked that `bytes` bytes from `offset` lie inside `dst` and that the
    // types match; both are host tensors and do not overlap (distinct allocations).
    unsafe {
        std::ptr::copy_nonoverlapping(
            src.data_ptr().cast::<u8>(),
            dst.data_ptr_mut().cast::<u8>().add(offset),
            bytes,
        );
    }
    Ok(())
}

/// An utterance waiting for a slot: validated, its text tokenized.
struct Waiting {
    id: RequestId,
    tokens: Vec<i64>,
    seq: Sequence,
}

/// An utterance in a slot.
struct Active {
    id: RequestId,
    seq: Sequence,
    encoder_s: f64,
    started: Instant,
    first_step_s: f64,
    timings: StepTimings,
}

/// Many utterances decoded in the rows of one step (see the module docs).
pub struct Batch<'m> {
    model: &'m DiaModel,
    state: BatchState,
    slots: Vec<Option<Active>>,
    waiting: VecDeque<Waiting>,
    next_id: RequestId,
    /// Timings of every batch step run so far.
    pub timings: StepTimings,
    /// Seconds spent sampling, all slots.
    pub sample_s: f64,
    /// Seconds spent admitting utterances into slots (their encoder runs and row copies).
    pub admit_s: f64,
}

impl<'m> Batch<'m> {
    /// A batch of `opts.slots` utterances on `model` (its step must take a dynamic batch).
    pub fn new(model: &'m DiaModel, opts: &BatchOptions) -> Result<Self, RuntimeError> {
        let m = model.manifest();
        if !m.step_batches() {
            return Err(RuntimeError::InvalidOption(format!(
                "this bundle's decoder step takes one utterance at a time (target {}, format \
                 {}): batched decoding needs a fused bundle exported by this version \
                 (dia-export CHECKPOINT --out BUNDLE)",
                m.target.name(),
                m.format_version
            )));
        }
        if opts.slots == 0 || opts.slots > 1024 {
            return Err(RuntimeError::InvalidOption(format!(
                "a batch takes 1 to 1024 utterances, not {}",
                opts.slots
            )));
        }
        let text_len = match opts.text_len {
            None => model.text_bucket(m.max_text_len),
            Some(t) if t >= 1 && t <= m.max_text_len => model.text_bucket(t),
            Some(t) => {
                return Err(RuntimeError::InvalidOption(format!(
                    "the batch's text length {t} must be between 1 and the bundle's {}",
                    m.max_text_len
                )))
            }
        };
        Ok(Self {
            model,
            state: BatchState::new(model, opts.slots, text_len)?,
            slots: (0..opts.slots).map(|_| None).collect(),
            waiting: VecDeque::new(),
            next_id: 0,
            timings: StepTimings::default(),
            sample_s: 0.0,
            admit_s: 0.0,
        })
    }

    /// Queues an utterance (as [`crate::Generator::new`] takes it); it joins at the next step
    /// with a free slot. Options and text are checked now.
    pub fn submit(
        &mut self,
        text: &str,
        opts: &GenerateOptions,
    ) -> Result<RequestId, RuntimeError> {
        let m = self.model.manifest();
        let seq = Sequence::new(&m.config, m.max_frames, opts)?;
        let tokens = encode_text(text, m.max_text_len)?;
        if tokens.len() > self.state.text_len {
            return Err(RuntimeError::TextTooLong {
                tokens: tokens.len(),
                max: self.state.text_len,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.push_back(Waiting { id, tokens, seq });
        Ok(id)
    }

    /// Drops a request, waiting or under way; `false` if it is not here (done, or unknown).
    pub fn cancel(&mut self, id: RequestId) -> bool {
        if let Some(i) = self.waiting.iter().position(|w| w.id == id) {
            self.waiting.remove(i);
            return true;
        }
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|a| a.id == id) {
                *slot = None;
                return true;
            }
        }
        false
    }

    /// Utterances in slots now.
    pub fn active(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Utterances waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn capacity(&self) -> usize {
        self.state.slots
    }

    /// The text positions each slot reads.
    pub fn text_len(&self) -> usize {
        self.state.text_len
    }

    /// Whether nothing is under way or waiting.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.active() == 0
    }

    /// Moves waiting utterances into free slots (running the encoder for each).
    fn admit(&mut self) -> Result<(), RuntimeError> {
        for s in 0..self.slots.len() {
            if self.slots[s].is_some() {
                continue;
            }
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            let t0 = Instant::now();
            let cross = self.model.encode_cross(&w.tokens, self.state.text_len)?;
            self.state.fill(self.model, s, cross)?;
            self.admit_s += t0.elapsed().as_secs_f64();
            self.slots[s] = Some(Active {
                id: w.id,
                seq: w.seq,
                encoder_s: t0.elapsed().as_secs_f64(),
                started: Instant::now(),
                first_step_s: 0.0,
                timings: StepTimings::default(),
            });
        }
        Ok(())
    }

    /// Admits waiting utterances into free slots, runs one step for every slot in use, and
    /// appends what it produced to `events`. Does nothing when idle.
    pub fn step(&mut self, events: &mut Vec<Event>) -> Result<(), RuntimeError> {
        self.admit()?;
        if self.active() == 0 {
            return Ok(());
        }
        let (c, v) = (self.state.channels, self.state.vocab);
        let bos = self.model.decoder().bos();
        {
            let tokens = self.state.tokens.extract_tensor_mut().1;
            let position = self.state.position.extract_tensor_mut().1;
            for (s, slot) in self.slots.iter().enumerate() {
                let rows = 2 * s..2 * s + 2;
                match slot {
                    Some(a) => {
                        let (tk, pos) = a.seq.next_input();
                        tokens[rows.start * c..rows.start * c + c].copy_from_slice(tk);
                        tokens[rows.start * c + c..rows.end * c].copy_from_slice(tk);
                        position[rows].fill(pos as i32);
                    }
                    None => {
                        tokens[rows.start * c..rows.end * c].fill(bos);
                        position[rows].fill(0);
                    }
                }
            }
        }
        let mut t = StepTimings::default();
        self.state.run(self.model, &mut t)?;
        self.timings.add(&t);
        let logits = self.state.logits.extract_tensor().1;
        let pair = 2 * c * v;
        let ts = Instant::now();
        accept_all(&mut self.slots, logits, pair);
        self.sample_s += ts.elapsed().as_secs_f64();
        for slot in &mut self.slots {
            let Some(a) = slot.as_mut() else { continue };
            a.timings.add(&t);
            let new = a.seq.last_new();
            if !new.is_empty() {
                events.push(Event::Frames {
                    id: a.id,
                    codes: new.to_vec(),
                });
            }
            if a.first_step_s == 0.0 && a.seq.steps() >= a.seq.prefill_steps() {
                a.first_step_s = a.started.elapsed().as_secs_f64();
            }
            if a.seq.is_done() {
                let a = slot.take().expect("checked above");
                events.push(Event::Done {
                    id: a.id,
                    generation: Box::new(Generation {
                        steps: a.seq.steps(),
                        eos_step: a.seq.eos_step(),
                        encoder_s: a.encoder_s,
                        first_step_s: a.first_step_s,
                        decode_s: a.started.elapsed().as_secs_f64(),
                        step_timings: a.timings,
                        sample_s: a.seq.sample_s,
                        codes: a.seq.into_codes(),
                    }),
                });
            }
        }
        Ok(())
    }
}

/// Hands every active slot its pair of logits rows; samples on several threads when many
/// slots are busy (sampling is per utterance, its own RNG, so the split changes nothing).
fn accept_all(slots: &mut [Option<Active>], logits: &[f32], pair: usize) {
    let busy = slots.iter().filter(|s| s.is_some()).count();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let accept = |s: usize, a: &mut Active| {
        a.seq.accept(&logits[s * pair..(s + 1) * pair]);
    };
    if busy < 8 || threads < 2 {
        for (s, slot) in slots.iter_mut().enumerate() {
            if let Some(a) = slot.as_mut() {
                accept(s, a);
            }
        }
        return;
    }
    let per = slots.len().div_ceil(threads.min(busy / 4).max(2));
    std::thread::scope(|scope| {
        for (k, chunk) in slots.chunks_mut(per).enumerate() {
            scope.spawn(move || {
                for (i, slot) in chunk.iter_mut().enumerate() {
                    if let Some(a) = slot.as_mut() {
                        accept(k * per + i, a);
                    }
                }
            });
        }
    });
}

/// What a [`Scheduler`] sends back for a request.
#[derive(Debug)]
pub enum Update {
    /// Codes `[n, C]` of frames that became complete.
    Frames(Vec<i64>),
    /// The request is done: every frame, steps and timings.
    Done(Box<Generation>),
    /// The batch failed; the request will not finish.
    Failed(String),
}

struct Submission {
    text: String,
    opts: GenerateOptions,
    updates: mpsc::Sender<Update>,
    accepted: mpsc::SyncSender<Result<(), RuntimeError>>,
}

/// What a [`Scheduler`] has done so far ([`Scheduler::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SchedulerStats {
    /// Batch steps run.
    pub steps: u64,
    /// Utterances decoded, summed over the steps (`utterance_steps / steps` is the mean
    /// number of utterances a step decoded).
    pub utterance_steps: u64,
    /// The most utterances one step decoded.
    pub peak: usize,
    /// Utterances in slots after the last step.
    pub active: usize,
    /// Utterances waiting for a slot after the last step.
    pub waiting: usize,
}

/// A [`Batch`] on a thread of its own: submit requests from any thread and receive each one's
/// frames as they are decoded. Dropping a request's receiver cancels it when its next frames
/// are sent; dropping the scheduler finishes the requests under way and stops the thread.
pub struct Scheduler {
    submit: Option<mpsc::Sender<Submission>>,
    thread: Option<std::thread::JoinHandle<()>>,
    capacity: usize,
    text_len: usize,
    stats: Arc<Mutex<SchedulerStats>>,
}

impl Scheduler {
    /// Starts a batch of `opts.slots` on `model`; fails as [`Batch::new`] does.
    pub fn spawn(model: Arc<DiaModel>, opts: BatchOptions) -> Result<Self, RuntimeError> {
        let (tx, rx) = mpsc::channel::<Submission>();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let stats = Arc::new(Mutex::new(SchedulerStats::default()));
        let thread_stats = stats.clone();
        let thread = std::thread::Builder::new()
            .name("dia-batch".into())
            .spawn(move || {
                let batch = match Batch::new(&model, &opts) {
                    Ok(b) => {
                        let _ = ready_tx.send(Ok(b.text_len()));
                        b
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                run_scheduler(batch, rx, &thread_stats);
            })
            .map_err(|e| RuntimeError::Internal(format!("cannot start the batch thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(text_len)) => Ok(Self {
                submit: Some(tx),
                thread: Some(thread),
                capacity: opts.slots,
                text_len,
                stats,
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(RuntimeError::Internal(
                "the batch thread ended while starting".into(),
            )),
        }
    }

    /// Utterances decoded at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The text positions each slot reads (texts of more tokens are refused at submit).
    pub fn text_len(&self) -> usize {
        self.text_len
    }

    /// Steps run and utterances decoded so far.
    pub fn stats(&self) -> SchedulerStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Submits an utterance; its frames come on the returned receiver, then `Done`. Options
    /// and text are checked before this returns.
    pub fn submit(
        &self,
        text: &str,
        opts: &GenerateOptions,
    ) -> Result<mpsc::Receiver<Update>, RuntimeError> {
        let (updates, rx) = mpsc::channel();
        let (accepted, ok) = mpsc::sync_channel(1);
        let gone = || RuntimeError::Internal("the batch thread has stopped".into());
        self.submit
            .as_ref()
            .ok_or_else(gone)?
            .send(Submission {
                text: text.to_string(),
                opts: opts.clone(),
                updates,
                accepted,
            })
            .map_err(|_| gone())?;
        ok.recv().map_err(|_| gone())??;
        Ok(rx)
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.submit.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run_scheduler(
    mut batch: Batch<'_>,
    rx: mpsc::Receiver<Submission>,
    stats: &Mutex<SchedulerStats>,
) {
    let mut senders: std::collections::HashMap<RequestId, mpsc::Sender<Update>> =
        std::collections::HashMap::new();
    let mut events = Vec::new();
    loop {
        // Take every submission that came in: waiting for one when idle (the scheduler gone
        // and nothing left to do ends the thread), without waiting when busy.
        loop {
            let sub = if batch.is_idle() {
                match rx.recv() {
                    Ok(s) => s,
                    Err(_) => return,
                }
            } else {
                match rx.try_recv() {
                    Ok(s) => s,
                    Err(_) => break,
                }
            };
            match batch.submit(&sub.text, &sub.opts) {
                Ok(id) => {
                    senders.insert(id, sub.updates);
                    let _ = sub.accepted.send(Ok(()));
                }
                Err(e) => {
                    let _ = sub.accepted.send(Err(e));
                }
            }
        }
        events.clear();
        // The step admits waiting utterances into free slots, then decodes every slot in use.
        let decoded = (batch.active() + batch.waiting()).min(batch.capacity());
        let stepped = batch.step(&mut events);
        {
            let mut st = stats.lock().unwrap_or_else(|e| e.into_inner());
            if stepped.is_ok() && decoded > 0 {
                st.steps += 1;
                st.utterance_steps += decoded as u64;
                st.peak = st.peak.max(decoded);
            }
        }
        if let Err(e) = stepped {
            let msg = e.to_string();
            tracing::error!("batch step failed: {msg}");
            for (_, s) in senders.drain() {
                let _ = s.send(Update::Failed(msg.clone()));
            }
            return;
        }
        for ev in events.drain(..) {
            match ev {
                Event::Frames { id, codes } => {
                    let gone = senders
                        .get(&id)
                        .is_none_or(|s| s.send(Update::Frames(codes)).is_err());
                    if gone {
                        // The receiver was dropped: free the slot.
                        batch.cancel(id);
                        senders.remove(&id);
                    }
                }
                Event::Done { id, generation } => {
                    if let Some(s) = senders.remove(&id) {
                        let _ = s.send(Update::Done(generation));
                    }
                }
            }
        }
        let mut st = stats.lock().unwrap_or_else(|e| e.into_inner());
        st.active = batch.active();
        st.waiting = batch.waiting();
    }
}
