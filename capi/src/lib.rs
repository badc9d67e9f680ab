//! `libdia`: the C API of `dia-run` (header `capi/include/dia.h`, generated from this crate by
//! cbindgen; `capi/tests/header.rs` fails when the two disagree).
//!
//! Shape: opaque handles (IDs checked against a process-wide table, so a freed handle is an
//! error, never undefined behaviour: [`registry`]); option structs that start with
//! `struct_size` and are filled by `dia_*_init`, so fields can be appended without breaking
//! the ABI; every function returns a [`status::DiaStatus`] and leaves the message in
//! `dia_last_error()`; no panic crosses into the caller (each entry point catches them).
//! Generation goes through the runtime's script path ([`dia_run::script::ScriptPlan`]) as
//! `dia-run` does, so texts of any length work and a seed gives the CLI's codes.

use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use dia_run::codec::ChunkSizes;
use dia_run::providers::CoreMlUnits;
use dia_run::script::{ScriptGenerator, ScriptOptions, ScriptPlan, ScriptProgress, VoicePrompt};
use dia_run::stream::ScriptStream;
use dia_run::{ExecutionProvider, GenerateOptions, ModelOptions};

pub mod error;
pub mod registry;
pub mod status;
pub mod stream;

use error::CapiError;
pub use status::*;

/// Major version of libdia (the crate's version).
pub const DIA_VERSION_MAJOR: u32 = 0;
/// Minor version of libdia.
pub const DIA_VERSION_MINOR: u32 = 1;
/// Patch version of libdia.
pub const DIA_VERSION_PATCH: u32 = 0;

/// The version string `dia_version()` returns, NUL-terminated.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// A loaded bundle (opaque). Share it across threads freely.
pub struct DiaModel {
    _opaque: [u8; 0],
}

/// A generation being pulled chunk by chunk (opaque). One thread at a time.
pub struct DiaStream {
    _opaque: [u8; 0],
}

/// A finished generation's audio and codes (opaque); read them with `dia_audio_get`.
pub struct DiaAudio {
    _opaque: [u8; 0],
}

/// How to load a model. Fill with `dia_model_options_init`, then change fields.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DiaModelOptions {
    /// The size of the struct as the caller knows it (set by `dia_model_options_init`).
    pub struct_size: usize,
    /// `DIA_EP_AUTO` (default), `DIA_EP_CPU`, `DIA_EP_CUDA` or `DIA_EP_COREML`.
    pub execution_provider: DiaExecutionProvider,
    /// CUDA: the GPU to use (default 0).
    pub device_id: i32,
    /// CUDA: nonzero to capture the decoder step as a CUDA graph and replay it (default 0).
    pub cuda_graph: i32,
    /// Intra-op threads; 0 (default): ONNX Runtime's choice, all physical cores.
    pub threads: i32,
    /// Core ML: `DIA_COREML_ALL` (default), `DIA_COREML_CPU_AND_NEURAL_ENGINE` or
    /// `DIA_COREML_CPU_AND_GPU`.
    pub coreml_units: DiaCoreMlUnits,
    /// The ONNX Runtime library to load, or NULL (default). Used only when the process has
    /// no ONNX Runtime loaded yet: one already loaded (by the host, or by an earlier model) is
    /// always the one used. NULL searches `ORT_DYLIB_PATH`, then `.onnxruntime/` (where
    /// `scripts/setup-onnxruntime.sh` puts it) in the current directory, the executable's and
    /// their ancestors, then the system's library path.
    pub ort_library_path: *const c_char,
}

/// What to generate and how. Fill with `dia_generate_options_init`, then set `text`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DiaGenerateOptions {
    /// The size of the struct as the caller knows it (set by `dia_generate_options_init`).
    pub struct_size: usize,
    /// The script, UTF-8, e.g. `"[S1] Hello there. [S2] Hi!"`; any length (a long script is
    /// split into segments, each prompted with the one before, as `dia-run` does).
    pub text: *const c_char,
    /// Most decoder steps per generation (86 a second); 0 (default): the bundle's maximum.
    pub max_tokens: usize,
    /// Classifier-free guidance scale (default 3.0).
    pub cfg_scale: f32,
    /// Sampling temperature; 0 is greedy (default 1.2).
    pub temperature: f32,
    /// Nucleus sampling threshold, in (0, 1] (default 0.95).
    pub top_p: f32,
    /// Top-k applied to the CFG logits (default 45).
    pub cfg_filter_top_k: u32,
    /// Nonzero: sample with `seed` (the same seed gives the same codes as `dia-run --seed`);
    /// 0 (default): a random seed.
    pub use_seed: i32,
    pub seed: u64,
    /// Voice prompt (optional): interleaved samples, `voice_n` per channel, nominally in
    /// [-1, 1], at any rate (mixed down to mono and resampled to the model's rate). NULL
    /// (default) for none.
    pub voice_samples: *const f32,
    /// Samples per channel in `voice_samples`.
    pub voice_n: usize,
    /// Channels of `voice_samples` (default 1).
    pub voice_channels: u32,
    /// Sample rate of `voice_samples` in Hz (default 44100).
    pub voice_sample_rate: u32,
    /// What the voice prompt says, with speaker tags (UTF-8); required with `voice_samples`.
    pub voice_transcript: *const c_char,
    /// Nonzero (default): prompt each segment of a long script with the one before, so
    /// voices carry over.
    pub carry: i32,
    /// Crossfade between the segments of a long script, 0 to 1000 ms (default 40).
    pub crossfade_ms: f32,
    /// Frames of audio (512 samples each) in the first chunk (default 4, for latency).
    pub first_chunk_frames: u32,
    /// Frames of audio in each later chunk (default 32).
    pub chunk_frames: u32,
}

