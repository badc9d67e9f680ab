//! `dia-export` as a library: a Dia checkpoint directory in, a model bundle directory out.
//!
//! The bundle is written into a temporary directory beside the destination and renamed into
//! place at the end, so a failed export leaves nothing half-written.
//!
//! With [`ExportOptions::dac`], the bundle also carries the audio codec: `dac_decoder.onnx`
//! (codes `[1, n_codebooks, frames]` int64 -> `audio` `[1, 1, samples]` float32) and
//! `dac_encoder.onnx` (`audio` -> `codes`), with `frames` and `samples` dynamic (-1 in the
//! manifest's shapes), and `manifest.dac` says the codec's rate, hop and codebooks. The DAC
//! graphs are always float32, whatever `--dtype` the Dia graphs get (the codec is small,
//! ~75 M parameters, and runs once per utterance).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use dia_bundle::manifest::hex;
use dia_bundle::{
    BundleFile, DacInfo, GraphSpec, Graphs, Manifest, Quantization, TensorSpec, FORMAT_VERSION,
    MANIFEST_FILE,
};
use dia_graphs::quant::QuantSpec;
use dia_graphs::{
    dac, decoder, encoder, Builder, Checkpoint, CheckpointError, DType, DacCheckpoint, DacError,
    DacWeights, ExternalData, Target,
};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("DAC codec (--dac): {0}")]
    Dac(#[from] DacError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Options(String),
}

/// Frames per `dac_decoder.onnx` call in `--target coreml` bundles.
pub const DAC_CHUNK_FRAMES: usize = 32;
/// Frames of context on each side of a codec chunk (the DAC decoder's receptive field).
pub use dia_bundle::DAC_CONTEXT_FRAMES;

/// Options of one export. [`Default`] gives what `dia-export CHECKPOINT --out BUNDLE` does
/// without options (float32, the fused target, the model's lengths, no codec, no quantisation),
/// with empty `checkpoint` and `out` paths to fill in:
///
/// ```
/// # use std::path::PathBuf;
/// let opts = dia_export::ExportOptions {
///     checkpoint: PathBuf::from("Dia-1.6B-0626"),
///     out: PathBuf::from("dia-bundle"),
///     ..dia_export::ExportOptions::default()
/// };
/// assert!(opts.dac.is_none() && opts.quantize.is_none());
/// ```
#[derive(Clone, Debug)]
pub struct ExportOptions {
    pub checkpoint: PathBuf,
    pub out: PathBuf,
    /// Weight and activation dtype of the graphs: float32 or float16.
    pub dtype: DType,
    /// Text length of the encoder (default: the config's, 1024 for Dia-1.6B).
    pub max_text_len: Option<usize>,
    /// Cache length of the decoder step (default: the config's, 3072 for Dia-1.6B).
    pub max_frames: Option<usize>,
    /// DAC codec directory (transformers or descript layout): when given, the bundle also gets
    /// the float32 `dac_decoder` and `dac_encoder` graphs.
    pub dac: Option<PathBuf>,
    /// Weight-only block quantisation of the encoder's and decoder's projection matrices
    /// (embeddings, norms and the logits head stay in `dtype`).
    pub quantize: Option<QuantSpec>,
    /// What the graphs are for: ONNX Runtime's CPU/CUDA providers, or Core ML.
    pub target: Target,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            checkpoint: PathBuf::new(),
            out: PathBuf::new(),
            dtype: DType::F32,
            max_text_len: None,
            max_frames: None,
            dac: None,
            quantize: None,
            target: Target::Fused,
        }
    }
}

