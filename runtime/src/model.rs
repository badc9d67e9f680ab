//! A loaded bundle: the manifest and its three parts along the data flow, the text encoder
//! ([`TextEncoder`]), the decoder step with its pool of states ([`DecoderStep`]) and the
//! codec ([`Codec`]). Load once, generate many times: a `DiaModel` is `Sync`; each utterance
//! checks a decoder state out of the pool, so several threads (or several generators on one
//! thread) run at once, their steps taking turns on the session.

use std::path::{Path, PathBuf};

use dia_bundle::{DiaConfig, Dtype, Manifest, StepLayout, Target};

use crate::codec::Codec;
use crate::decoder::{DecoderStep, Utterance};
use crate::delay::Frames;
use crate::encoder::TextEncoder;
use crate::error::RuntimeError;
use crate::providers::{self, ExecutionProvider};
use crate::session::{self, SessionSettings};

/// Frames per codec call on a GPU (see [`ModelOptions::codec_window`]): a streamed chunk of
/// the default 32 frames plus its context on both sides fits.
pub const CODEC_WINDOW: usize = 64;

/// How to run the bundle.
#[derive(Clone, Debug, Default)]
pub struct ModelOptions {
    /// Intra-op threads (default: ONNX Runtime's choice, all physical cores).
    pub threads: Option<usize>,
    /// Execution provider (default: auto).
    pub provider: ExecutionProvider,
    /// CUDA only: capture the decoder step's kernel launches once per decoder state and replay
    /// them (ONNX Runtime's CUDA graphs); every step input and output then lives at a fixed
    /// address, which pooled states keep for the model's lifetime.
    pub cuda_graph: bool,
    /// Utterances take turns whole, each text bucket keeping one decoder state (a second one
    /// started on the thread whose generation is alive gets an error): what `cuda_graph`
    /// implies, available on any provider to test that discipline.
    pub utterances_take_turns: bool,
    /// CoreML only: compute units (default all).
    pub coreml_units: providers::CoreMlUnits,
    /// CoreML only: compiled-model cache directory (default: `coreml-cache/` in the bundle).
    pub coreml_cache_dir: Option<PathBuf>,
    /// The ONNX Runtime library to load when the process has none loaded yet (default: the
    /// search of [`crate::onnxruntime`]).
    pub ort_library: Option<PathBuf>,
    /// CUDA only: the GPU to run on.
    pub cuda_device_id: i32,
    /// Profile every graph with ONNX Runtime's profiler into `<prefix>_<graph>_<time>.json`
    /// (written when the model is dropped).
    pub profile: Option<PathBuf>,
    /// Frames per codec decoder call for codecs of dynamic length: every call (one-shot
    /// windows and streamed chunks alike) the same length, so per-shape set-up on a GPU
    /// (cuDNN's algorithm choice) is paid once. `None`: [`CODEC_WINDOW`] on CUDA, the exact
    /// length elsewhere; `Some(0)`: always the exact length.
    pub codec_window: Option<usize>,
    /// CUDA only: cuDNN's convolution algorithm search (the codec's convolutions).
    pub conv_search: providers::ConvSearch,
    /// CUDA only: 1-D convolutions in ONNX Runtime's default layout (see
    /// [`providers::ProviderOptions::conv1d_ncl1`]).
    pub conv1d_ncl1: bool,
}

pub struct DiaModel {
    /// Declared first: its pooled states are dropped before the other sessions.
    decoder: DecoderStep,
    encoder: TextEncoder,
    codec: Option<Codec>,
    dir: PathBuf,
    manifest: Manifest,
    layout: StepLayout,
    provider: ExecutionProvider,
    warnings: Vec<String>,
    load_timings: LoadTimings,
}

/// Where loading a bundle went (seconds): the manifest and file checks, then each graph's
/// session (reading its weights, ONNX Runtime's graph optimisation, the provider's set-up).
#[derive(Clone, Copy, Debug, Default)]
pub struct LoadTimings {
    pub manifest_s: f64,
    pub encoder_s: f64,
    pub decoder_step_s: f64,
    pub codec_s: f64,
}