/// Progress, handed to the `dia_generate` callback with every chunk.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DiaProgress {
    /// The size of this struct as this library knows it: fields past it are not there.
    pub struct_size: usize,
    /// The segment under way (0-based) and how many the script has.
    pub segment: usize,
    pub segments: usize,
    /// Frames of codes complete so far, and about how many the script will take.
    pub frames: usize,
    pub estimated_frames: usize,
    /// Decoder steps run so far, all segments.
    pub steps: usize,
    /// Samples handed out so far, this chunk's included.
    pub samples: usize,
    /// Seconds since generation started.
    pub elapsed_s: f64,
    /// 1 on the last call (which carries the last samples), else 0.
    pub is_last: i32,
}

/// One chunk of the pull API, filled by `dia_stream_next`. Set `struct_size` to
/// `sizeof(DiaChunk)` before the first call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DiaChunk {
    pub struct_size: usize,
    /// Mono samples, valid until the next call on the stream or `dia_stream_free`.
    pub samples: *const f32,
    pub n: usize,
    pub sample_rate: u32,
    /// 1 on the last chunk, which carries the last samples (`n` is 0 only when nothing was
    /// left to say after the chunk before); then `dia_stream_codes` has the codes and a
    /// further `dia_stream_next` returns `DIA_ERR_STREAM_ENDED`.
    pub is_last: i32,
}

/// A generation's result, filled by `dia_audio_get`. Set `struct_size` first. The pointers
/// stay valid until `dia_audio_free`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DiaAudioData {
    pub struct_size: usize,
    /// Mono samples at `sample_rate` (none from `dia_generate_codes`).
    pub samples: *const f32,
    pub n: usize,
    pub sample_rate: u32,
    /// Codes `[frames][channels]`, row-major, delay reverted: what `dia-run --save-codes`
    /// writes.
    pub codes: *const i64,
    pub frames: usize,
    pub channels: usize,
}

/// A stream's codes, filled by `dia_stream_codes`. Set `struct_size` first. The pointer stays
/// valid until `dia_stream_free`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DiaCodes {
    pub struct_size: usize,
    /// `[frames][channels]`, row-major, delay reverted.
    pub codes: *const i64,
    pub frames: usize,
    pub channels: usize,
}

/// Called by `dia_generate` with every chunk of mono samples as it is generated (the last
/// call has `progress->is_last == 1`). `samples` is valid during the call only. Return
/// nonzero to go on, 0 to stop (`dia_generate` then returns `DIA_ERR_STOPPED` and no audio).
/// It runs on the thread that called `dia_generate` and must not unwind (throw) through it.
pub type DiaAudioCallback = Option<
    unsafe extern "C" fn(
        samples: *const f32,
        n: usize,
        progress: *const DiaProgress,
        user_data: *mut c_void,
    ) -> i32,
>;

/// A finished generation, behind a `DiaAudio` handle.
pub struct AudioData {
    samples: Vec<f32>,
    sample_rate: u32,
    codes: Vec<i64>,
    channels: usize,
}

// ---- helpers -------------------------------------------------------------------------------

/// Runs `f`, turning an error or a panic into a status and `dia_last_error()`'s message.
fn ffi(f: impl FnOnce() -> Result<(), CapiError>) -> DiaStatus {
    let e = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => return DIA_OK,
        Ok(Err(e)) => e,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            CapiError::Panic(msg)
        }
    };
    error::set_last_error(&e.to_string());
    e.status()
}

fn check_size(size: usize, what: &'static str, v1: usize) -> Result<(), CapiError> {
    if size < v1 || size > DIA_MAX_STRUCT_SIZE {
        return Err(CapiError::StructSize {
            what,
            got: size,
            min: v1,
            max: DIA_MAX_STRUCT_SIZE,
        });
    }
    Ok(())
}