/// What an export wrote.
#[derive(Clone, Debug)]
pub struct ExportReport {
    pub manifest: Manifest,
    /// Every file written, the manifest last.
    pub files: Vec<BundleFile>,
    pub seconds: f64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn specs(values: &[dia_graphs::Value]) -> Vec<TensorSpec> {
    values
        .iter()
        .map(|v| TensorSpec {
            name: v.name.clone(),
            dtype: v.dtype.element_type(),
            shape: v.shape.clone(),
        })
        .collect()
}

/// Builds one graph with `build`, writing `<stem>.onnx` and `<stem>.weights` into `dir`.
fn write_graph<E>(
    dir: &Path,
    stem: &str,
    doc: &str,
    files: &mut Vec<BundleFile>,
    build: impl FnOnce(&mut Builder) -> Result<(), E>,
) -> Result<GraphSpec, ExportError>
where
    ExportError: From<E>,
{
    let weights_name = format!("{stem}.weights");
    let ext = ExternalData::create(dir, &weights_name).map_err(io(&dir.join(&weights_name)))?;
    let mut b = Builder::new(stem, Some(ext));
    build(&mut b)?;
    let inputs = specs(b.inputs());
    let outputs = specs(b.outputs());
    let (model, ext) = b.finish(doc, &[]).map_err(io(&dir.join(&weights_name)))?;
    let onnx_name = format!("{stem}.onnx");
    let path = dir.join(&onnx_name);
    let bytes = dia_graphs::onnx::encode(&model);
    let mut f = fs::File::create(&path).map_err(io(&path))?;
    f.write_all(&bytes).map_err(io(&path))?;
    f.sync_all().map_err(io(&path))?;
    files.push(BundleFile {
        name: onnx_name.clone(),
        bytes: bytes.len() as u64,
        sha256: hex(&Sha256::digest(&bytes)),
    });
    if let Some(w) = ext {
        files.push(BundleFile {
            name: weights_name.clone(),
            bytes: w.bytes,
            sha256: w.sha256,
        });
    }
    Ok(GraphSpec {
        file: onnx_name,
        weights: Some(weights_name),
        inputs,
        outputs,
    })
}

/// Exports the checkpoint at `opts.checkpoint` into a bundle at `opts.out`.
pub fn export(opts: &ExportOptions) -> Result<ExportReport, ExportError> {
    let start = Instant::now();
    if opts.target == Target::CoreMl && (opts.quantize.is_some() || opts.dtype == DType::BF16) {
        return Err(ExportError::Options(
            "--target coreml takes --dtype f16 or f32 and no --quantize (Core ML has no \
             MatMulNBits or bfloat16)"
                .into(),
        ));
    }
    if !matches!(opts.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(ExportError::Options(format!(
            "--dtype {} is not supported; use f32, f16 or bf16",
            opts.dtype.name()
        )));
    }
    let ckpt = Checkpoint::open(&opts.checkpoint)?;
    let cfg = ckpt.config.clone();
    let d = &cfg.decoder_config;
    if opts.target == Target::Fused && d.cross_num_key_value_heads != d.cross_num_attention_heads {
        return Err(ExportError::Options(format!(
            "--target fused needs one cross-attention K/V head per query head (this model has \
             {} K/V heads and {} query heads); use --target portable",
            d.cross_num_key_value_heads, d.cross_num_attention_heads
        )));
    }
    tracing::info!(layout = %ckpt.layout, dir = %opts.checkpoint.display(), "checkpoint validated");
    // The codec is validated before anything is written, like the checkpoint.
    let dac_ckpt = match &opts.dac {
        Some(dir) => {
            let c = DacCheckpoint::open(dir)?;
            tracing::info!(
                layout = %c.layout,
                file = %c.weights_path().display(),
                default_config = c.default_config,
                "DAC codec validated"
            );
            let channels = cfg.decoder_config.num_channels;
            if c.config.n_codebooks != channels {
                return Err(ExportError::Options(format!(
                    "--dac {}: the codec has {} codebooks but the Dia model has {channels} audio channels",
                    dir.display(),
                    c.config.n_codebooks
                )));
            }
            Some(c)
        }
        None => None,
    };

    let cfg_text = cfg.encoder_config.max_position_embeddings;
    let cfg_frames = cfg.decoder_config.max_position_embeddings;
    let text_len = opts.max_text_len.unwrap_or(cfg_text);
    let max_frames = opts.max_frames.unwrap_or(cfg_frames);
    if text_len == 0 || text_len > cfg_text {
        return Err(ExportError::Options(format!(
            "--max-text-len {text_len} must be between 1 and the model's {cfg_text}"
        )));
    }
    let min_frames = cfg.max_delay() + 2;
    if max_frames < min_frames || max_frames > cfg_frames {
        return Err(ExportError::Options(format!(
            "--max-frames {max_frames} must be between {min_frames} and the model's {cfg_frames}"
        )));
    }

    // Refuse to replace a directory that is not a bundle: it may hold the user's files.
    if opts.out.exists() {
        let empty = fs::read_dir(&opts.out)
            .map_err(io(&opts.out))?
            .next()
            .is_none();
        if !empty && !opts.out.join(MANIFEST_FILE).is_file() {
            return Err(ExportError::Options(format!(
                "{} exists and is not a Dia bundle; choose another --out",
                opts.out.display()
            )));
        }
    }
    let parent = match opts.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(io(&parent))?;
    let name = opts
        .out
        .file_name()
        .ok_or_else(|| ExportError::Options(format!("--out {} has no name", opts.out.display())))?
        .to_string_lossy()
        .to_string();
    let tmp = parent.join(format!(".{name}.partial-{}", std::process::id()));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io(&tmp))?;

