//! Generation behind one small interface: [`Engine::submit`] a [`Job`], get a [`Handle`]
//! whose [`Handle::next`] yields [`Event`]s (started, PCM chunks, done or failed); dropping
//! the handle cancels the job.
//!
//! For now every running job is a [`ScriptStream`] on a blocking thread of its own, sending
//! its chunks over a bounded channel; at most `max_concurrent` run at once and at most
//! `queue` more wait for a slot (beyond that [`Engine::submit`] says [`EngineError::Busy`]).
//! A batching scheduler in the runtime can replace the worker threads behind this interface
//! without the HTTP layer noticing.
//!
//! Cancellation: a dropped [`Handle`] (the client went away) closes the channel and raises the
//! job's cancel flag; a waiting job leaves the queue at once, a running one stops at its next
//! chunk and frees its slot.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use dia_run::codec::ChunkSizes;
use dia_run::script::{ScriptOptions, ScriptPlan, VoicePrompt};
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
    /// Jobs generating at once.
    pub max_concurrent: usize,
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
        let mut p = self.tracker.snapshot();
        if matches!(p.state, State::Queued | State::Running) {
            p.state = State::Cancelled;
        }
        self.engine.metrics.job_ended(&p);
        let mut jobs = self.engine.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.live.remove(&self.id);
        jobs.finished.push_back(p);
        while jobs.finished.len() > self.engine.config.keep_finished {
            jobs.finished.pop_front();
        }
        drop(jobs);
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
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(config.max_concurrent)),
            model,
            config,
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

/// The job on its worker thread: plan, stream, send; stops when the receiver is gone.
fn run_job(engine: &Engine, job: Job, tx: &mpsc::Sender<Event>, t: &Tracker) {
    let started = Instant::now();
    *t.started.lock().unwrap_or_else(|e| e.into_inner()) = Some(started);
    let queued_seconds = t.submitted.elapsed().as_secs_f64();
    t.update(|p| {
        p.state = State::Running;
        p.queued_seconds = queued_seconds;
    });
    let fail = |e: EngineError| {
        tracing::debug!(job = t.snapshot().id, "job failed: {e}");
        t.update(|p| {
            p.state = State::Failed;
            p.error = Some(e.to_string());
            p.elapsed_seconds = started.elapsed().as_secs_f64();
        });
        let _ = tx.blocking_send(Event::Failed(e));
    };
    let cancelled = || t.cancel.load(Ordering::Relaxed) || tx.is_closed();
    if cancelled() {
        return;
    }
    let model = &*engine.model;
    let voice = match job.voice.map(|load| load(model)).transpose() {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    let plan = match ScriptPlan::new(model, &job.text, voice.as_ref(), &job.options, &job.script) {
        Ok(p) => p,
        Err(e) => return fail(e.into()),
    };
    if let Some(max) = job.max_frames {
        if plan.estimated_frames > max {
            return fail(EngineError::Invalid(format!(
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
    t.update(|p| {
        p.segments = info.segments;
        p.estimated_frames = info.estimated_frames;
    });
    let mut stream = match ScriptStream::new(
        model,
        plan,
        voice,
        &job.options,
        &job.script,
        engine.config.chunks,
    ) {
        Ok(s) => s,
        Err(e) => return fail(e.into()),
    };
    if tx.blocking_send(Event::Started(info)).is_err() {
        return;
    }
    let rate = model.sample_rate() as f64;
    let mut samples = 0usize;
    let mut first_audio = None;
    loop {
        if cancelled() {
            tracing::debug!("job cancelled: the client went away");
            return;
        }
        let chunk = match stream.next_chunk() {
            Ok(Some(c)) => c.to_vec(),
            Ok(None) => break,
            Err(e) => return fail(e.into()),
        };
        samples += chunk.len();
        let elapsed = started.elapsed().as_secs_f64();
        let first = *first_audio.get_or_insert(elapsed);
        let pr = stream.generator().progress();
        t.update(|p| {
            p.frames = pr.frames;
            p.estimated_frames = pr.estimated_frames;
            p.steps = pr.steps;
            p.segment = pr.segment;
            p.samples = samples;
            p.first_audio_seconds = Some(first);
            p.realtime_factor = Some(samples as f64 / rate / elapsed.max(1e-9));
        });
        if tx.blocking_send(Event::Audio(chunk)).is_err() {
            return;
        }
    }
    let script = stream.finish();
    let gen = &script.generation;
    let elapsed = started.elapsed().as_secs_f64();
    let summary = Summary {
        frames: gen.codes.len(),
        samples,
        steps: gen.steps,
        segments: script.segments.len(),
        audio_seconds: samples as f64 / rate,
        generation_seconds: elapsed,
        first_audio_seconds: first_audio,
        warnings: script.warnings.clone(),
    };
    t.update(|p| {
        p.state = State::Done;
        p.frames = summary.frames;
        p.steps = summary.steps;
        p.samples = samples;
        p.elapsed_seconds = elapsed;
        p.realtime_factor = Some(summary.audio_seconds / elapsed.max(1e-9));
    });
    let _ = tx.blocking_send(Event::Done(summary));
}