/// Reads a caller's struct whose first field is `struct_size`: the fields it has over
/// `default`'s; fields past what this library knows must be 0.
///
/// # Safety
/// `p` is NULL or points to `struct_size` readable bytes.
unsafe fn read_in<T: Copy>(
    p: *const T,
    what: &'static str,
    v1: usize,
    default: T,
) -> Result<T, CapiError> {
    if p.is_null() {
        return Err(CapiError::Null { what });
    }
    let size = unsafe { (p as *const usize).read_unaligned() };
    check_size(size, what, v1)?;
    let ours = std::mem::size_of::<T>();
    if size > ours {
        let extra = unsafe { std::slice::from_raw_parts(p as *const u8, size) };
        if let Some(i) = extra[ours..].iter().position(|&b| b != 0) {
            return Err(CapiError::UnknownFields {
                what,
                known: ours,
                byte: ours + i,
                version: env!("CARGO_PKG_VERSION"),
            });
        }
    }
    let mut out = default;
    unsafe {
        std::ptr::copy_nonoverlapping(
            p as *const u8,
            &mut out as *mut T as *mut u8,
            size.min(ours),
        )
    };
    Ok(out)
}

/// Writes `value` into a caller's struct of `struct_size` bytes (as much of it as both know).
///
/// # Safety
/// `p` is NULL or points to `struct_size` writable bytes.
unsafe fn write_out<T: Copy>(
    p: *mut T,
    what: &'static str,
    v1: usize,
    mut value: T,
) -> Result<(), CapiError> {
    if p.is_null() {
        return Err(CapiError::Null { what });
    }
    let size = unsafe { (p as *const usize).read_unaligned() };
    check_size(size, what, v1)?;
    let n = size.min(std::mem::size_of::<T>());
    unsafe {
        (&mut value as *mut T as *mut usize).write(n);
        std::ptr::copy_nonoverlapping(&value as *const T as *const u8, p as *mut u8, n);
    }
    Ok(())
}

/// Fills a caller's struct of `size` bytes with `default` (zeros past what we know).
///
/// # Safety
/// `p` is NULL or points to `size` writable bytes.
unsafe fn init_struct<T: Copy>(
    p: *mut T,
    size: usize,
    what: &'static str,
    v1: usize,
    mut default: T,
) -> Result<(), CapiError> {
    if p.is_null() {
        return Err(CapiError::Null { what });
    }
    check_size(size, what, v1)?;
    let ours = std::mem::size_of::<T>();
    unsafe {
        (&mut default as *mut T as *mut usize).write(size);
        std::ptr::copy_nonoverlapping(
            &default as *const T as *const u8,
            p as *mut u8,
            size.min(ours),
        );
        if size > ours {
            std::ptr::write_bytes((p as *mut u8).add(ours), 0, size - ours);
        }
    }
    Ok(())
}

/// A caller's NUL-terminated UTF-8 string.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that outlives `'a`.
unsafe fn str_arg<'a>(p: *const c_char, what: &'static str) -> Result<&'a str, CapiError> {
    if p.is_null() {
        return Err(CapiError::Null { what });
    }
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map_err(|e| CapiError::Utf8 {
            what,
            offset: e.valid_up_to(),
        })
}

/// Sets a caller's out-handle to NULL first, so that on any error it holds no stale value.
///
/// # Safety
/// `p` is NULL or writable.
unsafe fn clear_out<T>(p: *mut *mut T, what: &'static str) -> Result<(), CapiError> {
    if p.is_null() {
        return Err(CapiError::Null { what });
    }
    unsafe { p.write(std::ptr::null_mut()) };
    Ok(())
}

fn invalid(msg: impl Into<String>) -> CapiError {
    CapiError::InvalidArgument(msg.into())
}

fn default_model_options() -> DiaModelOptions {
    DiaModelOptions {
        struct_size: std::mem::size_of::<DiaModelOptions>(),
        execution_provider: DIA_EP_AUTO,
        device_id: 0,
        cuda_graph: 0,
        threads: 0,
        coreml_units: DIA_COREML_ALL,
        ort_library_path: std::ptr::null(),
    }
}

fn default_generate_options() -> DiaGenerateOptions {
    let g = GenerateOptions::default();
    let s = ScriptOptions::default();
    let c = ChunkSizes::default();
    DiaGenerateOptions {
        struct_size: std::mem::size_of::<DiaGenerateOptions>(),
        text: std::ptr::null(),
        max_tokens: 0,
        cfg_scale: g.cfg_scale,
        temperature: g.temperature,
        top_p: g.top_p,
        cfg_filter_top_k: g.cfg_filter_top_k as u32,
        use_seed: 0,
        seed: 0,
        voice_samples: std::ptr::null(),
        voice_n: 0,
        voice_channels: 1,
        voice_sample_rate: 44100,
        voice_transcript: std::ptr::null(),
        carry: s.carry as i32,
        crossfade_ms: s.crossfade_s * 1000.0,
        first_chunk_frames: c.first as u32,
        chunk_frames: c.rest as u32,
    }
}