    let result = (|| {
        let mut w = dia_graphs::weights::Weights::new(&ckpt, opts.dtype);
        w.quant = opts.quantize;
        let mut files = Vec::new();
        let enc = write_graph(
            &tmp,
            "encoder",
            "Dia encoder: text tokens and mask of the CFG pair -> encoder states and cross-attention K/V of every decoder layer",
            &mut files,
            |b| encoder::build_encoder(b, &w, &cfg, text_len, opts.target),
        )?;
        tracing::info!(secs = start.elapsed().as_secs_f64(), "encoder.onnx written");
        let dec = write_graph(
            &tmp,
            "decoder_step",
            "Dia decoder, one step for the CFG pair, with an explicit self-attention KV cache",
            &mut files,
            |b| decoder::build_decoder_step(b, &w, &cfg, text_len, max_frames, opts.target),
        )?;
        tracing::info!(
            secs = start.elapsed().as_secs_f64(),
            "decoder_step.onnx written"
        );
        let (mut dac_decoder, mut dac_encoder, mut dac_info) = (None, None, None);
        // Core ML takes only static shapes, and no conv input over 16384 samples: 32 frames.
        let dac_chunk = (opts.target == Target::CoreMl).then_some(DAC_CHUNK_FRAMES);
        if let Some(dc) = &dac_ckpt {
            let dw = DacWeights::new(dc);
            let dcfg = &dc.config;
            dac_decoder = Some(write_graph(
                &tmp,
                "dac_decoder",
                "DAC decoder: codes [1, n_codebooks, frames] -> waveform [1, 1, frames * hop_length]",
                &mut files,
                |b| dac::build_dac_decoder(b, &dw, dcfg, dac_chunk),
            )?);
            dac_encoder = Some(write_graph(
                &tmp,
                "dac_encoder",
                "DAC encoder: waveform [1, 1, samples] (zero-padded on the right to a multiple of hop_length) -> codes [1, n_codebooks, samples / hop_length]",
                &mut files,
                |b| dac::build_dac_encoder(b, &dw, dcfg, dac_chunk),
            )?);
            dac_info = Some(DacInfo {
                sample_rate: dcfg.sampling_rate,
                hop_length: dcfg.hop_length,
                n_codebooks: dcfg.n_codebooks,
                codebook_size: dcfg.codebook_size,
                source_layout: dc.layout.name().to_string(),
                decoder_chunk_frames: dac_chunk,
                decoder_context_frames: if dac_chunk.is_some() {
                    DAC_CONTEXT_FRAMES
                } else {
                    0
                },
            });
            tracing::info!(
                secs = start.elapsed().as_secs_f64(),
                "dac_decoder.onnx and dac_encoder.onnx written"
            );
        }
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            producer: format!("dia-export {}", env!("CARGO_PKG_VERSION")),
            config: cfg.clone(),
            dtype: opts.dtype.bundle_dtype().ok_or_else(|| {
                ExportError::Options(format!("--dtype {} is not a float type", opts.dtype.name()))
            })?,
            max_text_len: text_len,
            max_frames,
            source_layout: ckpt.layout.name().to_string(),
            graphs: Graphs {
                encoder: enc,
                decoder_step: dec,
                dac_decoder,
                dac_encoder,
            },
            dac: dac_info,
            target: opts.target,
            quantization: opts.quantize.map(|q| Quantization {
                scheme: q.name(),
                bits: q.bits,
                block_size: q.block,
                accuracy_level: q.accuracy_level,
                applies_to: "encoder and decoder projections (q/k/v/o, cross q/k/v/o, MLP); \
                             embeddings, norms and the logits head are not quantised"
                    .into(),
            }),
            files: files.clone(),
        };
        // What the runtime checks at load, checked before anything is swapped into place.
        manifest.check_graph_specs().map_err(|e| {
            ExportError::Options(format!(
                "internal: the exported graphs disagree with the manifest: {e}"
            ))
        })?;
        let path = tmp.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(&manifest).expect("manifest serialises");
        fs::write(&path, text.as_bytes()).map_err(io(&path))?;
        files.push(BundleFile {
            name: MANIFEST_FILE.to_string(),
            bytes: text.len() as u64,
            sha256: hex(&Sha256::digest(text.as_bytes())),
        });
        Ok::<_, ExportError>((manifest, files))
    })();

    let (manifest, files) = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    // Swap the finished bundle into place; an older bundle there is replaced only now.
    if opts.out.exists() {
        let old = parent.join(format!(".{name}.old-{}", std::process::id()));
        fs::rename(&opts.out, &old).map_err(io(&opts.out))?;
        fs::rename(&tmp, &opts.out).map_err(io(&opts.out))?;
        let _ = fs::remove_dir_all(&old);
    } else {
        fs::rename(&tmp, &opts.out).map_err(io(&opts.out))?;
    }
    Ok(ExportReport {
        manifest,
        files,
        seconds: start.elapsed().as_secs_f64(),
    })
}
