//! `manifest.json`: what a bundle holds and everything a runtime needs to drive its graphs.
//!
//! Reading a manifest checks, cheaply and before any graph is opened: the format version, the
//! target and dtype, that the config's numbers agree with the graphs' inputs and outputs the
//! manifest lists ([`Manifest::check_graph_specs`]), and that every file is there with the size
//! the exporter recorded ([`Manifest::check_files`]). Hashes are checked on request
//! ([`Manifest::verify_hashes`], `dia-export check --verify`): reading gigabytes is not cheap.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::layout::{CacheUpdate, CrossMask, PositionInput, StepLayout, TextLength, TokenIds};
use crate::names;
use crate::{
    BundleError, DiaConfig, Dtype, ElementType, Target, FORMAT_VERSION, MANIFEST_FILE,
    MIN_FORMAT_VERSION,
};

/// One graph input or output. A dim of -1 is dynamic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    pub dtype: ElementType,
    pub shape: Vec<i64>,
}

impl TensorSpec {
    pub fn new(name: impl Into<String>, dtype: ElementType, shape: &[i64]) -> Self {
        Self {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    /// Whether `self` (what the graph says) fits `want` (what the config implies); -1 on
    /// either side matches any length.
    pub fn fits(&self, want: &TensorSpec) -> bool {
        self.dtype == want.dtype && dims_fit(&self.shape, &want.shape)
    }
}

/// Whether two shapes agree, a negative dim (dynamic) on either side matching any length.
pub fn dims_fit(a: &[i64], b: &[i64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| x == y || x < 0 || y < 0)
}

/// One ONNX file of the bundle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GraphSpec {
    pub file: String,
    /// External-data file holding the graph's weights (beside the .onnx).
    pub weights: Option<String>,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
}

impl GraphSpec {
    pub fn input(&self, name: &str) -> Option<&TensorSpec> {
        self.inputs.iter().find(|t| t.name == name)
    }
    pub fn output(&self, name: &str) -> Option<&TensorSpec> {
        self.outputs.iter().find(|t| t.name == name)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Graphs {
    pub encoder: GraphSpec,
    pub decoder_step: GraphSpec,
    /// DAC codes `[1, n_codebooks, frames]` -> waveform `[1, 1, samples]` (`dia-export --dac`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dac_decoder: Option<GraphSpec>,
    /// Waveform `[1, 1, samples]` at the DAC's rate -> codes `[1, n_codebooks, frames]`, for
    /// voice prompts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dac_encoder: Option<GraphSpec>,
}

impl Graphs {
    /// Every graph with its role's name.
    pub fn all(&self) -> Vec<(&'static str, &GraphSpec)> {
        let mut v = vec![
            ("encoder", &self.encoder),
            ("decoder_step", &self.decoder_step),
        ];
        if let Some(g) = &self.dac_decoder {
            v.push(("dac_decoder", g));
        }
        if let Some(g) = &self.dac_encoder {
            v.push(("dac_encoder", g));
        }
        v
    }
}

/// The audio codec the bundle decodes with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DacInfo {
    pub sample_rate: u32,
    /// Waveform samples per code frame (512 for the 44.1 kHz DAC).
    pub hop_length: usize,
    pub n_codebooks: usize,
    pub codebook_size: usize,
    /// Checkpoint layout the codec was exported from (`transformers` or `descript`).
    pub source_layout: String,
    /// When set, `dac_decoder.onnx` and `dac_encoder.onnx` take exactly this many frames
    /// (static shapes, for Core ML) and the runtime decodes (encodes) longer input in chunks
    /// that overlap by `decoder_context_frames` on each side (the receptive field), so the
    /// result is the same as one call on the whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decoder_chunk_frames: Option<usize>,
    #[serde(default)]
    pub decoder_context_frames: usize,
}

/// A file of the bundle as the exporter wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleFile {
    pub name: String,
    pub bytes: u64,
    /// Lowercase hex SHA-256 of the file's bytes.
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub producer: String,
    pub config: DiaConfig,
    /// Weight and activation dtype of the graphs (norms, RoPE, softmax and logits are float32).
    pub dtype: Dtype,
    /// Text length the encoder was exported for.
    pub max_text_len: usize,
    /// Self-attention cache length of the decoder step (most frames one generation can have).
    pub max_frames: usize,
    /// Checkpoint layout the bundle was exported from (`nari` or `transformers`).
    pub source_layout: String,
    pub graphs: Graphs,
    /// Present when the bundle carries the DAC graphs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dac: Option<DacInfo>,
    /// What the graphs are built for (absent in the oldest bundles: portable).
    #[serde(default = "portable")]
    pub target: Target,
    /// Present when projection weights are block-quantised (`dia-export --quantize`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Quantization>,
    /// Size and SHA-256 of every file but the manifest (absent in bundles written before they
    /// were recorded; then only presence is checked).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<BundleFile>,
}

fn portable() -> Target {
    Target::Portable
}

/// Weight-only quantisation of a bundle (ONNX Runtime `MatMulNBits`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quantization {
    /// `int8` or `int4`.
    pub scheme: String,
    pub bits: usize,
    pub block_size: usize,
    pub accuracy_level: i64,
    pub applies_to: String,
}