/// The first version's sizes: a caller's struct may never be smaller.
const MODEL_OPTIONS_V1: usize = std::mem::size_of::<DiaModelOptions>();
const GENERATE_OPTIONS_V1: usize = std::mem::size_of::<DiaGenerateOptions>();
const CHUNK_V1: usize = std::mem::size_of::<DiaChunk>();
const AUDIO_DATA_V1: usize = std::mem::size_of::<DiaAudioData>();
const CODES_V1: usize = std::mem::size_of::<DiaCodes>();

fn model_options(o: &DiaModelOptions) -> Result<ModelOptions, CapiError> {
    let provider = match o.execution_provider {
        DIA_EP_AUTO => ExecutionProvider::Auto,
        DIA_EP_CPU => ExecutionProvider::Cpu,
        DIA_EP_CUDA => ExecutionProvider::Cuda,
        DIA_EP_COREML => ExecutionProvider::CoreMl,
        other => {
            return Err(invalid(format!(
                "execution_provider {other} is not one of DIA_EP_AUTO (0), DIA_EP_CPU (1), \
                 DIA_EP_CUDA (2), DIA_EP_COREML (3)"
            )))
        }
    };
    let coreml_units = match o.coreml_units {
        DIA_COREML_ALL => CoreMlUnits::All,
        DIA_COREML_CPU_AND_NEURAL_ENGINE => CoreMlUnits::CpuAndNeuralEngine,
        DIA_COREML_CPU_AND_GPU => CoreMlUnits::CpuAndGpu,
        other => {
            return Err(invalid(format!(
                "coreml_units {other} is not one of DIA_COREML_ALL (0), \
                 DIA_COREML_CPU_AND_NEURAL_ENGINE (1), DIA_COREML_CPU_AND_GPU (2)"
            )))
        }
    };
    if o.threads < 0 {
        return Err(invalid(format!(
            "threads is {}: give 1 or more, or 0 for ONNX Runtime's choice",
            o.threads
        )));
    }
    if o.device_id < 0 {
        return Err(invalid(format!(
            "device_id is {}: CUDA devices are numbered from 0",
            o.device_id
        )));
    }
    let ort_library = if o.ort_library_path.is_null() {
        None
    } else {
        // SAFETY: the caller promises a NUL-terminated string (the header says so).
        Some(PathBuf::from(unsafe {
            str_arg(o.ort_library_path, "options->ort_library_path")?
        }))
    };
    Ok(ModelOptions {
        threads: (o.threads > 0).then_some(o.threads as usize),
        provider,
        cuda_graph: o.cuda_graph != 0,
        coreml_units,
        ort_library,
        cuda_device_id: o.device_id,
        ..ModelOptions::default()
    })
}

/// A generation request, read out of the caller's options.
struct Request {
    text: String,
    opts: GenerateOptions,
    sopts: ScriptOptions,
    chunks: ChunkSizes,
    /// Mono samples, their rate and the transcript.
    voice: Option<(Vec<f32>, u32, String)>,
}

/// # Safety
/// The pointers in `o` are NULL or valid as the header describes.
unsafe fn request(o: &DiaGenerateOptions) -> Result<Request, CapiError> {
    let text = unsafe { str_arg(o.text, "options->text") }?.to_string();
    if o.first_chunk_frames == 0 || o.chunk_frames == 0 {
        return Err(invalid(format!(
            "first_chunk_frames ({}) and chunk_frames ({}) must be 1 or more",
            o.first_chunk_frames, o.chunk_frames
        )));
    }
    if !(0.0..=1000.0).contains(&o.crossfade_ms) {
        return Err(invalid(format!(
            "crossfade_ms is {}: it must be between 0 and 1000",
            o.crossfade_ms
        )));
    }
    let voice =
        match (o.voice_samples.is_null(), o.voice_transcript.is_null()) {
            (true, true) if o.voice_n == 0 => None,
            (true, true) => {
                return Err(CapiError::Null {
                    what: "options->voice_samples (voice_n is not 0)",
                })
            }
            (true, false) => return Err(CapiError::Null {
                what: "options->voice_samples (voice_transcript is set: a voice prompt needs both)",
            }),
            (false, true) => return Err(CapiError::Null {
                what: "options->voice_transcript (voice_samples is set: a voice prompt needs both)",
            }),
            (false, false) => {
                let transcript =
                    unsafe { str_arg(o.voice_transcript, "options->voice_transcript") }?;
                let channels = o.voice_channels as usize;
                if channels == 0 || o.voice_n == 0 {
                    return Err(invalid(format!(
                        "the voice prompt has voice_n = {} samples of voice_channels = {channels} \
                     channels: it needs at least one sample of one channel",
                        o.voice_n
                    )));
                }
                // No slice may span more than isize::MAX bytes.
                let total = o
                    .voice_n
                    .checked_mul(channels)
                    .filter(|&t| t <= isize::MAX as usize / std::mem::size_of::<f32>())
                    .ok_or_else(|| {
                        invalid(format!(
                            "voice_n ({}) * voice_channels ({channels}) is more samples than \
                             memory holds: voice_n is samples per channel",
                            o.voice_n
                        ))
                    })?;
                // SAFETY: the caller promises `voice_n` samples of `voice_channels` channels.
                let interleaved = unsafe { std::slice::from_raw_parts(o.voice_samples, total) };
                // Mono mix-down: the mean of the channels, summed in the order `dia-run`'s audio
                // reader sums them.
                let mono: Vec<f32> = interleaved
                    .chunks_exact(channels)
                    .map(|f| f.iter().sum::<f32>() / channels as f32)
                    .collect();
                Some((mono, o.voice_sample_rate, transcript.to_string()))
            }
        };
    Ok(Request {
        text,
        opts: GenerateOptions {
            max_tokens: (o.max_tokens > 0).then_some(o.max_tokens),
            cfg_scale: o.cfg_scale,
            temperature: o.temperature,
            top_p: o.top_p,
            cfg_filter_top_k: o.cfg_filter_top_k as usize,
            seed: (o.use_seed != 0).then_some(o.seed),
            audio_prompt: None,
            ignore_eos: false,
        },
        sopts: ScriptOptions {
            carry: o.carry != 0,
            crossfade_s: o.crossfade_ms / 1000.0,
            ..ScriptOptions::default()
        },
        chunks: ChunkSizes {
            first: o.first_chunk_frames as usize,
            rest: o.chunk_frames as usize,
        },
        voice,
    })
}

