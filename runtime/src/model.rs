//! A loaded bundle: manifest plus ONNX Runtime sessions. Load once, generate many times; a
//! `DiaModel` is `Sync`, and each generation keeps its own state ([`crate::decoder::Utterance`]),
//! so several threads can generate at once (their steps take turns on the sessions). With a
//! CUDA graph (or [`ModelOptions::reuse_state`]) the model keeps one state per text bucket
//! instead, since a captured graph replays fixed addresses; generations then take turns whole.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use dia_bundle::{DiaConfig, GraphSpec, Manifest};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionOutputs};
use ort::value::{DynValue, Tensor};

use crate::delay::Frames;
use crate::error::RuntimeError;
use crate::onnxruntime;
use crate::providers::{self, ExecutionProvider};

/// How to run the bundle.
#[derive(Clone, Debug, Default)]
pub struct ModelOptions {
    /// Intra-op threads (default: ONNX Runtime's choice, all physical cores).
    pub threads: Option<usize>,
    /// Execution provider (default: auto).
    pub provider: ExecutionProvider,
    /// CUDA only: capture the decoder step's kernel launches once and replay them (ONNX
    /// Runtime's CUDA graphs); every step input and output then lives at a fixed address.
    pub cuda_graph: bool,
    /// Keep one decoder state (cache, cross K/V, step buffers) for the model's lifetime and
    /// refill it for each utterance, instead of allocating one per utterance; utterances then
    /// take turns. Implied by `cuda_graph`, whose captured graph replays fixed addresses.
    pub reuse_state: bool,
    /// CoreML only: compute units (default all).
    pub coreml_units: providers::CoreMlUnits,
    /// CoreML only: compiled-model cache directory (default: `coreml-cache/` in the bundle).
    pub coreml_cache_dir: Option<PathBuf>,
    /// Profile the decoder step with ONNX Runtime's profiler into `<prefix>_<time>.json`
    /// (written when the model is dropped).
    pub profile: Option<PathBuf>,
}

pub struct DiaModel {
    /// The decoder state a captured CUDA graph replays (CUDA-graph mode only). Declared first:
    /// it is dropped before the sessions it is bound to.
    graph_state: Mutex<HashMap<usize, crate::decoder::StepState>>,
    dir: PathBuf,
    manifest: Manifest,
    encoder: Mutex<Session>,
    decoder: Mutex<Session>,
    dac_decoder: Option<Mutex<Session>>,
    dac_encoder: Option<Mutex<Session>>,
    provider: ExecutionProvider,
    cuda_graph: bool,
    reuse_state: bool,
    /// Direct copies of the per-step inputs and logits (CUDA provider only).
    cuda_copy: Option<crate::cuda_copy::CudaCopy>,
    warnings: Vec<String>,
}

fn check_graph(dir: &Path, name: &str, spec: &GraphSpec) -> Result<PathBuf, RuntimeError> {
    let path = dir.join(&spec.file);
    if !path.is_file() {
        return Err(RuntimeError::MissingFile {
            path,
            what: format!("the {name} graph"),
        });
    }
    if let Some(w) = &spec.weights {
        let wp = dir.join(w);
        if !wp.is_file() {
            return Err(RuntimeError::MissingFile {
                path: wp,
                what: format!("the {name} weights"),
            });
        }
    }
    Ok(path)
}

/// An opened session and the provider it runs on (with a warning if that is not the one asked for).
struct Opened {
    session: Session,
    provider: ExecutionProvider,
    warning: Option<String>,
}

