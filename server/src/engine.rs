//! Generation behind one small interface: [`Engine::submit`] a [`Job`], get a [`Handle`]
//! whose [`Handle::next`] yields [`Event`]s (started, PCM chunks, done or failed); dropping
//! the handle cancels the job.
//!
//! At most `max_concurrent` jobs run at once and at most `queue` more wait for a slot (beyond
//! that [`Engine::submit`] says [`EngineError::Busy`]). A running job has a blocking thread
//! that plans it, turns its codes into audio and sends the chunks over a bounded channel. How
//! the codes are decoded depends on the bundle:
//!
//! - batched ([`EngineConfig::batch`], when the bundle's step takes a batch): one
//!   [`Scheduler`] of `max_concurrent` slots decodes every running job's current segment in
//!   the rows of one decoder step. A job submits its segments in order (each built by
//!   [`segment_request`], as [`dia_run::script::ScriptGenerator`] builds them, so the codes
//!   are the same), feeds the frames that come back into a [`StreamDecoder`] per segment and
//!   joins the segments with a [`Crossfade`]: the audio equals the unbatched path's.
//! - otherwise (old or portable bundles, or batching off): each job's [`ScriptStream`] runs
//!   the decoder on the job's own thread.
//!
//! Cancellation: a dropped [`Handle`] (the client went away) closes the channel and raises the
//! job's cancel flag; a waiting job leaves the queue at once, a running one stops at its next
//! chunk (batched: at its next frames, dropping its receiver, which frees its row of the batch
//! when the scheduler next sends it frames) and frees its slot.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dia_run::batch::{BatchOptions, Scheduler, SchedulerStats, Update};
use dia_run::codec::{ChunkSizes, StreamDecoder};
use dia_run::crossfade::Crossfade;
use dia_run::script::{
    segment_request, unfinished_segment_warning, ScriptOptions, ScriptPlan, VoicePrompt,
};
use dia_run::stream::ScriptStream;
use dia_run::{DiaModel, GenerateOptions, RuntimeError};
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};

use crate::metrics::Metrics;

/// Loads a job's voice prompt on the worker thread (reading and encoding a recording is work
/// that belongs inside the job's slot).
pub type VoiceLoader = Box<dyn FnOnce(&DiaModel) -> Result<VoicePrompt, EngineError> + Send>;

/// One speech request: the script, its voice and the generation settings.
pub struct Job {
    pub text: String,
    pub voice: Option<VoiceLoader>,
    pub options: GenerateOptions,
    pub script: ScriptOptions,
    /// Refuse, before generating, a plan expected to run past this many frames (a buffered
    /// response holds the whole audio in memory).
    pub max_frames: Option<usize>,
}

/// Why a job was refused or stopped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    #[error("the server is busy: {running} generation(s) running and {queued} waiting, the most it takes; retry shortly")]
    Busy { running: usize, queued: usize },
    /// The request cannot be generated as asked (options, text, voice prompt).
    #[error("{0}")]
    Invalid(String),
    /// Something failed on the server's side.
    #[error("generation failed: {0}")]
    Failed(String),
}

impl From<RuntimeError> for EngineError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::InvalidOption(_)
            | RuntimeError::EmptyText
            | RuntimeError::NothingToSay
            | RuntimeError::TextTooLong { .. }
            | RuntimeError::BadAudio { .. } => EngineError::Invalid(e.to_string()),
            other => EngineError::Failed(other.to_string()),
        }
    }
}

/// What a job reports, in order: `Started`, any number of `Audio`, then `Done` or `Failed`
/// (`Failed` may also come first).
#[derive(Debug)]
pub enum Event {
    Started(Started),
    /// Mono f32 samples at [`Started::sample_rate`].
    Audio(Vec<f32>),
    Done(Summary),
    Failed(EngineError),
}

/// The job got its slot and its plan.
#[derive(Clone, Debug, Serialize)]
pub struct Started {
    pub sample_rate: u32,
    pub segments: usize,
    pub estimated_frames: usize,
    pub warnings: Vec<String>,
    /// Seconds spent waiting for a slot.
    pub queued_seconds: f64,
}