/// The plan and the voice, as `dia-run` makes them (the voice resampled to the codec's rate
/// and encoded; the script split for the model).
fn prepare(
    model: &dia_run::DiaModel,
    r: &Request,
) -> Result<(ScriptPlan, Option<VoicePrompt>), CapiError> {
    let voice = match &r.voice {
        None => None,
        Some((samples, rate, transcript)) => {
            let samples = dia_run::audio::resample(samples, *rate, model.sample_rate())
                .map_err(CapiError::Run)?;
            Some(VoicePrompt {
                codes: model.encode_audio(&samples).map_err(CapiError::Run)?,
                transcript: transcript.clone(),
            })
        }
    };
    let plan = ScriptPlan::new(model, &r.text, voice.as_ref(), &r.opts, &r.sopts)
        .map_err(CapiError::Run)?;
    Ok((plan, voice))
}

fn progress(p: ScriptProgress, samples: usize, is_last: bool) -> DiaProgress {
    DiaProgress {
        struct_size: std::mem::size_of::<DiaProgress>(),
        segment: p.segment,
        segments: p.segments,
        frames: p.frames,
        estimated_frames: p.estimated_frames,
        steps: p.steps,
        samples,
        elapsed_s: p.elapsed_s,
        is_last: is_last as i32,
    }
}

fn handle<T>(id: usize) -> *mut T {
    // Handles are IDs, never dereferenced (see `registry`).
    std::ptr::without_provenance_mut(id)
}

// ---- entry points --------------------------------------------------------------------------

/// The library's version, e.g. `"0.1.0"` (static; never free it). Equals `DIA_VERSION_STRING`
/// of the header it was built with.
#[no_mangle]
pub extern "C" fn dia_version() -> *const c_char {
    VERSION.as_ptr().cast()
}

/// The message of the last failed call on this thread ("" if none failed yet). Valid until
/// the next failing call on this thread; successful calls leave it as it is.
#[no_mangle]
pub extern "C" fn dia_last_error() -> *const c_char {
    error::last_error_ptr()
}

/// Fills `*options` with the defaults; `struct_size` is `sizeof(DiaModelOptions)` as the
/// caller knows it.
///
/// # Safety
/// `options` is NULL or points to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn dia_model_options_init(
    options: *mut DiaModelOptions,
    struct_size: usize,
) -> DiaStatus {
    ffi(|| unsafe {
        init_struct(
            options,
            struct_size,
            "options",
            MODEL_OPTIONS_V1,
            default_model_options(),
        )
    })
}

/// Fills `*options` with the defaults (those of `dia-run`); `struct_size` is
/// `sizeof(DiaGenerateOptions)` as the caller knows it. Set `text` after.
///
/// # Safety
/// `options` is NULL or points to `struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn dia_generate_options_init(
    options: *mut DiaGenerateOptions,
    struct_size: usize,
) -> DiaStatus {
    ffi(|| unsafe {
        init_struct(
            options,
            struct_size,
            "options",
            GENERATE_OPTIONS_V1,
            default_generate_options(),
        )
    })
}