impl DiaModel {
    /// Loads the bundle in `dir`: manifest (checked against itself and the files on disk),
    /// then every graph (checked against the manifest).
    pub fn load(dir: &Path, opts: &ModelOptions) -> Result<Self, RuntimeError> {
        if !dir.is_dir() {
            return Err(RuntimeError::MissingFile {
                path: dir.to_path_buf(),
                what: "the bundle directory".into(),
            });
        }
        let t = std::time::Instant::now();
        let mut load_timings = LoadTimings::default();
        let manifest = Manifest::load(dir)?;
        manifest.check_files(dir)?;
        load_timings.manifest_s = t.elapsed().as_secs_f64();
        crate::onnxruntime::environment_with(opts.ort_library.as_deref())?;
        let mut warnings = Vec::new();
        if let (Some(asked), Some(loaded)) = (&opts.ort_library, crate::onnxruntime::library_path())
        {
            let same = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
            if same(asked) != same(loaded) {
                warnings.push(format!(
                    "ONNX Runtime was already loaded in this process from {}, so {} is not used",
                    loaded.display(),
                    asked.display()
                ));
            }
        }
        let layout = manifest.layout();
        let settings = SessionSettings {
            threads: opts.threads,
            provider: opts.provider,
            cuda_graph: opts.cuda_graph,
            coreml_units: opts.coreml_units,
            coreml_cache_dir: opts.coreml_cache_dir.clone(),
            cuda_device_id: opts.cuda_device_id,
            profile: opts.profile.clone(),
            conv_search: opts.conv_search,
            conv1d_ncl1: opts.conv1d_ncl1,
        };
        let g = &manifest.graphs;
        let cfg = &manifest.config;
        // The decoder step (most of the load: its weights, prepacked) opens on a thread of its
        // own while the encoder and the codec open here.
        // (A plain thread, not a scoped one: a scope makes std allocate a handle for the
        // calling thread that lives as long as it, which a C host's leak checker reports.)
        let step = {
            let (dir, spec, settings) =
                (dir.to_path_buf(), g.decoder_step.clone(), settings.clone());
            std::thread::Builder::new()
                .name("dia-load-step".into())
                .spawn(move || {
                    let t = std::time::Instant::now();
                    let s = session::open(&dir, "decoder_step", &spec, &settings, true);
                    (s, t.elapsed().as_secs_f64())
                })
                .map_err(|e| {
                    RuntimeError::Internal(format!("cannot start a loading thread: {e}"))
                })?
        };
        let t = std::time::Instant::now();
        let enc = session::open(dir, "encoder", &g.encoder, &settings, false);
        load_timings.encoder_s = t.elapsed().as_secs_f64();
        let t = std::time::Instant::now();
        let codec_sessions = match (&g.dac_decoder, &g.dac_encoder, &manifest.dac) {
            (Some(d), Some(e), Some(_)) => Some(
                session::open(dir, "dac_decoder", d, &settings, false).and_then(|dd| {
                    Ok((dd, session::open(dir, "dac_encoder", e, &settings, false)?))
                }),
            ),
            _ => None,
        };
        load_timings.codec_s = t.elapsed().as_secs_f64();
        let (dec, dec_s) = step.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
        load_timings.decoder_step_s = dec_s;
        // Errors in the order the graphs were opened before (the encoder's first).
        let enc = enc?;
        let dec = dec?;
        warnings.extend(dec.warning.iter().cloned());
        let on_cuda = dec.provider == ExecutionProvider::Cuda;
        if on_cuda && layout.target == Target::Fused && layout.dtype == Dtype::Float32 {
            // ONNX Runtime then runs GroupQueryAttention on the CPU, copying every step.
            warnings.push(
                "this float32 fused bundle runs GroupQueryAttention on the CPU (CUDA has no \
                 float32 kernel for it): export with --dtype f16 (or bf16) for the GPU, or \
                 --target portable for float32 on CUDA"
                    .into(),
            );
        }
        let codec = match (codec_sessions, &manifest.dac) {
            (Some(sessions), Some(info)) => {
                let (dec, enc) = sessions?;
                // On a GPU every new input length costs set-up (cuDNN's algorithm choice):
                // decode in windows of one length there.
                let window = match opts.codec_window {
                    Some(0) => None,
                    Some(n) => Some(n),
                    None => (dec.provider == ExecutionProvider::Cuda).then_some(CODEC_WINDOW),
                };
                Some(Codec::new(dec.session, enc.session, info.clone(), window)?)
            }
            _ => None,
        };
        let layers = cfg.decoder_config.num_hidden_layers;
        Ok(Self {
            decoder: DecoderStep::new(
                dec.session,
                layout,
                cfg.decoder_config.clone(),
                cfg.bos_token_id,
                on_cuda,
                opts.cuda_graph,
                opts.utterances_take_turns,
            ),
            encoder: TextEncoder::new(enc.session, layout, layers),
            codec,
            dir: dir.to_path_buf(),
            layout,
            provider: dec.provider,
            warnings,
            load_timings,
            manifest,
        })
    }