/// The largest manifest we read: real ones are a few tens of KB.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

impl Manifest {
    /// Reads `manifest.json` from a bundle directory and checks it against itself: format
    /// version, target, dtype, config, and the graphs' inputs and outputs against the config.
    /// Files are checked by [`Manifest::check_files`].
    pub fn load(dir: &Path) -> Result<Self, BundleError> {
        let path = dir.join(MANIFEST_FILE);
        let p = path.display().to_string();
        let io = |source| BundleError::Io {
            path: p.clone(),
            source,
        };
        let len = std::fs::metadata(&path).map_err(io)?.len();
        if len > MAX_MANIFEST_BYTES {
            return Err(BundleError::Invalid {
                path: p,
                msg: format!("{len} bytes is far too large for a bundle manifest"),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(io)?;
        Self::from_json_str(&text, &p)
    }

    /// Parses and checks a manifest's text (`path` names it in errors).
    pub fn from_json_str(text: &str, path: &str) -> Result<Self, BundleError> {
        let invalid = |msg: String| BundleError::Invalid {
            path: path.to_string(),
            msg,
        };
        let raw: serde_json::Value = serde_json::from_str(text).map_err(|e| BundleError::Json {
            path: path.to_string(),
            source: e,
        })?;
        let version = raw.get("format_version").and_then(|v| v.as_u64());
        if !version
            .is_some_and(|v| (MIN_FORMAT_VERSION as u64..=FORMAT_VERSION as u64).contains(&v))
        {
            return Err(invalid(format!(
                "bundle format version {} but this dia-run reads versions \
                 {MIN_FORMAT_VERSION} to {FORMAT_VERSION}: re-export the bundle with a \
                 matching dia-export",
                version.map_or("missing".to_string(), |v| v.to_string())
            )));
        }
        // Checked before the whole parse, for a message that says what to do.
        if let Some(t) = raw.get("target").and_then(|t| t.as_str()) {
            if let Err(e) = t.parse::<Target>() {
                return Err(invalid(format!(
                    "bundle {e}: re-export the bundle with a matching dia-export"
                )));
            }
        }
        // Errors name the key (`graphs.encoder.inputs[0].dtype: unknown variant ...`).
        let m: Self = serde_path_to_error::deserialize(raw).map_err(|e| {
            let at = e.path().to_string();
            invalid(format!("`{at}`: {}", e.into_inner()))
        })?;
        m.config
            .validate()
            .map_err(|e| invalid(format!("config: {e}")))?;
        if m.max_text_len == 0 || m.max_frames <= m.config.max_delay() + 1 {
            return Err(invalid(format!(
                "max_text_len {} and max_frames {} leave no room to generate",
                m.max_text_len, m.max_frames
            )));
        }
        m.check_graph_specs().map_err(invalid)?;
        Ok(m)
    }

    /// The step and encoder contract of this bundle.
    pub fn layout(&self) -> StepLayout {
        StepLayout::of(self)
    }

    /// Whether the decoder step takes any number of CFG pairs at once (a dynamic batch: fused
    /// bundles from format 4 on), so utterances can be decoded in one batch.
    pub fn step_batches(&self) -> bool {
        self.graphs
            .decoder_step
            .input(names::step::TOKENS)
            .is_some_and(|t| t.shape.first().is_some_and(|&d| d < 0))
            && self.layout().position == PositionInput::I32PerRow
    }

    /// The decoder step's inputs as the config, target and dtype imply them.
    pub fn expected_step_inputs(&self) -> Vec<TensorSpec> {
        use ElementType::*;
        let l = self.layout();
        let d = &self.config.decoder_config;
        let (c, f) = (d.num_channels as i64, self.max_frames as i64);
        let (kv, hd) = (d.num_key_value_heads, d.head_dim);
        let (ckv, chd) = (d.cross_num_key_value_heads, d.cross_head_dim);
        let t = match l.text {
            TextLength::Fixed(t) => t as i64,
            TextLength::Bucketed { .. } => -1,
        };
        let dt = self.dtype.element_type();
        let ids = match l.tokens {
            TokenIds::I64 => Int64,
            TokenIds::I32ChannelOffset => Int32,
        };
        // Rows: the CFG pair; per-row positions (fused) let a step take many pairs, and
        // bundles of that target since format 4 say so with a dynamic batch (-1 fits both).
        let b = match l.position {
            PositionInput::I32PerRow => -1,
            _ => 2,
        };
        let mut v = vec![TensorSpec::new(names::step::TOKENS, ids, &[b, c])];
        v.push(match l.position {
            PositionInput::I64 => TensorSpec::new(names::step::STEP, Int64, &[1]),
            PositionInput::I32 => TensorSpec::new(names::step::STEP, Int32, &[1]),
            PositionInput::I32PerRow => TensorSpec::new(names::step::STEP, Int32, &[b]),
        });
        v.push(match l.cross_mask {
            CrossMask::Bool => TensorSpec::new(names::step::CROSS_MASK, Bool, &[b, t]),
            CrossMask::BiasF32 => TensorSpec::new(names::step::CROSS_BIAS, Float32, &[b, t]),
            CrossMask::Bias4d(d) => {
                TensorSpec::new(names::step::CROSS_BIAS, d.element_type(), &[b, 1, 1, t])
            }
        });
        if l.cache_update == CacheUpdate::ReturnedRows {
            v.push(TensorSpec::new(names::step::SELF_BIAS, Float32, &[f]));
        }
        let (kv, hd, ckv, chd) = (kv as i64, hd as i64, ckv as i64, chd as i64);
        for i in 0..d.num_hidden_layers {
            v.push(TensorSpec::new(
                names::step::self_k(i),
                dt,
                &l.k_shape(b, kv, hd, f),
            ));
            v.push(TensorSpec::new(names::step::self_v(i), dt, &[b, kv, f, hd]));
            v.push(TensorSpec::new(
                names::step::cross_k(i),
                dt,
                &l.k_shape(b, ckv, chd, t),
            ));
            v.push(TensorSpec::new(
                names::step::cross_v(i),
                dt,
                &[b, ckv, t, chd],
            ));
        }
        v
    }

    /// Checks that the graphs the manifest lists take and give what its config says: a
    /// manifest edited by hand, or paired with another bundle's graphs, fails here, naming the
    /// tensor and both shapes, instead of at the first step.
    pub fn check_graph_specs(&self) -> Result<(), String> {
        let step = &self.graphs.decoder_step;
        // Counted first, so a config claiming a million layers costs nothing to refuse.
        let layers = self.config.decoder_config.num_hidden_layers;
        let graph_layers = (0..)
            .take_while(|&i| step.input(&names::step::self_k(i)).is_some())
            .count();
        if graph_layers != layers {
            return Err(format!(
                "the config has {layers} decoder layers but {} has the caches of {graph_layers}: \
                 the manifest and the graphs disagree; re-export the bundle",
                step.file
            ));
        }
        let expected = self.expected_step_inputs();
        for want in &expected {
            match step.input(&want.name) {
                None => {
                    return Err(format!(
                        "{} has no input `{}` although the config implies it ({} decoder \
                         layers, target {}): the manifest and the graphs disagree; re-export \
                         the bundle",
                        step.file,
                        want.name,
                        self.config.decoder_config.num_hidden_layers,
                        self.target
                    ))
                }
                Some(got) if !got.fits(want) => {
                    return Err(format!(
                        "{} input `{}` is {} {:?} but the config implies {} {:?}: the \
                         manifest and the graphs disagree; re-export the bundle",
                        step.file, want.name, got.dtype, got.shape, want.dtype, want.shape
                    ))
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = step
            .inputs
            .iter()
            .find(|i| !expected.iter().any(|e| e.name == i.name))
        {
            return Err(format!(
                "{} has an input `{}` that the config does not imply ({} decoder layers): \
                 the manifest and the graphs disagree; re-export the bundle",
                step.file, extra.name, self.config.decoder_config.num_hidden_layers
            ));
        }
        let d = &self.config.decoder_config;
        let logits = TensorSpec::new(
            names::step::LOGITS,
            ElementType::Float32,
            &[2, d.num_channels as i64, d.vocab_size as i64],
        );
        match step.output(names::step::LOGITS) {
            Some(got) if got.fits(&logits) => {}
            Some(got) => {
                return Err(format!(
                    "{} output `logits` is {} {:?} but the config implies {} {:?}: the \
                     manifest and the graphs disagree; re-export the bundle",
                    step.file, got.dtype, got.shape, logits.dtype, logits.shape
                ))
            }
            None => return Err(format!("{} has no output `logits`", step.file)),
        }
        let enc = &self.graphs.encoder;
        for i in 0..d.num_hidden_layers {
            for name in [names::encoder::cross_k(i), names::encoder::cross_v(i)] {
                if enc.output(&name).is_none() {
                    return Err(format!(
                        "{} has no output `{name}` although the config has {} decoder layers: \
                         the manifest and the graphs disagree; re-export the bundle",
                        enc.file, d.num_hidden_layers
                    ));
                }
            }
        }
        if let Some(dac) = &self.dac {
            if dac.n_codebooks != d.num_channels {
                return Err(format!(
                    "the codec has {} codebooks but the decoder {} channels",
                    dac.n_codebooks, d.num_channels
                ));
            }
            if dac.hop_length == 0 || dac.sample_rate == 0 {
                return Err("the codec's hop length and sample rate must be positive".into());
            }
        }
        Ok(())
    }

    /// Checks that every graph and weights file is in `dir`, with the size the exporter
    /// recorded (when it did): cheap, and it catches a truncated download before ONNX Runtime
    /// reports it as a deserialisation error.
    pub fn check_files(&self, dir: &Path) -> Result<(), BundleError> {
        let recorded: HashMap<&str, &BundleFile> =
            self.files.iter().map(|f| (f.name.as_str(), f)).collect();
        for (role, g) in self.graphs.all() {
            for name in std::iter::once(&g.file).chain(g.weights.iter()) {
                let path = dir.join(name);
                let p = path.display().to_string();
                let meta = std::fs::metadata(&path).map_err(|e| BundleError::Damaged {
                    path: p.clone(),
                    msg: if e.kind() == std::io::ErrorKind::NotFound {
                        format!("missing (a file of the {role} graph)")
                    } else {
                        format!("a file of the {role} graph cannot be read ({e})")
                    },
                })?;
                if let Some(f) = recorded.get(name.as_str()) {
                    if meta.len() != f.bytes {
                        return Err(BundleError::Damaged {
                            path: p,
                            msg: format!(
                                "{} bytes but the manifest records {}",
                                meta.len(),
                                f.bytes
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads every recorded file and compares its SHA-256 with the manifest's; returns how
    /// many files were checked. Bundles without recorded hashes are an error: nothing could
    /// be verified.
    pub fn verify_hashes(&self, dir: &Path) -> Result<usize, BundleError> {
        if self.files.is_empty() {
            return Err(BundleError::Invalid {
                path: dir.join(MANIFEST_FILE).display().to_string(),
                msg: "this bundle records no file hashes (exported before they were \
                      recorded): re-export it to be able to verify it"
                    .into(),
            });
        }
        self.check_files(dir)?;
        for f in &self.files {
            let path = dir.join(&f.name);
            let got = sha256_file(&path)?;
            if got != f.sha256 {
                return Err(BundleError::Damaged {
                    path: path.display().to_string(),
                    msg: format!("SHA-256 {got} but the manifest records {}", f.sha256),
                });
            }
        }
        Ok(self.files.len())
    }
}

/// Lowercase hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, BundleError> {
    let io = |source| BundleError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Lowercase hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