/// Loads the bundle in `bundle_dir` (UTF-8 path) into `*out_model`; `options` may be NULL for
/// the defaults. On failure `*out_model` is NULL. Free it with `dia_model_free`.
///
/// # Safety
/// `bundle_dir` is NULL or a NUL-terminated string; `options` is NULL or initialised by
/// `dia_model_options_init`; `out_model` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn dia_model_load(
    bundle_dir: *const c_char,
    options: *const DiaModelOptions,
    out_model: *mut *mut DiaModel,
) -> DiaStatus {
    ffi(|| unsafe {
        clear_out(out_model, "out_model")?;
        let dir = PathBuf::from(str_arg(bundle_dir, "bundle_dir")?);
        let o = if options.is_null() {
            default_model_options()
        } else {
            read_in(
                options,
                "options",
                MODEL_OPTIONS_V1,
                default_model_options(),
            )?
        };
        let opts = model_options(&o)?;
        if !dir.is_dir() {
            return Err(CapiError::BundleDir(dir));
        }
        let model = dia_run::DiaModel::load(&dir, &opts).map_err(CapiError::Load)?;
        let warnings = model
            .warnings()
            .iter()
            .map(|w| CString::new(w.replace('\0', " ")).expect("NULs replaced"))
            .collect();
        let id = registry::insert(registry::Object::Model(Arc::new(registry::ModelEntry {
            model: Arc::new(model),
            warnings,
        })));
        out_model.write(handle(id));
        Ok(())
    })
}

/// Frees a model (NULL: nothing to do). Streams started on it keep it alive until they are
/// freed. A handle freed already gives `DIA_ERR_INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn dia_model_free(model: *mut DiaModel) -> DiaStatus {
    ffi(|| registry::remove(model as usize, "model", "model"))
}

/// The sample rate of the model's audio (44100 for Dia's DAC).
///
/// # Safety
/// `out_rate` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn dia_sample_rate(model: *const DiaModel, out_rate: *mut u32) -> DiaStatus {
    ffi(|| {
        let m = registry::model(model as usize, "model")?;
        if out_rate.is_null() {
            return Err(CapiError::Null { what: "out_rate" });
        }
        unsafe { out_rate.write(m.sample_rate()) };
        Ok(())
    })
}

/// The execution provider the model runs on (`DIA_EP_CPU`, `DIA_EP_CUDA` or
/// `DIA_EP_COREML`): what `DIA_EP_AUTO` chose, or the CPU after a fallback.
///
/// # Safety
/// `out_provider` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn dia_model_provider(
    model: *const DiaModel,
    out_provider: *mut DiaExecutionProvider,
) -> DiaStatus {
    ffi(|| {
        let m = registry::model(model as usize, "model")?;
        if out_provider.is_null() {
            return Err(CapiError::Null {
                what: "out_provider",
            });
        }
        let p = match m.provider() {
            ExecutionProvider::Auto | ExecutionProvider::Cpu => DIA_EP_CPU,
            ExecutionProvider::Cuda => DIA_EP_CUDA,
            ExecutionProvider::CoreMl => DIA_EP_COREML,
        };
        unsafe { out_provider.write(p) };
        Ok(())
    })
}

/// How many warnings loading the model gave (a provider that fell back to the CPU, an
/// `ort_library_path` not used because ONNX Runtime was loaded already, a bundle that is slow
/// on its provider); read them with `dia_model_warning`.
///
/// # Safety
/// `out_count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn dia_model_warning_count(
    model: *const DiaModel,
    out_count: *mut usize,
) -> DiaStatus {
    ffi(|| {
        let e = registry::model_entry(model as usize, "model")?;
        if out_count.is_null() {
            return Err(CapiError::Null { what: "out_count" });
        }
        unsafe { out_count.write(e.warnings.len()) };
        Ok(())
    })
}

/// Warning `index` (from 0) of loading the model, as UTF-8 text in `*out_message`, valid until
/// the model is freed; an index past the count gives `DIA_ERR_INVALID_ARGUMENT`.
///
/// # Safety
/// `out_message` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn dia_model_warning(
    model: *const DiaModel,
    index: usize,
    out_message: *mut *const c_char,
) -> DiaStatus {
    ffi(|| {
        let e = registry::model_entry(model as usize, "model")?;
        if out_message.is_null() {
            return Err(CapiError::Null {
                what: "out_message",
            });
        }
        let w = e.warnings.get(index).ok_or_else(|| {
            invalid(format!(
                "warning index {index} is past the model's {} warnings",
                e.warnings.len()
            ))
        })?;
        // The string lives in the registry's entry until `dia_model_free` drops it.
        unsafe { out_message.write(w.as_ptr()) };
        Ok(())
    })
}