/// A finished job.
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    pub frames: usize,
    pub samples: usize,
    pub steps: usize,
    pub segments: usize,
    pub audio_seconds: f64,
    /// From the slot being taken to the last chunk.
    pub generation_seconds: f64,
    /// From the slot being taken to the first chunk.
    pub first_audio_seconds: Option<f64>,
    pub warnings: Vec<String>,
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

/// A job's progress, readable while it runs (the status endpoint, the web page).
#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    pub id: u64,
    pub state: State,
    pub frames: usize,
    pub estimated_frames: usize,
    pub samples: usize,
    /// Decoder steps run (batched: counted as each segment ends).
    pub steps: usize,
    pub segment: usize,
    pub segments: usize,
    /// Seconds since the job got its slot.
    pub elapsed_seconds: f64,
    /// Seconds from the slot being taken to the first audio.
    pub first_audio_seconds: Option<f64>,
    /// Seconds waited in the queue.
    pub queued_seconds: f64,
    /// Audio seconds made per second of generation.
    pub realtime_factor: Option<f64>,
    pub sample_rate: u32,
    pub error: Option<String>,
}

struct Tracker {
    progress: Mutex<Progress>,
    cancel: AtomicBool,
    submitted: Instant,
    started: Mutex<Option<Instant>>,
    /// The job's end is recorded ([`Engine::end`]).
    ended: AtomicBool,
}

impl Tracker {
    fn update(&self, f: impl FnOnce(&mut Progress)) {
        let mut p = self.progress.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut p);
    }
    fn snapshot(&self) -> Progress {
        let mut p = self
            .progress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if p.state == State::Running {
            if let Some(t) = *self.started.lock().unwrap_or_else(|e| e.into_inner()) {
                p.elapsed_seconds = t.elapsed().as_secs_f64();
            }
        }
        p
    }
}

/// How the engine runs jobs.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    /// Jobs generating at once (batched: the scheduler's slots).
    pub max_concurrent: usize,
    /// Decode the running jobs together on one batching [`Scheduler`] when the bundle's step
    /// takes a batch (the manifest's `step_batches`: fused bundles of format 4 on); otherwise, or when `false`,
    /// each job decodes on its own thread.
    ///
    /// Every slot's cross-attention reads the batch's whole text length each step, where a job
    /// alone reads only its text's bucket: with one slot that is a little more work per step
    /// for nothing shared (`dia-serve` batches only from two slots on, unless told); with
    /// several slots on a GPU the steps are shared (see `batch_text_len`).
    pub batch: bool,
    /// The batch's text length, in tokens (rounded up to the bundle's text bucket); `None`:
    /// the bundle's whole window. Scripts are planned for it, so a shorter one splits long
    /// inputs into more, shorter segments, and makes every step of a large batch cheaper.
    pub batch_text_len: Option<usize>,
    /// Jobs waiting for a slot, at most.
    pub queue: usize,
    /// Streamed chunk sizes.
    pub chunks: ChunkSizes,
    /// Chunks a job may have sent that the client has not taken yet.
    pub channel_chunks: usize,
    /// Finished jobs whose progress stays readable.
    pub keep_finished: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_concurrent: 1,
            batch: true,
            batch_text_len: None,
            queue: 16,
            chunks: ChunkSizes::default(),
            channel_chunks: 16,
            keep_finished: 64,
        }
    }
}

/// Runs speech jobs on a shared model.
pub struct Engine {
    model: Arc<DiaModel>,
    config: EngineConfig,
    /// The batching scheduler, when jobs decode together.
    scheduler: Option<Scheduler>,
    slots: Arc<Semaphore>,
    /// Jobs admitted and not yet finished (queued + running).
    admitted: AtomicUsize,
    running: AtomicUsize,
    next_id: AtomicU64,
    jobs: Mutex<Jobs>,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Jobs {
    live: HashMap<u64, Arc<Tracker>>,
    finished: VecDeque<Progress>,
}

/// A submitted job: its events, in order. Dropping it cancels the job.
pub struct Handle {
    pub id: u64,
    rx: mpsc::Receiver<Event>,
    tracker: Arc<Tracker>,
}

impl Handle {
    /// The next event; `None` after the last one.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.tracker.cancel.store(true, Ordering::Relaxed);
    }
}