fn open_session(
    path: &Path,
    name: &str,
    spec: &GraphSpec,
    opts: &ModelOptions,
) -> Result<Opened, RuntimeError> {
    let env = onnxruntime::environment()?;
    let mut b = Session::builder(env)?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(ort::Error::from)?;
    if let Some(n) = opts.threads {
        b = b.with_intra_threads(n).map_err(ort::Error::from)?;
    }
    if let (Some(prefix), "decoder_step") = (&opts.profile, name) {
        b = b.with_profiling(prefix).map_err(ort::Error::from)?;
    }
    let popts = providers::ProviderOptions {
        cuda_graph: opts.cuda_graph && name == "decoder_step",
        coreml_units: opts.coreml_units,
        coreml_cache_dir: Some(
            opts.coreml_cache_dir
                .clone()
                .unwrap_or_else(|| path.parent().unwrap_or(Path::new(".")).join("coreml-cache")),
        ),
    };
    let (mut b, provider, warning) = providers::register(b, opts.provider, &popts);
    let session = b.commit_from_file(path)?;
    for t in &spec.inputs {
        if !session.inputs().iter().any(|i| i.name() == t.name) {
            return Err(RuntimeError::GraphMismatch {
                graph: name.into(),
                kind: "input",
                name: t.name.clone(),
            });
        }
    }
    Ok(Opened {
        session,
        provider,
        warning,
    })
}