/// Push API: generates `options->text`, calling `callback` (if not NULL) with every chunk of
/// audio as it is decoded, and on success stores the whole audio and the codes in
/// `*out_audio` (if `out_audio` is not NULL; free with `dia_audio_free`). At least one of
/// `callback` and `out_audio` is needed. When the callback returns 0 the generation stops:
/// the result is `DIA_ERR_STOPPED` and `*out_audio` is NULL.
///
/// # Safety
/// `options` is initialised by `dia_generate_options_init` and its pointers are valid;
/// `out_audio` is NULL or writable; `callback` is NULL or a function of that type.
#[no_mangle]
pub unsafe extern "C" fn dia_generate(
    model: *const DiaModel,
    options: *const DiaGenerateOptions,
    callback: DiaAudioCallback,
    user_data: *mut c_void,
    out_audio: *mut *mut DiaAudio,
) -> DiaStatus {
    ffi(|| unsafe {
        let want_audio = !out_audio.is_null();
        if want_audio {
            out_audio.write(std::ptr::null_mut());
        }
        let m = registry::model(model as usize, "model")?;
        let o = read_in(
            options,
            "options",
            GENERATE_OPTIONS_V1,
            default_generate_options(),
        )?;
        let r = request(&o)?;
        if callback.is_none() && !want_audio {
            return Err(invalid(
                "callback and out_audio are both NULL: give a callback for the chunks, an \
                 out_audio for the whole result, or both",
            ));
        }
        let (plan, voice) = prepare(&m, &r)?;
        let mut s = ScriptStream::new(&m, plan, voice, &r.opts, &r.sopts, r.chunks)
            .map_err(CapiError::Run)?;
        let mut all = Vec::new();
        let mut chunk = Vec::new();
        let mut samples = 0;
        loop {
            chunk.clear();
            let more = stream::next_chunk(&mut s, &mut chunk).map_err(CapiError::Run)?;
            samples += chunk.len();
            if let Some(cb) = callback {
                let p = progress(s.generator().progress(), samples, !more);
                if cb(chunk.as_ptr(), chunk.len(), &p, user_data) == 0 {
                    return Err(CapiError::Stopped);
                }
            }
            if want_audio {
                all.extend_from_slice(&chunk);
            }
            if !more {
                break;
            }
        }
        let g = s.finish().generation;
        if want_audio {
            let id = registry::insert(registry::Object::Audio(Arc::new(AudioData {
                samples: all,
                sample_rate: m.sample_rate(),
                codes: g.codes.data,
                channels: g.codes.channels,
            })));
            out_audio.write(handle(id));
        }
        Ok(())
    })
}

/// Generates the codes of `options->text` only (no audio: works with a bundle exported
/// without a codec, unless there is a voice prompt to encode) into `*out_audio`, whose
/// `samples` are then empty. The same codes as `dia_generate` and `dia-run --save-codes`
/// for the same options and seed.
///
/// # Safety
/// As `dia_generate`; `out_audio` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn dia_generate_codes(
    model: *const DiaModel,
    options: *const DiaGenerateOptions,
    out_audio: *mut *mut DiaAudio,
) -> DiaStatus {
    ffi(|| unsafe {
        clear_out(out_audio, "out_audio")?;
        let m = registry::model(model as usize, "model")?;
        let o = read_in(
            options,
            "options",
            GENERATE_OPTIONS_V1,
            default_generate_options(),
        )?;
        let r = request(&o)?;
        let (plan, voice) = prepare(&m, &r)?;
        let mut g = ScriptGenerator::new(&m, plan, voice, &r.opts).map_err(CapiError::Run)?;
        while !g.is_done() {
            g.step().map_err(CapiError::Run)?;
        }
        let codes = g.finish().generation.codes;
        let id = registry::insert(registry::Object::Audio(Arc::new(AudioData {
            samples: Vec::new(),
            sample_rate: m.sample_rate(),
            codes: codes.data,
            channels: codes.channels,
        })));
        out_audio.write(handle(id));
        Ok(())
    })
}

/// Reads a result's samples and codes into `*out` (set `out->struct_size` first).
///
/// # Safety
/// `out` is NULL or points to `out->struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn dia_audio_get(
    audio: *const DiaAudio,
    out: *mut DiaAudioData,
) -> DiaStatus {
    ffi(|| unsafe {
        let a = registry::audio(audio as usize, "audio")?;
        let channels = a.channels.max(1);
        write_out(
            out,
            "out",
            AUDIO_DATA_V1,
            DiaAudioData {
                struct_size: 0,
                samples: a.samples.as_ptr(),
                n: a.samples.len(),
                sample_rate: a.sample_rate,
                codes: a.codes.as_ptr(),
                frames: a.codes.len() / channels,
                channels: a.channels,
            },
        )
        // The data lives in the registry's `Arc` until `dia_audio_free`.
    })
}

/// Frees a result (NULL: nothing to do). A handle freed already gives
/// `DIA_ERR_INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn dia_audio_free(audio: *mut DiaAudio) -> DiaStatus {
    ffi(|| registry::remove(audio as usize, "audio", "audio"))
}