/// Frees the job's admission and records its end however the job's task ends.
struct Admission {
    engine: Arc<Engine>,
    id: u64,
    tracker: Arc<Tracker>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.engine.end(self.id, &self.tracker);
        self.engine.admitted.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Releases a running slot's count.
struct Running<'a>(&'a AtomicUsize);
impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Engine {
    pub fn new(model: Arc<DiaModel>, config: EngineConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        let config = EngineConfig {
            max_concurrent: config.max_concurrent.max(1),
            channel_chunks: config.channel_chunks.max(1),
            ..config
        };
        let scheduler = if !config.batch {
            None
        } else if !model.manifest().step_batches() {
            tracing::warn!(
                "this bundle's decoder step takes one utterance at a time: each generation \
                 runs on a thread of its own (export a fused bundle to batch them)"
            );
            None
        } else {
            let opts = BatchOptions {
                slots: config.max_concurrent,
                // Plans are made for the batch's text length, so every segment fits.
                text_len: config.batch_text_len,
            };
            match Scheduler::spawn(model.clone(), opts) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(
                        "cannot start the batching scheduler ({e}): each generation runs on a \
                         thread of its own"
                    );
                    None
                }
            }
        };
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(config.max_concurrent)),
            model,
            config,
            scheduler,
            admitted: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            jobs: Mutex::new(Jobs::default()),
            metrics,
        })
    }

    pub fn model(&self) -> &Arc<DiaModel> {
        &self.model
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The batching scheduler's slots, when jobs decode together; `None`: a thread each.
    pub fn batch_slots(&self) -> Option<usize> {
        self.scheduler.as_ref().map(Scheduler::capacity)
    }

    /// The batch's text length, when jobs decode together.
    pub fn batch_text_len(&self) -> Option<usize> {
        self.scheduler.as_ref().map(Scheduler::text_len)
    }

    /// How jobs' scripts are split: every segment fits the batch's text length.
    pub fn script_options(&self) -> ScriptOptions {
        ScriptOptions {
            text_window: self.batch_text_len(),
            ..ScriptOptions::default()
        }
    }

    /// What the batching scheduler has done so far, when there is one.
    pub fn batch_stats(&self) -> Option<SchedulerStats> {
        self.scheduler.as_ref().map(Scheduler::stats)
    }

    /// Jobs generating now.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Jobs waiting for a slot now.
    pub fn queued(&self) -> usize {
        self.admitted
            .load(Ordering::SeqCst)
            .saturating_sub(self.running())
    }

    /// Records the end of job `id` once: its outcome (cancelled if it never finished) in the
    /// metrics, its progress among the finished ones'. Called before the job's last event is
    /// sent, so a client that got it sees the job counted.
    fn end(&self, id: u64, tracker: &Tracker) {
        if tracker.ended.swap(true, Ordering::SeqCst) {
            return;
        }
        let mut p = tracker.snapshot();
        if matches!(p.state, State::Queued | State::Running) {
            p.state = State::Cancelled;
        }
        self.metrics.job_ended(&p);
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.live.remove(&id);
        jobs.finished.push_back(p);
        while jobs.finished.len() > self.config.keep_finished {
            jobs.finished.pop_front();
        }
    }

    /// A job's progress: a live one's, or one of the last finished ones'.
    pub fn progress(&self, id: u64) -> Option<Progress> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = jobs.live.get(&id) {
            return Some(t.snapshot());
        }
        jobs.finished.iter().rev().find(|p| p.id == id).cloned()
    }

    /// Live jobs' progress, oldest first.
    pub fn live(&self) -> Vec<Progress> {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = jobs.live.values().map(|t| t.snapshot()).collect();
        v.sort_by_key(|p| p.id);
        v
    }

    /// Admits `job` (or says the server is busy) and starts it as soon as a slot is free.
    /// Must be called inside a Tokio runtime.
    pub fn submit(self: &Arc<Self>, job: Job) -> Result<Handle, EngineError> {
        let limit = self.config.max_concurrent + self.config.queue;
        let admitted = self
            .admitted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            });
        if admitted.is_err() {
            return Err(EngineError::Busy {
                running: self.running(),
                queued: self.queued(),
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let tracker = Arc::new(Tracker {
            progress: Mutex::new(Progress {
                id,
                state: State::Queued,
                frames: 0,
                estimated_frames: 0,
                samples: 0,
                steps: 0,
                segment: 0,
                segments: 0,
                elapsed_seconds: 0.0,
                first_audio_seconds: None,
                queued_seconds: 0.0,
                realtime_factor: None,
                sample_rate: self.model.sample_rate(),
                error: None,
            }),
            cancel: AtomicBool::new(false),
            ended: AtomicBool::new(false),
            submitted: Instant::now(),
            started: Mutex::new(None),
        });
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .live
            .insert(id, tracker.clone());
        let admission = Admission {
            engine: self.clone(),
            id,
            tracker: tracker.clone(),
        };
        let (tx, rx) = mpsc::channel(self.config.channel_chunks);
        let engine = self.clone();
        let t = tracker.clone();
        let job_tracker = tracker.clone();
        tokio::spawn(async move {
            let _admission = admission;
            let permit = tokio::select! {
                p = engine.slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                // The client went away while waiting.
                _ = tx.closed() => return,
            };
            let worker_engine = engine.clone();
            let result = tokio::task::spawn_blocking(move || {
                worker_engine.running.fetch_add(1, Ordering::SeqCst);
                let _running = Running(&worker_engine.running);
                run_job(&worker_engine, job, &tx, &t);
            })
            .await;
            drop(permit);
            if let Err(e) = result {
                tracing::error!(job = id, "worker thread panicked: {e}");
                job_tracker.update(|p| {
                    p.state = State::Failed;
                    p.error = Some("the worker thread panicked".into());
                });
            }
        });
        Ok(Handle { id, rx, tracker })
    }
}

/// The job on its worker thread: plan, generate, send; stops when the receiver is gone.
fn run_job(engine: &Engine, job: Job, tx: &mpsc::Sender<Event>, t: &Tracker) {
    let id = t.snapshot().id;
    let started = Instant::now();
    *t.started.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
    let queued_seconds = t.submitted.elapsed().as_secs_f64();
    t.update(|p| {
        p.state = State::Running;
        p.queued_seconds = queued_seconds;
    });
    let mut sink = Sink {
        tx,
        t,
        started,
        rate: engine.model.sample_rate() as f64,
        samples: 0,
        first_audio: None,
    };
    if sink.cancelled() {
        return;
    }
    let result = generate(engine, job, queued_seconds, &mut sink);
    let elapsed = started.elapsed().as_secs_f64();
    let done = match result {
        Ok(Some(done)) => done,
        // The client went away.
        Ok(None) => {
            tracing::debug!("job cancelled: the client went away");
            return;
        }
        Err(e) => {
            tracing::debug!(job = id, "job failed: {e}");
            t.update(|p| {
                p.state = State::Failed;
                p.error = Some(e.to_string());
                p.elapsed_seconds = elapsed;
            });
            engine.end(id, t);
            let _ = tx.blocking_send(Event::Failed(e));
            return;
        }
    };
    let samples = sink.samples;
    let summary = Summary {
        frames: done.frames,
        samples,
        steps: done.steps,
        segments: done.segments,
        audio_seconds: samples as f64 / sink.rate,
        generation_seconds: elapsed,
        first_audio_seconds: sink.first_audio,
        warnings: done.warnings,
    };
    t.update(|p| {
        p.state = State::Done;
        p.frames = summary.frames;
        p.steps = summary.steps;
        p.samples = samples;
        p.elapsed_seconds = elapsed;
        p.realtime_factor = Some(summary.audio_seconds / elapsed.max(1e-9));
    });
    engine.end(id, t);
    let _ = tx.blocking_send(Event::Done(summary));
}

/// A generation that ran to its end.
struct Finished {
    frames: usize,
    steps: usize,
    segments: usize,
    warnings: Vec<String>,
}

/// Where a job is, for its progress.
struct Position {
    frames: usize,
    estimated_frames: usize,
    steps: usize,
    segment: usize,
}

/// Where a running job's audio goes: the client's channel, and the job's progress.
struct Sink<'a> {
    tx: &'a mpsc::Sender<Event>,
    t: &'a Tracker,
    started: Instant,
    rate: f64,
    samples: usize,
    first_audio: Option<f64>,
}