impl DiaModel {
    /// Loads the bundle in `dir` (manifest, encoder and decoder-step graphs).
    pub fn load(dir: &Path, opts: &ModelOptions) -> Result<Self, RuntimeError> {
        if !dir.is_dir() {
            return Err(RuntimeError::MissingFile {
                path: dir.to_path_buf(),
                what: "the bundle directory".into(),
            });
        }
        let manifest = Manifest::load(dir)?;
        let enc_path = check_graph(dir, "encoder", &manifest.graphs.encoder)?;
        let dec_path = check_graph(dir, "decoder_step", &manifest.graphs.decoder_step)?;
        crate::kv_cache::element_type(&manifest.dtype)?;
        let encoder = open_session(&enc_path, "encoder", &manifest.graphs.encoder, opts)?;
        let decoder = open_session(
            &dec_path,
            "decoder_step",
            &manifest.graphs.decoder_step,
            opts,
        )?;
        let mut warnings: Vec<String> = decoder.warning.iter().cloned().collect();
        if decoder.provider == ExecutionProvider::Cuda
            && manifest.target == "fused"
            && manifest.dtype == "float32"
        {
            // ONNX Runtime then runs GroupQueryAttention on the CPU, copying every step.
            warnings.push(
                "this float32 fused bundle runs GroupQueryAttention on the CPU (CUDA has no \
                 float32 kernel for it): export with --dtype f16 (or bf16) for the GPU, or \
                 --target portable for float32 on CUDA"
                    .into(),
            );
        }
        let optional = |spec: &Option<GraphSpec>,
                        name: &str|
         -> Result<Option<Mutex<Session>>, RuntimeError> {
            match spec {
                Some(spec) => {
                    let path = check_graph(dir, name, spec)?;
                    Ok(Some(Mutex::new(
                        open_session(&path, name, spec, opts)?.session,
                    )))
                }
                None => Ok(None),
            }
        };
        let dac_decoder = optional(&manifest.graphs.dac_decoder, "dac_decoder")?;
        let dac_encoder = optional(&manifest.graphs.dac_encoder, "dac_encoder")?;
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
            encoder: Mutex::new(encoder.session),
            decoder: Mutex::new(decoder.session),
            dac_decoder,
            dac_encoder,
            provider: decoder.provider,
            cuda_graph: opts.cuda_graph && decoder.provider == ExecutionProvider::Cuda,
            graph_state: Mutex::new(HashMap::new()),
            cuda_copy: (decoder.provider == ExecutionProvider::Cuda)
                .then(crate::cuda_copy::CudaCopy::load)
                .flatten(),
            reuse_state: opts.reuse_state
                || (opts.cuda_graph && decoder.provider == ExecutionProvider::Cuda),
            warnings,
        })
    }

    /// The execution provider the decoder runs on.
    pub fn provider(&self) -> ExecutionProvider {
        self.provider
    }

    /// Whether the bundle was exported with `--target coreml` (see `dia_graphs::Target`).
    pub fn is_coreml_target(&self) -> bool {
        self.manifest.target == "coreml"
    }

    /// Whether the bundle was exported with `--target fused` (fused attention kernels).
    pub fn is_fused_target(&self) -> bool {
        self.manifest.target == "fused"
    }

    /// Whether utterances share one decoder state (see [`ModelOptions::reuse_state`]).
    pub fn reuse_state(&self) -> bool {
        self.reuse_state
    }

    /// The text length the decoder step runs at for a text of `len` tokens: the bundle's
    /// maximum for fixed-shape steps; for fused-target bundles (dynamic text length) the
    /// smallest of 32, 64, 128, ... that holds it, since cross-attention reads every padded
    /// position each step while a few buckets keep the CUDA graphs and buffers few.
    pub fn text_bucket(&self, len: usize) -> usize {
        let max = self.manifest.max_text_len;
        if !self.is_fused_target() {
            return max;
        }
        let mut t = 32;
        while t < len {
            t *= 2;
        }
        t.min(max)
    }

    /// The CUDA runtime's copy, when the decoder runs on CUDA and the library loaded.
    pub(crate) fn cuda_copy(&self) -> Option<&crate::cuda_copy::CudaCopy> {
        self.cuda_copy.as_ref()
    }

    /// Whether the decoder step replays a captured CUDA graph.
    pub fn cuda_graph(&self) -> bool {
        self.cuda_graph
    }

    /// Warnings from loading (e.g. a requested provider that fell back to the CPU).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether the bundle can turn codes into audio (it was exported with `--dac`).
    pub fn has_codec(&self) -> bool {
        self.dac_decoder.is_some()
    }

    /// Fails with a message saying how to export the codec when the bundle has none.
    pub fn require_codec(&self, what: &str) -> Result<(), RuntimeError> {
        if self.has_codec() {
            Ok(())
        } else {
            Err(self.no_codec(what))
        }
    }

    fn no_codec(&self, what: &str) -> RuntimeError {
        RuntimeError::NoCodec {
            bundle: self.dir.clone(),
            what: what.to_string(),
        }
    }

    /// Decodes codes `[frames, C]` into a mono waveform at the codec's sample rate.
    pub fn decode_audio(&self, codes: &Frames) -> Result<Vec<f32>, RuntimeError> {
        self.require_codec("write audio")?;
        let info = self.manifest.dac.as_ref();
        match info.and_then(|d| d.decoder_chunk_frames) {
            Some(n) => {
                let ctx = info.map_or(0, |d| d.decoder_context_frames);
                self.decode_chunked(codes, n, ctx)
            }
            None => self.decode_once(codes),
        }
    }

    /// Fixed-size decoder (Core ML bundles): chunks of `n` frames that overlap by `ctx` frames
    /// on each side; each chunk contributes only frames at least `ctx` from its cut edges (the
    /// decoder's receptive field), so the result equals one decode of the whole. The first
    /// chunk starts at frame 0 and the last ends at the last frame, so utterance edges are
    /// real edges. Codes shorter than `n` are padded with code 0 and the padding's audio cut
    /// off (the last `ctx` frames then differ slightly from an unpadded decode).
    fn decode_chunked(
        &self,
        codes: &Frames,
        n: usize,
        ctx: usize,
    ) -> Result<Vec<f32>, RuntimeError> {
        let (total, c) = (codes.len(), codes.channels);
        let hop = self.manifest.dac.as_ref().map_or(512, |d| d.hop_length);
        if total == 0 {
            return Ok(Vec::new());
        }
        let window = |start: usize| -> Frames {
            let mut f = Frames::new(n, c);
            f.data.fill(0);
            let end = (start + n).min(total);
            f.data[..(end - start) * c].copy_from_slice(&codes.data[start * c..end * c]);
            f
        };
        if total <= n {
            let mut audio = self.decode_once(&window(0))?;
            audio.truncate(total * hop);
            return Ok(audio);
        }
        if n <= 2 * ctx {
            return Err(RuntimeError::InvalidOption(format!(
                "DAC chunks of {n} frames cannot hold {ctx} frames of context on both sides"
            )));
        }
        let mut out = Vec::with_capacity(total * hop);
        let mut start = 0;
        while start < total {
            let cs = if start == 0 {
                0
            } else {
                (start - ctx).min(total - n)
            };
            let audio = self.decode_once(&window(cs))?;
            let keep_end = if cs + n == total { total } else { cs + n - ctx };
            out.extend_from_slice(&audio[(start - cs) * hop..(keep_end - cs) * hop]);
            start = keep_end;
        }
        Ok(out)
    }

    /// One decoder call on all of `codes`.
    fn decode_once(&self, codes: &Frames) -> Result<Vec<f32>, RuntimeError> {
        let session = self
            .dac_decoder
            .as_ref()
            .ok_or_else(|| self.no_codec("write audio"))?;
        let (frames, c) = (codes.len(), codes.channels);
        if frames == 0 {
            return Ok(Vec::new());
        }
        // [frames, C] -> [1, C, frames]
        let mut data = vec![0i64; frames * c];
        for t in 0..frames {
            for ch in 0..c {
                data[ch * frames + t] = codes.data[t * c + ch];
            }
        }
        let input = Tensor::from_array(([1usize, c, frames], data))?;
        let mut s = session.lock().unwrap_or_else(|e| e.into_inner());
        let out = s.run(ort::inputs!["codes" => input])?;
        let audio = out
            .get("audio")
            .ok_or_else(|| RuntimeError::GraphMismatch {
                graph: "dac_decoder".into(),
                kind: "output",
                name: "audio".into(),
            })?
            .try_extract_tensor::<f32>()?
            .1
            .to_vec();
        Ok(audio)
    }

    /// Encodes a mono waveform at the codec's sample rate into codes `[frames, C]`. The audio
    /// is zero-padded on the right to a whole number of frames, as the codec's preprocessing does.
    pub fn encode_audio(&self, wave: &[f32]) -> Result<Frames, RuntimeError> {
        let session = self
            .dac_encoder
            .as_ref()
            .ok_or_else(|| self.no_codec("use a voice prompt"))?;
        let info = self
            .manifest
            .dac
            .as_ref()
            .ok_or_else(|| self.no_codec("use a voice prompt"))?;
        let hop = info.hop_length;
        let n = wave.len().div_ceil(hop).max(1) * hop;
        let mut padded = wave.to_vec();
        padded.resize(n, 0.0);
        if let Some(chunk) = info.decoder_chunk_frames {
            return self.encode_chunked(session, padded, hop, chunk, info.decoder_context_frames);
        }
        Self::encode_once(session, padded)
    }

    /// Fixed-size encoder (Core ML bundles): windows of `n` frames overlapping by `ctx` frames
    /// on each side, each contributing the frames at least `ctx` from its cut edges (as
    /// [`DiaModel::decode_audio`] does). Audio shorter than a window is zero-padded.
    fn encode_chunked(
        &self,
        session: &Mutex<Session>,
        wave: Vec<f32>,
        hop: usize,
        n: usize,
        ctx: usize,
    ) -> Result<Frames, RuntimeError> {
        let total = wave.len() / hop;
        let window = |start: usize| -> Vec<f32> {
            let mut w = vec![0f32; n * hop];
            let end = ((start + n) * hop).min(wave.len());
            w[..end - start * hop].copy_from_slice(&wave[start * hop..end]);
            w
        };
        if total <= n {
            let mut f = Self::encode_once(session, window(0))?;
            f.data.truncate(total * f.channels);
            return Ok(f);
        }
        if n <= 2 * ctx {
            return Err(RuntimeError::InvalidOption(format!(
                "DAC chunks of {n} frames cannot hold {ctx} frames of context on both sides"
            )));
        }
        let mut out: Option<Frames> = None;
        let mut start = 0;
        while start < total {
            let cs = if start == 0 {
                0
            } else {
                (start - ctx).min(total - n)
            };
            let f = Self::encode_once(session, window(cs))?;
            let keep_end = if cs + n == total { total } else { cs + n - ctx };
            let c = f.channels;
            let o = out.get_or_insert_with(|| Frames {
                channels: c,
                data: Vec::with_capacity(total * c),
            });
            o.data
                .extend_from_slice(&f.data[(start - cs) * c..(keep_end - cs) * c]);
            start = keep_end;
        }
        Ok(out.expect("at least one window"))
    }

    /// One encoder call on all of `wave` (a multiple of the hop length).
    fn encode_once(session: &Mutex<Session>, wave: Vec<f32>) -> Result<Frames, RuntimeError> {
        let n = wave.len();
        let input = Tensor::from_array(([1usize, 1, n], wave))?;
        let mut s = session.lock().unwrap_or_else(|e| e.into_inner());
        let out = s.run(ort::inputs!["audio" => input])?;
        let codes = out
            .get("codes")
            .ok_or_else(|| RuntimeError::GraphMismatch {
                graph: "dac_encoder".into(),
                kind: "output",
                name: "codes".into(),
            })?;
        let (shape, data) = codes.try_extract_tensor::<i64>()?;
        let (c, frames) = (shape[1] as usize, shape[2] as usize);
        let mut f = Frames::new(frames, c);
        for t in 0..frames {
            for ch in 0..c {
                f.data[t * c + ch] = data[ch * frames + t];
            }
        }
        Ok(f)
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

    /// The shared decoder state of CUDA-graph mode; held for a whole utterance.
    /// (One per padded text length, see [`DiaModel::text_bucket`].)
    pub(crate) fn graph_state(&self) -> MutexGuard<'_, HashMap<usize, crate::decoder::StepState>> {
        self.graph_state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn decoder_session(&self) -> MutexGuard<'_, Session> {
        self.decoder.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs the encoder on the pair's tokens and mask (`[2, len]` each, row-major); returns its
    /// outputs by name.
    pub(crate) fn run_encoder(
        &self,
        tokens: Vec<i64>,
        mask: Vec<bool>,
    ) -> Result<std::collections::HashMap<String, DynValue>, RuntimeError> {
        let len = tokens.len() / 2;
        let mut session = self.encoder.lock().unwrap_or_else(|e| e.into_inner());
        let outputs: SessionOutputs = if self.is_coreml_target() {
            // Fixed text length, int32 ids and a float mask: pad both rows to it.
            let t = self.manifest.max_text_len;
            let mut tok = vec![0i32; 2 * t];
            let mut msk = vec![0f32; 2 * t];
            for r in 0..2 {
                for i in 0..len {
                    tok[r * t + i] = tokens[r * len + i] as i32;
                    msk[r * t + i] = mask[r * len + i] as i32 as f32;
                }
            }
            let tok = Tensor::from_array(([2usize, t], tok))?;
            let msk = Tensor::from_array(([2usize, t], msk))?;
            session.run(ort::inputs!["text_tokens" => tok, "text_mask" => msk])?
        } else {
            let tok = Tensor::from_array(([2usize, len], tokens))?;
            let msk = Tensor::from_array(([2usize, len], mask))?;
            session.run(ort::inputs!["text_tokens" => tok, "text_mask" => msk])?
        };
        let mut out = std::collections::HashMap::new();
        for (name, v) in outputs {
            out.insert(name.to_string(), v);
        }
        Ok(out)
    }

    /// Encoder states `[2, len, E]` for `text` (unpadded conditional tokens), padded with 0
    /// tokens to `pad_to` first if given (as the reference pads), for parity tests.
    pub fn encoder_states(
        &self,
        text: &[i64],
        pad_to: Option<usize>,
    ) -> Result<Vec<f32>, RuntimeError> {
        let t = pad_to.unwrap_or(text.len()).max(text.len());
        let mut tok = vec![0i64; 2 * t];
        tok[t..t + text.len()].copy_from_slice(text);
        let mask: Vec<bool> = (0..2 * t).map(|i| tok[t + i % t] != 0).collect();
        let out = self.run_encoder(tok, mask)?;
        let v = out
            .get("encoder_states")
            .ok_or_else(|| RuntimeError::GraphMismatch {
                graph: "encoder".into(),
                kind: "output",
                name: "encoder_states".into(),
            })?;
        Ok(v.try_extract_tensor::<f32>()?.1.to_vec())
    }
}