    /// The execution provider the decoder runs on.
    pub fn provider(&self) -> ExecutionProvider {
        self.provider
    }

    /// What the bundle's graphs were built for.
    pub fn target(&self) -> Target {
        self.layout.target
    }

    /// The step and encoder contract of the bundle.
    pub fn layout(&self) -> &StepLayout {
        &self.layout
    }

    /// The text length the decoder step runs at for a text of `len` tokens (see
    /// [`dia_bundle::TextLength`]).
    pub fn text_bucket(&self, len: usize) -> usize {
        self.layout.text.bucket(len)
    }

    /// Whether the decoder step replays captured CUDA graphs.
    pub fn cuda_graph(&self) -> bool {
        self.decoder.cuda_graph()
    }

    /// The decoder step and its pool of states.
    pub fn decoder(&self) -> &DecoderStep {
        &self.decoder
    }

    /// Where loading went.
    pub fn load_timings(&self) -> LoadTimings {
        self.load_timings
    }

    /// Warnings from loading (e.g. a requested provider that fell back to the CPU).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The codec, when the bundle carries one (it was exported with `--dac`).
    pub fn codec(&self) -> Option<&Codec> {
        self.codec.as_ref()
    }

    /// Whether the bundle can turn codes into audio (it was exported with `--dac`).
    pub fn has_codec(&self) -> bool {
        self.codec.is_some()
    }

    /// The codec, or an error saying how to export it, naming what needed it.
    pub fn require_codec(&self, what: &str) -> Result<&Codec, RuntimeError> {
        self.codec.as_ref().ok_or_else(|| RuntimeError::NoCodec {
            bundle: self.dir.clone(),
            what: what.to_string(),
        })
    }

    /// Decodes codes `[frames, C]` into a mono waveform at the codec's sample rate.
    pub fn decode_audio(&self, codes: &Frames) -> Result<Vec<f32>, RuntimeError> {
        self.require_codec("write audio")?.decode(codes)
    }

    /// Encodes a mono waveform at the codec's sample rate into codes `[frames, C]`.
    pub fn encode_audio(&self, wave: &[f32]) -> Result<Frames, RuntimeError> {
        self.require_codec("use a voice prompt")?.encode(wave)
    }

    /// The codec's sample rate (44.1 kHz when the bundle has no codec).
    pub fn sample_rate(&self) -> u32 {
        self.manifest.dac.as_ref().map_or(44100, |d| d.sample_rate)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }
    pub fn config(&self) -> &DiaConfig {
        &self.manifest.config
    }

    /// Runs the encoder on `text` (conditional tokens, unpadded) and checks a decoder state
    /// out for it: the low-level way to drive steps (teacher forcing, parity tests).
    pub fn utterance(&self, text: &[i64]) -> Result<Utterance<'_>, RuntimeError> {
        let max = self.manifest.max_text_len;
        if text.len() > max {
            return Err(RuntimeError::TextTooLong {
                tokens: text.len(),
                max,
            });
        }
        let cross = self.encoder.encode(text, self.text_bucket(text.len()))?;
        self.decoder.checkout(cross)
    }

    /// The decoder's cross inputs for `text` (conditional tokens, unpadded), padded to `bucket`
    /// text positions.
    pub(crate) fn encode_cross(
        &self,
        text: &[i64],
        bucket: usize,
    ) -> Result<crate::encoder::CrossInputs, RuntimeError> {
        self.encoder.encode(text, bucket)
    }

    /// Encoder states `[2, len, E]` for `text` (unpadded conditional tokens), padded with 0
    /// tokens to `pad_to` first if given (as the reference pads), for parity tests.
    pub fn encoder_states(
        &self,
        text: &[i64],
        pad_to: Option<usize>,
    ) -> Result<Vec<f32>, RuntimeError> {
        self.encoder.states(text, pad_to)
    }
}