impl Sink<'_> {
    /// Whether the client went away.
    fn cancelled(&self) -> bool {
        self.t.cancel.load(Ordering::Relaxed) || self.tx.is_closed()
    }

    fn send(&self, event: Event) -> bool {
        self.tx.blocking_send(event).is_ok()
    }

    /// Sends a chunk of audio (nothing when empty) and records the progress; `false` when the
    /// client is gone.
    fn audio(&mut self, chunk: Vec<f32>, at: Position) -> bool {
        if chunk.is_empty() {
            return !self.cancelled();
        }
        self.samples += chunk.len();
        let elapsed = self.started.elapsed().as_secs_f64();
        let first = *self.first_audio.get_or_insert(elapsed);
        let (samples, rate) = (self.samples, self.rate);
        self.t.update(|p| {
            p.frames = at.frames;
            p.estimated_frames = at.estimated_frames;
            p.steps = at.steps;
            p.segment = at.segment;
            p.samples = samples;
            p.first_audio_seconds = Some(first);
            p.realtime_factor = Some(samples as f64 / rate / elapsed.max(1e-9));
        });
        self.send(Event::Audio(chunk))
    }
}

/// Plans the job, says `Started`, and streams its audio; `Ok(None)`: the client went away.
fn generate(
    engine: &Engine,
    job: Job,
    queued_seconds: f64,
    sink: &mut Sink<'_>,
) -> Result<Option<Finished>, EngineError> {
    let model = &*engine.model;
    let voice = job.voice.map(|load| load(model)).transpose()?;
    let mut sopts = job.script;
    if let Some(t) = engine.batch_text_len() {
        // Every segment must fit the batch.
        sopts.text_window = Some(sopts.text_window.map_or(t, |w| w.min(t)));
    }
    let plan = ScriptPlan::new(model, &job.text, voice.as_ref(), &job.options, &sopts)?;
    if let Some(max) = job.max_frames {
        if plan.estimated_frames > max {
            return Err(EngineError::Invalid(format!(
                "this input is expected to make about {} frames of audio, more than the {max} a \
                 whole-file response may hold: ask for it streamed (\"stream_format\": \"audio\")",
                plan.estimated_frames
            )));
        }
    }
    let info = Started {
        sample_rate: model.sample_rate(),
        segments: plan.segments.len(),
        estimated_frames: plan.estimated_frames,
        warnings: plan.warnings.clone(),
        queued_seconds,
    };
    sink.t.update(|p| {
        p.segments = info.segments;
        p.estimated_frames = info.estimated_frames;
    });
    let chunks = engine.config.chunks;
    match &engine.scheduler {
        Some(scheduler) => {
            let job = Batched::new(model, scheduler, plan, voice, &job.options, &sopts)?;
            // The chunk sizes and the first segment's request (options, voice prompt) are
            // checked before saying it started.
            let decoder = StreamDecoder::new(model.require_codec("stream audio")?, chunks)?;
            let first = job.submit(0, None)?;
            if !sink.send(Event::Started(info)) {
                return Ok(None);
            }
            job.run(first, decoder, chunks, sink)
        }
        None => {
            let stream = ScriptStream::new(model, plan, voice, &job.options, &sopts, chunks)?;
            if !sink.send(Event::Started(info)) {
                return Ok(None);
            }
            stream_alone(stream, sink)
        }
    }
}