/// Pull API: starts generating `options->text` into `*out_stream` (options are checked and a
/// voice prompt is encoded here; the text encoder and the decoder run in `dia_stream_next`).
/// Free it with `dia_stream_free`.
///
/// # Safety
/// As `dia_generate`; `out_stream` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn dia_stream_start(
    model: *const DiaModel,
    options: *const DiaGenerateOptions,
    out_stream: *mut *mut DiaStream,
) -> DiaStatus {
    ffi(|| unsafe {
        clear_out(out_stream, "out_stream")?;
        let m = registry::model(model as usize, "model")?;
        let o = read_in(
            options,
            "options",
            GENERATE_OPTIONS_V1,
            default_generate_options(),
        )?;
        let r = request(&o)?;
        let state = stream::StreamState::new(m, |model| {
            let (plan, voice) = prepare(model, &r)?;
            ScriptStream::new(model, plan, voice, &r.opts, &r.sopts, r.chunks)
                .map_err(CapiError::Run)
        })?;
        let id = registry::insert(registry::Object::Stream(Arc::new(Mutex::new(state))));
        out_stream.write(handle(id));
        Ok(())
    })
}

/// Runs the generation until the next chunk of audio is ready and describes it in `*chunk`
/// (set `chunk->struct_size` first). The chunk with `is_last = 1` carries the last samples;
/// a call after it returns `DIA_ERR_STREAM_ENDED`. After an error the stream cannot go on.
///
/// # Safety
/// `chunk` is NULL or points to `chunk->struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn dia_stream_next(
    stream: *mut DiaStream,
    chunk: *mut DiaChunk,
) -> DiaStatus {
    ffi(|| unsafe {
        let s = registry::stream(stream as usize, "stream")?;
        // Checked before any work, so a bad struct loses no audio.
        if chunk.is_null() {
            return Err(CapiError::Null { what: "chunk" });
        }
        check_size((chunk as *const usize).read_unaligned(), "chunk", CHUNK_V1)?;
        let mut st = match s.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::WouldBlock) => return Err(CapiError::Busy),
            // A panic mid-step left it poisoned: it cannot go on.
            Err(std::sync::TryLockError::Poisoned(_)) => {
                return Err(CapiError::StreamFailed(
                    "an earlier call panicked while stepping it".into(),
                ))
            }
        };
        let next = st.next_chunk()?;
        write_out(
            chunk,
            "chunk",
            CHUNK_V1,
            DiaChunk {
                struct_size: 0,
                samples: st.chunk.as_ptr(),
                n: st.chunk.len(),
                sample_rate: st.sample_rate,
                is_last: next.is_last as i32,
            },
        )
        // `st.chunk` lives in the registry's `Arc` until the next call or `dia_stream_free`.
    })
}

/// The stream's codes (as `dia-run --save-codes` writes them), once the chunk with
/// `is_last = 1` was handed out; before, `DIA_ERR_INVALID_ARGUMENT`. Set `out->struct_size`
/// first.
///
/// # Safety
/// `out` is NULL or points to `out->struct_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn dia_stream_codes(
    stream: *const DiaStream,
    out: *mut DiaCodes,
) -> DiaStatus {
    ffi(|| unsafe {
        let s = registry::stream(stream as usize, "stream")?;
        let st = match s.try_lock() {
            Ok(g) => g,
            Err(_) => return Err(CapiError::Busy),
        };
        let Some((codes, channels)) = &st.codes else {
            return Err(CapiError::StreamRunning);
        };
        write_out(
            out,
            "out",
            CODES_V1,
            DiaCodes {
                struct_size: 0,
                codes: codes.as_ptr(),
                frames: codes.len() / (*channels).max(1),
                channels: *channels,
            },
        )
    })
}

/// Frees a stream (NULL: nothing to do), stopping its generation. A handle freed already
/// gives `DIA_ERR_INVALID_HANDLE`.
#[no_mangle]
pub extern "C" fn dia_stream_free(stream: *mut DiaStream) -> DiaStatus {
    ffi(|| registry::remove(stream as usize, "stream", "stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = ffi(|| panic!("boom"));
        assert_eq!(status, DIA_ERR_PANIC);
        let msg = unsafe { CStr::from_ptr(dia_last_error()) }
            .to_str()
            .unwrap();
        assert!(msg.contains("boom") && msg.contains("panic"), "{msg}");
    }

    #[test]
    fn the_version_macros_are_the_crates_version() {
        let v = format!("{DIA_VERSION_MAJOR}.{DIA_VERSION_MINOR}.{DIA_VERSION_PATCH}");
        assert_eq!(v, env!("CARGO_PKG_VERSION"));
        let s = unsafe { CStr::from_ptr(dia_version()) }.to_str().unwrap();
        assert_eq!(s, v);
    }
}