/// The unbatched path: the job's own [`ScriptStream`] runs the decoder on this thread.
fn stream_alone(
    mut stream: ScriptStream<'_>,
    sink: &mut Sink<'_>,
) -> Result<Option<Finished>, EngineError> {
    loop {
        if sink.cancelled() {
            return Ok(None);
        }
        let chunk = match stream.next_chunk()? {
            Some(c) => c.to_vec(),
            None => break,
        };
        let pr = stream.generator().progress();
        let at = Position {
            frames: pr.frames,
            estimated_frames: pr.estimated_frames,
            steps: pr.steps,
            segment: pr.segment,
        };
        if !sink.audio(chunk, at) {
            return Ok(None);
        }
    }
    let script = stream.finish();
    Ok(Some(Finished {
        frames: script.generation.codes.len(),
        steps: script.generation.steps,
        segments: script.segments.len(),
        warnings: script.warnings,
    }))
}

/// A job whose segments decode on the batching scheduler; its audio is made on this thread.
struct Batched<'m> {
    model: &'m DiaModel,
    scheduler: &'m Scheduler,
    plan: ScriptPlan,
    voice: Option<VoicePrompt>,
    /// The sampling settings and seed, every segment's base.
    base: GenerateOptions,
    channels: usize,
    /// The crossfade between segments, in samples.
    fade: usize,
}

impl<'m> Batched<'m> {
    fn new(
        model: &'m DiaModel,
        scheduler: &'m Scheduler,
        plan: ScriptPlan,
        voice: Option<VoicePrompt>,
        opts: &GenerateOptions,
        sopts: &ScriptOptions,
    ) -> Result<Self, EngineError> {
        let channels = model.config().decoder_config.num_channels;
        if let Some(v) = &voice {
            if v.codes.channels != channels {
                return Err(EngineError::Invalid(format!(
                    "the voice prompt has {} codebooks but the model {channels}",
                    v.codes.channels
                )));
            }
        }
        Ok(Self {
            model,
            scheduler,
            plan,
            voice,
            base: GenerateOptions {
                audio_prompt: None,
                ..opts.clone()
            },
            channels,
            fade: (sopts.crossfade_s * model.sample_rate() as f32).round() as usize,
        })
    }

    /// Submits segment `k` (after `prev`, the segment before it: its text and codes).
    fn submit(
        &self,
        k: usize,
        prev: Option<(&str, &[i64])>,
    ) -> Result<std::sync::mpsc::Receiver<Update>, EngineError> {
        let (text, opts) = segment_request(
            &self.plan,
            self.voice.as_ref(),
            prev,
            k,
            &self.base,
            self.channels,
        );
        Ok(self.scheduler.submit(&text, &opts)?)
    }

    /// Runs the segments in order (the first submitted: `updates`), each one's frames into a
    /// fresh `decoder` (of `chunks`), the segments joined by the crossfade, as
    /// [`ScriptStream`] does.
    fn run(
        self,
        mut updates: std::sync::mpsc::Receiver<Update>,
        mut decoder: StreamDecoder<'m>,
        chunks: ChunkSizes,
        sink: &mut Sink<'_>,
    ) -> Result<Option<Finished>, EngineError> {
        let codec = self.model.require_codec("stream audio")?;
        let c = self.channels;
        let n = self.plan.segments.len();
        let mut fade = Crossfade::new(self.fade);
        let mut warnings = self.plan.warnings.clone();
        let (mut frames, mut steps) = (0usize, 0usize);
        // The codes of the segment under way.
        let mut codes: Vec<i64> = Vec::new();
        let mut k = 0;
        while k < n {
            if sink.cancelled() {
                // Dropping the receiver frees the batch row when its next frames come.
                return Ok(None);
            }
            let update = updates
                .recv()
                .map_err(|_| EngineError::Failed("the batching scheduler stopped".into()))?;
            let mut out = Vec::new();
            match update {
                Update::Frames(f) => {
                    codes.extend_from_slice(&f);
                    out.extend_from_slice(fade.push(decoder.push(&f)?));
                }
                Update::Done(gen) => {
                    steps += gen.steps;
                    if gen.eos_step.is_none() && !self.base.ignore_eos {
                        let msg = unfinished_segment_warning(&self.plan, k, gen.steps);
                        tracing::warn!("{msg}");
                        warnings.push(msg);
                    }
                    // The next segment decodes while this one's last audio is made.
                    if k + 1 < n {
                        let prev = (self.plan.segments[k].text.as_str(), codes.as_slice());
                        updates = self.submit(k + 1, Some(prev))?;
                    }
                    out.extend_from_slice(fade.push(decoder.finish()?));
                    out.extend_from_slice(fade.end_segment());
                    frames += codes.len() / c;
                    codes.clear();
                    k += 1;
                    if k < n {
                        decoder = StreamDecoder::new(codec, chunks)?;
                    } else {
                        out.extend_from_slice(fade.finish());
                    }
                }
                Update::Failed(e) => return Err(EngineError::Failed(e)),
            }
            let made = frames + codes.len() / c;
            let at = Position {
                frames: made,
                estimated_frames: self.plan.estimated_frames.max(made),
                steps,
                segment: k.min(n - 1),
            };
            if !sink.audio(out, at) {
                return Ok(None);
            }
        }
        Ok(Some(Finished {
            frames,
            steps,
            segments: n,
            warnings,
        }))
    }
}
