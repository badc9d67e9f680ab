//! The Descript Audio Codec (DAC, 44.1 kHz) as two ONNX graphs: `dac_decoder.onnx` (codes ->
//! waveform, to hear what Dia generates) and `dac_encoder.onnx` (waveform -> codes, for voice
//! prompts). The reference is `transformers`' `DacModel` (`models/dac/modeling_dac.py`); every
//! block below mirrors one of its modules and is named after it.
//!
//! # Graphs
//!
//! - decoder: `codes` int64 `[1, n_codebooks, frames]` -> `audio` float32 `[1, 1, samples]`,
//!   `samples = frames · hop_length` (512), as `DacModel.decode(audio_codes=codes)` (which
//!   returns `[1, samples]`: it squeezes the channel). Codes must lie in `0..codebook_size`.
//! - encoder: `audio` float32 `[1, 1, samples]` -> `codes` int64 `[1, n_codebooks, frames]`,
//!   as `DacModel.encode(audio).audio_codes`. The graph pads nothing: like `DacModel.encode`,
//!   it runs the convolutions on what it gets, and `frames = samples / hop_length` exactly when
//!   `samples` is a multiple of `hop_length` (otherwise the strided convolutions floor). The
//!   reference pipeline (`DacFeatureExtractor`) right-pads the waveform with zeros to the next
//!   multiple of `hop_length` (`pad_to_multiple_of=hop_length`, padding value 0.0): callers do
//!   the same before running the graph.
//!
//! `frames` and `samples` are dynamic dims (ONNX `dim_param`s; -1 in the manifest).
//!
//! # Checkpoints
//!
//! A directory with `model.safetensors` (or a single other `*.safetensors` file) and, optionally,
//! `config.json` (without one, the 44.1 kHz codec's hyper-parameters are assumed). Two layouts:
//!
//! - **transformers**: what `DacModel.save_pretrained` writes (the Hub's `descript/dac_44khz`):
//!   `decoder.block.0.conv_t1.weight`, `quantizer.quantizers.3.codebook.weight`, ...
//! - **descript**: the state dict of descript-audio-codec's `dac.DAC` (its `weights.pth`, which
//!   is a pickle, converted to safetensors by the user): `decoder.model.1.block.1.weight_v`, ...
//!   [`descript_module`] maps module paths, once; it is the inverse of `transformers`'
//!   `convert_dac_checkpoint.py`.
//!
//! The config may use transformers' keys (`encoder_hidden_size`, `downsampling_ratios`, ...) or
//! descript's (`encoder_dim`, `encoder_rates`, ..., the `metadata.kwargs` of `weights.pth`).
//! A descript `weights.pth` becomes such a directory with:
//!
//! ```text
//! python -c "import torch, json; from safetensors.torch import save_file
//! d = torch.load('weights.pth', map_location='cpu', weights_only=True)
//! save_file({k: v.contiguous() for k, v in d['state_dict'].items()}, 'model.safetensors')
//! json.dump(d['metadata']['kwargs'], open('config.json', 'w'))"
//! ```
//!
//! Weight norm is folded at export, whatever form the file stores: a plain `weight`; descript's
//! `weight_g` / `weight_v`; or torch parametrizations (`parametrizations.weight.original0` = g,
//! `original1` = v, what `save_pretrained` writes for a model with weight norm applied). Then
//! `w = g · v / ‖v‖`, the norm over all dims but dim 0 (for the transposed convolutions, whose
//! weight is `[in, out, k]`, dim 0 is the input channel, as torch's `weight_norm(dim=0)` does).
//! The DAC graphs are always float32.

use std::path::{Path, PathBuf};

use dia_bundle::names::dac as names;
use serde::{Deserialize, Serialize};

use crate::builder::{Builder, Conv1d, DType, Value, DYN};
use crate::safetensors_files::{Expected, TensorFiles, WeightsError};
use crate::tensor::{encode_f32, Tensor};

/// Dilations of the three residual units of every block.
const DILATIONS: [i64; 3] = [1, 3, 9];
/// `F.normalize`'s default eps.
const NORMALIZE_EPS: f32 = 1e-12;

// ---------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------

/// DAC hyper-parameters (transformers' `DacConfig` names).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DacConfig {
    /// Channels after the encoder's first conv (64); doubled by every encoder block.
    pub encoder_hidden_size: usize,
    /// Encoder strides (2, 4, 8, 8).
    pub downsampling_ratios: Vec<usize>,
    /// Channels after the decoder's first conv (1536); halved by every decoder block.
    pub decoder_hidden_size: usize,
    /// Decoder strides (8, 8, 4, 2).
    pub upsampling_ratios: Vec<usize>,
    /// Latent channels between encoder, quantizer and decoder (1024).
    pub hidden_size: usize,
    pub n_codebooks: usize,
    pub codebook_size: usize,
    pub codebook_dim: usize,
    pub sampling_rate: u32,
    /// Samples per code frame: the product of the strides (512).
    pub hop_length: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum DacError {
    #[error("{0}: no DAC weights: expected model.safetensors (transformers' DacModel.save_pretrained, e.g. the Hub's descript/dac_44khz) or one .safetensors file in descript's layout")]
    MissingWeights(PathBuf),
    #[error("{dir}: {count} .safetensors files and no model.safetensors: cannot tell which holds the DAC; keep one or name it model.safetensors")]
    AmbiguousWeights { dir: PathBuf, count: usize },
    #[error("{path}: {msg}")]
    Config { path: String, msg: String },
    /// The files, or a tensor in them (shared with the Dia reader).
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{file}: not a DAC checkpoint: neither the transformers layout (`decoder.conv1.*`) nor descript's (`decoder.model.0.*`) was found")]
    UnknownLayout { file: PathBuf },
}

impl DacConfig {
    /// The 44.1 kHz codec Dia uses (`descript/dac_44khz`).
    pub fn dac_44khz() -> Self {
        Self {
            encoder_hidden_size: 64,
            downsampling_ratios: vec![2, 4, 8, 8],
            decoder_hidden_size: 1536,
            upsampling_ratios: vec![8, 8, 4, 2],
            hidden_size: 1024,
            n_codebooks: 9,
            codebook_size: 1024,
            codebook_dim: 8,
            sampling_rate: 44100,
            hop_length: 512,
        }
    }

    /// Parses a DAC config.json with transformers' keys or descript's (`encoder_dim`,
    /// `encoder_rates`, `decoder_dim`, `decoder_rates`, `latent_dim`, `sample_rate`). Keys left
    /// out take the 44.1 kHz codec's values, except those derived from others (upsampling ratios
    /// reverse the downsampling ones, the latent is `encoder_hidden_size · 2^blocks`, the hop the
    /// product of the ratios), as `DacConfig` derives them.
    pub fn from_json_str(text: &str, path: &str) -> Result<Self, DacError> {
        let invalid = |msg: String| DacError::Config {
            path: path.to_string(),
            msg,
        };
        let root: serde_json::Value =
            serde_json::from_str(text).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
        if !root.is_object() {
            return Err(invalid("not a JSON object".into()));
        }
        if let Some(t) = root.get("model_type").and_then(|v| v.as_str()) {
            if t != "dac" {
                return Err(invalid(format!(
                    "model_type is `{t}`, not `dac`: is this the DAC's directory?"
                )));
            }
        }
        fn get<'a>(
            root: &'a serde_json::Value,
            keys: &[&'static str],
        ) -> Option<(&'static str, &'a serde_json::Value)> {
            keys.iter()
                .find_map(|k| root.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
        }
        let uint = |keys: &[&'static str]| -> Result<Option<usize>, DacError> {
            match get(&root, keys) {
                None => Ok(None),
                Some((k, v)) => v
                    .as_u64()
                    .filter(|&x| x > 0)
                    .map(|x| Some(x as usize))
                    .ok_or_else(|| invalid(format!("`{k}` must be a positive integer"))),
            }
        };
        let list = |keys: &[&'static str]| -> Result<Option<Vec<usize>>, DacError> {
            match get(&root, keys) {
                None => Ok(None),
                Some((k, v)) => v
                    .as_array()
                    .and_then(|a| {
                        a.iter()
                            .map(|x| x.as_u64().filter(|&x| x > 0).map(|x| x as usize))
                            .collect::<Option<Vec<_>>>()
                    })
                    .filter(|a| !a.is_empty())
                    .map(Some)
                    .ok_or_else(|| invalid(format!("`{k}` must be a list of positive integers"))),
            }
        };
        let d = Self::dac_44khz();
        let encoder_hidden_size =
            uint(&["encoder_hidden_size", "encoder_dim"])?.unwrap_or(d.encoder_hidden_size);
        let downsampling_ratios =
            list(&["downsampling_ratios", "encoder_rates"])?.unwrap_or(d.downsampling_ratios);
        let upsampling_ratios = list(&["upsampling_ratios", "decoder_rates"])?
            .unwrap_or_else(|| downsampling_ratios.iter().rev().cloned().collect());
        let hidden_size = match uint(&["hidden_size", "latent_dim"])? {
            Some(h) => h,
            None => doubled(encoder_hidden_size, downsampling_ratios.len()).ok_or_else(|| {
                invalid(format!(
                    "encoder_hidden_size {encoder_hidden_size} doubled by {} encoder blocks \
                     overflows",
                    downsampling_ratios.len()
                ))
            })?,
        };
        let hop_length = match uint(&["hop_length"])? {
            Some(h) => h,
            None => product(&downsampling_ratios).ok_or_else(|| {
                invalid(format!(
                    "the product of the downsampling ratios {downsampling_ratios:?} overflows"
                ))
            })?,
        };
        let cfg = DacConfig {
            encoder_hidden_size,
            downsampling_ratios,
            decoder_hidden_size: uint(&["decoder_hidden_size", "decoder_dim"])?
                .unwrap_or(d.decoder_hidden_size),
            upsampling_ratios,
            hidden_size,
            n_codebooks: uint(&["n_codebooks"])?.unwrap_or(d.n_codebooks),
            codebook_size: uint(&["codebook_size"])?.unwrap_or(d.codebook_size),
            codebook_dim: uint(&["codebook_dim"])?.unwrap_or(d.codebook_dim),
            sampling_rate: match uint(&["sampling_rate", "sample_rate"])? {
                Some(r) => u32::try_from(r)
                    .map_err(|_| invalid(format!("sampling_rate {r} Hz is out of range")))?,
                None => d.sampling_rate,
            },
            hop_length,
        };
        cfg.validate().map_err(invalid)?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Self, DacError> {
        let text = std::fs::read_to_string(path).map_err(|e| DacError::Config {
            path: path.display().to_string(),
            msg: format!("cannot read: {e}"),
        })?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// Checks the relations the graphs rely on (and that the channel counts they derive,
    /// doubled or halved once per block, and the ratios' products fit in a `usize`).
    pub fn validate(&self) -> Result<(), String> {
        let down = product(&self.downsampling_ratios);
        let up = product(&self.upsampling_ratios);
        if down != Some(self.hop_length) || up != Some(self.hop_length) {
            return Err(format!(
                "hop_length {} must be the product of the downsampling ratios {:?} and of the \
                 upsampling ratios {:?}",
                self.hop_length, self.downsampling_ratios, self.upsampling_ratios
            ));
        }
        if doubled(self.encoder_hidden_size, self.downsampling_ratios.len()).is_none() {
            return Err(format!(
                "encoder_hidden_size {} doubled by {} encoder blocks overflows",
                self.encoder_hidden_size,
                self.downsampling_ratios.len()
            ));
        }
        let n = self.upsampling_ratios.len();
        if !doubled(1, n).is_some_and(|d| self.decoder_hidden_size.is_multiple_of(d)) {
            return Err(format!(
                "decoder_hidden_size {} must be divisible by 2^{n} (one halving per decoder block)",
                self.decoder_hidden_size
            ));
        }
        if self.n_codebooks == 0 || self.codebook_size == 0 {
            return Err("n_codebooks and codebook_size must be positive".into());
        }
        Ok(())
    }

    /// Channels at the end of the encoder (`encoder_hidden_size · 2^blocks`).
    pub fn encoder_out_channels(&self) -> usize {
        self.encoder_hidden_size << self.downsampling_ratios.len()
    }

    /// Channels at the end of the decoder (`decoder_hidden_size / 2^blocks`).
    pub fn decoder_out_channels(&self) -> usize {
        self.decoder_hidden_size >> self.upsampling_ratios.len()
    }
}

/// `x · 2^n`, or `None` when it overflows.
fn doubled(x: usize, n: usize) -> Option<usize> {
    1usize
        .checked_shl(u32::try_from(n).ok()?)
        .and_then(|p| x.checked_mul(p))
}

/// The product of `xs`, or `None` when it overflows.
fn product(xs: &[usize]) -> Option<usize> {
    xs.iter().try_fold(1usize, |a, &b| a.checked_mul(b))
}

// ---------------------------------------------------------------------------------------------
// Layouts and names
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DacLayout {
    Transformers,
    Descript,
}

impl DacLayout {
    pub fn name(self) -> &'static str {
        match self {
            DacLayout::Transformers => "transformers",
            DacLayout::Descript => "descript",
        }
    }
}

impl std::fmt::Display for DacLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The module path in descript's `dac.DAC` of a module of transformers' `DacModel`
/// (`decoder.block.0.res_unit2.conv1` -> `decoder.model.1.block.3.block.1`); `None` for a path
/// that is not a DAC module. Descript nests `nn.Sequential`s: the encoder is
/// `block.[conv, EncoderBlock×4, Snake, conv]`, an encoder block `block.[ResidualUnit×3, Snake,
/// conv]`, the decoder `model.[conv, DecoderBlock×4, Snake, conv, Tanh]`, a decoder block
/// `block.[Snake, convT, ResidualUnit×3]` and a residual unit `block.[Snake, conv, Snake, conv]`.
pub fn descript_module(hf: &str) -> Option<String> {
    let p: Vec<&str> = hf.split('.').collect();
    let unit = |part: &str| -> Option<usize> {
        match part {
            "snake1" => Some(0),
            "conv1" => Some(1),
            "snake2" => Some(2),
            "conv2" => Some(3),
            _ => None,
        }
    };
    let res_unit = |part: &str| -> Option<usize> {
        part.strip_prefix("res_unit")?
            .parse::<usize>()
            .ok()
            .filter(|&r| (1..=3).contains(&r))
    };
    match p.as_slice() {
        ["quantizer", "quantizers", i, leaf @ ("in_proj" | "out_proj" | "codebook")] => {
            Some(format!("quantizer.quantizers.{i}.{leaf}"))
        }
        ["encoder", "conv1"] => Some("encoder.block.0".into()),
        ["decoder", "conv1"] => Some("decoder.model.0".into()),
        [side @ ("encoder" | "decoder"), top @ ("snake1" | "conv2")] => {
            let seq = if *side == "encoder" { "block" } else { "model" };
            // After the conv and the blocks: Snake, then conv (the index depends on the block
            // count, 4 in every released model).
            let base = 5 + usize::from(*top == "conv2");
            Some(format!("{side}.{seq}.{base}"))
        }
        ["encoder", "block", b, rest @ ..] => {
            let b = b.parse::<usize>().ok()? + 1;
            match rest {
                [r, part] => Some(format!(
                    "encoder.block.{b}.block.{}.block.{}",
                    res_unit(r)? - 1,
                    unit(part)?
                )),
                ["snake1"] => Some(format!("encoder.block.{b}.block.3")),
                ["conv1"] => Some(format!("encoder.block.{b}.block.4")),
                _ => None,
            }
        }
        ["decoder", "block", b, rest @ ..] => {
            let b = b.parse::<usize>().ok()? + 1;
            match rest {
                [r, part] => Some(format!(
                    "decoder.model.{b}.block.{}.block.{}",
                    res_unit(r)? + 1,
                    unit(part)?
                )),
                ["snake1"] => Some(format!("decoder.model.{b}.block.0")),
                ["conv_t1"] => Some(format!("decoder.model.{b}.block.1")),
                _ => None,
            }
        }
        _ => None,
    }
}

/// What a parameter is; conv weights may be stored weight-normed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    ConvWeight,
    Bias,
    Alpha,
    Codebook,
}

fn kind_of(hf_param: &str) -> Kind {
    if hf_param.ends_with(".alpha") {
        Kind::Alpha
    } else if hf_param.ends_with(".bias") {
        Kind::Bias
    } else if hf_param.ends_with(".codebook.weight") {
        Kind::Codebook
    } else {
        Kind::ConvWeight
    }
}

/// Convs (name, weight shape, bias length) and Snakes (name, channels) of a module.
type Convs = Vec<(String, [usize; 3], usize)>;
type Snakes = Vec<(String, usize)>;

fn res_unit_params(prefix: &str, dim: usize, convs: &mut Convs, alphas: &mut Snakes) {
    for r in 1..=3 {
        let p = format!("{prefix}.res_unit{r}");
        alphas.push((format!("{p}.snake1"), dim));
        convs.push((format!("{p}.conv1"), [dim, dim, 7], dim));
        alphas.push((format!("{p}.snake2"), dim));
        convs.push((format!("{p}.conv2"), [dim, dim, 1], dim));
    }
}

/// Every parameter of the codec by its transformers name, with its shape.
pub fn expected_tensors(cfg: &DacConfig) -> Vec<(String, Vec<usize>)> {
    let mut convs = Convs::new();
    let mut alphas = Snakes::new();
    let res_units = res_unit_params;
    let e = cfg.encoder_hidden_size;
    convs.push(("encoder.conv1".into(), [e, 1, 7], e));
    for (i, &s) in cfg.downsampling_ratios.iter().enumerate() {
        let dim = e << (i + 1);
        let p = format!("encoder.block.{i}");
        res_units(&p, dim / 2, &mut convs, &mut alphas);
        alphas.push((format!("{p}.snake1"), dim / 2));
        convs.push((format!("{p}.conv1"), [dim, dim / 2, 2 * s], dim));
    }
    let d_model = cfg.encoder_out_channels();
    alphas.push(("encoder.snake1".into(), d_model));
    convs.push((
        "encoder.conv2".into(),
        [cfg.hidden_size, d_model, 3],
        cfg.hidden_size,
    ));
    let mut codebooks = Vec::new();
    for i in 0..cfg.n_codebooks {
        let p = format!("quantizer.quantizers.{i}");
        convs.push((
            format!("{p}.in_proj"),
            [cfg.codebook_dim, cfg.hidden_size, 1],
            cfg.codebook_dim,
        ));
        convs.push((
            format!("{p}.out_proj"),
            [cfg.hidden_size, cfg.codebook_dim, 1],
            cfg.hidden_size,
        ));
        codebooks.push((format!("{p}.codebook.weight"), i));
    }
    let dh = cfg.decoder_hidden_size;
    convs.push(("decoder.conv1".into(), [dh, cfg.hidden_size, 7], dh));
    for (i, &s) in cfg.upsampling_ratios.iter().enumerate() {
        let (din, dout) = (dh >> i, dh >> (i + 1));
        let p = format!("decoder.block.{i}");
        alphas.push((format!("{p}.snake1"), din));
        // ConvTranspose1d weights are [in, out, k].
        convs.push((format!("{p}.conv_t1"), [din, dout, 2 * s], dout));
        res_units(&p, dout, &mut convs, &mut alphas);
    }
    let last = cfg.decoder_out_channels();
    alphas.push(("decoder.snake1".into(), last));
    convs.push(("decoder.conv2".into(), [1, last, 7], 1));

    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for (name, shape, bias) in convs {
        out.push((format!("{name}.weight"), shape.to_vec()));
        out.push((format!("{name}.bias"), vec![bias]));
    }
    for (name, dim) in alphas {
        out.push((format!("{name}.alpha"), vec![1, dim, 1]));
    }
    for (name, _) in codebooks {
        out.push((name, vec![cfg.codebook_size, cfg.codebook_dim]));
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Reading the checkpoint
// ---------------------------------------------------------------------------------------------

/// Where a conv weight comes from in the file.
enum WeightSource {
    Plain(String),
    /// Weight norm: g `[out, 1, 1]` and v (the weight's shape).
    Normed {
        g: String,
        v: String,
    },
}

/// An opened DAC checkpoint; tensors are read on demand.
pub struct DacCheckpoint {
    pub dir: PathBuf,
    pub config: DacConfig,
    pub layout: DacLayout,
    /// Whether `config.json` was absent and the 44.1 kHz defaults are used.
    pub default_config: bool,
    file: PathBuf,
    files: TensorFiles,
}

fn weights_file(dir: &Path) -> Result<PathBuf, DacError> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(single);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(WeightsError::io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    match found.len() {
        0 => Err(DacError::MissingWeights(dir.to_path_buf())),
        1 => Ok(found.remove(0)),
        count => Err(DacError::AmbiguousWeights {
            dir: dir.to_path_buf(),
            count,
        }),
    }
}

impl DacCheckpoint {
    /// Opens `dir`, parses its config (or takes the 44.1 kHz defaults), detects the layout and
    /// checks that every tensor the config implies is present with the right shape.
    pub fn open(dir: &Path) -> Result<Self, DacError> {
        if !dir.is_dir() {
            return Err(DacError::MissingWeights(dir.to_path_buf()));
        }
        let config_path = dir.join("config.json");
        let default_config = !config_path.is_file();
        let config = if default_config {
            DacConfig::dac_44khz()
        } else {
            DacConfig::from_file(&config_path)?
        };
        let file = weights_file(dir)?;
        let files = TensorFiles::open(vec![file.clone()])?;
        let has_prefix = |p: &str| files.names().any(|k| k.starts_with(p));
        let layout = if has_prefix("decoder.conv1.") {
            DacLayout::Transformers
        } else if has_prefix("decoder.model.0.") {
            DacLayout::Descript
        } else {
            return Err(DacError::UnknownLayout { file });
        };
        let ckpt = Self {
            dir: dir.to_path_buf(),
            config,
            layout,
            default_config,
            file,
            files,
        };
        ckpt.validate()?;
        Ok(ckpt)
    }

    /// The file name of a parameter in this checkpoint's layout.
    fn file_name(&self, hf_param: &str) -> String {
        match self.layout {
            DacLayout::Transformers => hf_param.to_string(),
            DacLayout::Descript => {
                let (module, leaf) = hf_param.rsplit_once('.').expect("parameter path");
                let m = descript_module(module)
                    .unwrap_or_else(|| panic!("{module}: not a DAC module path"));
                format!("{m}.{leaf}")
            }
        }
    }

    /// Where this reader looks for tensors, for messages.
    fn expected(&self) -> Expected {
        Expected {
            model: "DAC",
            layout: self.layout.name(),
        }
    }

    fn check(&self, name: &str, shape: &[usize]) -> Result<(), DacError> {
        Ok(self.files.check(name, shape, self.expected())?)
    }

    /// Finds a conv weight in whichever form the file stores it and checks its shapes.
    fn conv_source(&self, hf_param: &str, shape: &[usize]) -> Result<WeightSource, DacError> {
        let plain = self.file_name(hf_param);
        let module = plain.strip_suffix(".weight").expect("a .weight parameter");
        let g_shape = [shape[0], 1, 1];
        let forms = [
            (format!("{module}.weight_g"), format!("{module}.weight_v")),
            (
                format!("{module}.parametrizations.weight.original0"),
                format!("{module}.parametrizations.weight.original1"),
            ),
        ];
        if self.files.contains(&plain) {
            self.check(&plain, shape)?;
            return Ok(WeightSource::Plain(plain));
        }
        for (g, v) in forms {
            if self.files.contains(&g) || self.files.contains(&v) {
                self.check(&v, shape)?;
                self.check(&g, &g_shape)?;
                return Ok(WeightSource::Normed { g, v });
            }
        }
        // Name the form the layout normally stores.
        let name = match self.layout {
            DacLayout::Transformers => plain,
            DacLayout::Descript => format!("{module}.weight_v"),
        };
        Err(WeightsError::MissingTensor {
            name,
            expected: shape.to_vec(),
            at: self.expected(),
        }
        .into())
    }

    /// Checks every parameter the config implies, before anything is written.
    pub fn validate(&self) -> Result<(), DacError> {
        // `n_codebooks` comes from config.json and nothing else bounds it: more codebooks than
        // the file holds tensors cannot be right, and listing the tensors of 10^18 would take
        // memory in proportion to the claim. Name the first missing codebook instead.
        let c = &self.config;
        if c.n_codebooks > self.files.len() {
            for i in 0..=self.files.len() {
                let name = format!("quantizer.quantizers.{i}.codebook.weight");
                self.check(&self.file_name(&name), &[c.codebook_size, c.codebook_dim])?;
            }
        }
        for (name, shape) in expected_tensors(&self.config) {
            match kind_of(&name) {
                Kind::ConvWeight => {
                    self.conv_source(&name, &shape)?;
                }
                _ => self.check(&self.file_name(&name), &shape)?,
            }
        }
        Ok(())
    }

    fn read(&self, name: &str) -> Tensor {
        self.files.read(name)
    }

    /// A parameter by its transformers name, as float32 in its transformers shape, weight norm
    /// folded.
    pub fn get(&self, hf_param: &str, shape: &[usize]) -> Result<Tensor, DacError> {
        if kind_of(hf_param) != Kind::ConvWeight {
            let name = self.file_name(hf_param);
            self.check(&name, shape)?;
            return Ok(self.read(&name));
        }
        Ok(match self.conv_source(hf_param, shape)? {
            WeightSource::Plain(name) => self.read(&name),
            WeightSource::Normed { g, v } => fold_weight_norm(&self.read(&g), &self.read(&v)),
        })
    }

    /// The safetensors file the weights come from.
    pub fn weights_path(&self) -> &Path {
        &self.file
    }
}

/// `w = v · (g / ‖v‖)` per slice of dim 0, as torch's `_weight_norm(v, g, dim=0)` computes it
/// (the norm accumulated in float64, then rounded).
pub fn fold_weight_norm(g: &Tensor, v: &Tensor) -> Tensor {
    let rows = v.shape[0];
    assert_eq!(
        g.data.len(),
        rows,
        "weight norm: g {:?} for v {:?}",
        g.shape,
        v.shape
    );
    let cols = v.data.len() / rows;
    let mut w = Vec::with_capacity(v.data.len());
    for (r, row) in v.data.chunks_exact(cols).enumerate() {
        let norm = row
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt() as f32;
        let scale = g.data[r] / norm;
        w.extend(row.iter().map(|&x| x * scale));
    }
    Tensor::new(v.shape.clone(), w)
}

// ---------------------------------------------------------------------------------------------
// Weights into the graph
// ---------------------------------------------------------------------------------------------

/// Puts DAC parameters into a graph, addressed by transformers module paths under a prefix
/// (`w.pp("decoder").pp("block.0")`), like [`crate::weights::Weights`]. Always float32.
#[derive(Clone)]
pub struct DacWeights<'a> {
    ckpt: &'a DacCheckpoint,
    prefix: String,
}

impl<'a> DacWeights<'a> {
    pub fn new(ckpt: &'a DacCheckpoint) -> Self {
        Self {
            ckpt,
            prefix: String::new(),
        }
    }

    pub fn pp(&self, name: impl AsRef<str>) -> Self {
        Self {
            ckpt: self.ckpt,
            prefix: self.path(name.as_ref()),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn path(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }

    fn add(&self, b: &mut Builder, name: &str, t: &Tensor) -> Value {
        b.initializer(
            &self.path(name),
            DType::F32,
            &t.shape_i64(),
            &encode_f32(&t.data, DType::F32),
        )
    }

    /// Parameter `<prefix>.<name>` as float32 (weight norm folded).
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor, DacError> {
        self.ckpt.get(&self.path(name), shape)
    }

    /// Conv `<prefix>.<name>`: its weight (`shape`) and bias (`[bias_len]`) as initializers.
    pub fn conv(
        &self,
        b: &mut Builder,
        name: &str,
        shape: [usize; 3],
        bias_len: usize,
    ) -> Result<(Value, Value), DacError> {
        let w = self.tensor(&format!("{name}.weight"), &shape)?;
        let bias = self.tensor(&format!("{name}.bias"), &[bias_len])?;
        Ok((
            self.add(b, &format!("{name}.weight"), &w),
            self.add(b, &format!("{name}.bias"), &bias),
        ))
    }

    /// Snake `<prefix>.<name>` of `channels`: alpha `[1, C, 1]` and `1 / (alpha + 1e-9)`,
    /// computed here in float32 exactly as the reference computes it at run time.
    pub fn snake(
        &self,
        b: &mut Builder,
        name: &str,
        channels: usize,
    ) -> Result<(Value, Value), DacError> {
        let alpha = self.tensor(&format!("{name}.alpha"), &[1, channels, 1])?;
        let inv = Tensor::new(
            alpha.shape.clone(),
            alpha.data.iter().map(|&a| (a + 1e-9f32).recip()).collect(),
        );
        Ok((
            self.add(b, &format!("{name}.alpha"), &alpha),
            self.add(b, &format!("{name}.inv_alpha"), &inv),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Blocks (one per transformers module)
// ---------------------------------------------------------------------------------------------

/// `Snake1d`: `x + (alpha + 1e-9)^-1 · sin(alpha · x)²`, alpha per channel.
pub fn snake(b: &mut Builder, w: &DacWeights, name: &str, x: &Value) -> Result<Value, DacError> {
    let (alpha, inv) = w.snake(b, name, x.shape[1] as usize)?;
    Ok(b.scoped(&w.path(name), |b| {
        let ax = b.mul(&alpha, x);
        let s = b.sin(&ax);
        let s2 = b.mul(&s, &s);
        let t = b.mul(&inv, &s2);
        b.add(x, &t)
    }))
}

/// A weight-normed `Conv1d` `<prefix>.<name>` from `x`'s channels to `out` (kernel `k`).
fn conv(
    b: &mut Builder,
    w: &DacWeights,
    name: &str,
    x: &Value,
    out: usize,
    k: usize,
    p: Conv1d,
) -> Result<Value, DacError> {
    let cin = x.shape[1] as usize;
    let (wt, bias) = w.conv(b, name, [out, cin, k], out)?;
    Ok(b.scoped(&w.path(name), |b| b.conv1d(x, &wt, Some(&bias), p)))
}

/// `DacResidualUnit`: Snake -> conv k7 (dilated, same length) -> Snake -> conv k1, plus the
/// input (centre-cropped if the branch came out shorter, which it never does with these pads).
pub fn residual_unit(
    b: &mut Builder,
    w: &DacWeights,
    x: &Value,
    dilation: i64,
) -> Result<Value, DacError> {
    let dim = x.shape[1] as usize;
    let pad = (7 - 1) * dilation / 2;
    let h = snake(b, w, "snake1", x)?;
    let h = conv(
        b,
        w,
        "conv1",
        &h,
        dim,
        7,
        Conv1d {
            padding: pad,
            dilation,
            ..Default::default()
        },
    )?;
    let h = snake(b, w, "snake2", &h)?;
    let h = conv(b, w, "conv2", &h, dim, 1, Conv1d::default())?;
    // The branch is shorter than the input by `(K-1)·d - 2·pad` samples, whatever the length.
    let crop = ((7 - 1) * dilation - 2 * pad) / 2;
    Ok(b.scoped(w.prefix(), |b| {
        let x = if crop > 0 {
            b.slice(x, -1, crop, -crop)
        } else {
            x.clone()
        };
        b.add(&x, &h)
    }))
}

fn residual_units(b: &mut Builder, w: &DacWeights, x: &Value) -> Result<Value, DacError> {
    let mut h = x.clone();
    for (r, &d) in DILATIONS.iter().enumerate() {
        h = residual_unit(b, &w.pp(format!("res_unit{}", r + 1)), &h, d)?;
    }
    Ok(h)
}

/// The strided convs' padding: `ceil(stride / 2)`.
fn stride_padding(stride: usize) -> i64 {
    stride.div_ceil(2) as i64
}

/// `DacDecoderBlock`: Snake -> ConvTranspose (kernel 2·stride, up by `stride`, channels
/// halved) -> three residual units (dilations 1, 3, 9).
pub fn decoder_block(
    b: &mut Builder,
    w: &DacWeights,
    x: &Value,
    stride: usize,
) -> Result<Value, DacError> {
    let din = x.shape[1] as usize;
    let dout = din / 2;
    let h = snake(b, w, "snake1", x)?;
    let (wt, bias) = w.conv(b, "conv_t1", [din, dout, 2 * stride], dout)?;
    let h = b.scoped(&w.path("conv_t1"), |b| {
        b.conv_transpose1d(
            &h,
            &wt,
            Some(&bias),
            Conv1d {
                stride: stride as i64,
                padding: stride_padding(stride),
                ..Default::default()
            },
        )
    });
    residual_units(b, w, &h)
}

/// `DacEncoderBlock`: three residual units -> Snake -> conv (kernel 2·stride, down by
/// `stride`, channels doubled).
pub fn encoder_block(
    b: &mut Builder,
    w: &DacWeights,
    x: &Value,
    stride: usize,
) -> Result<Value, DacError> {
    let dim = x.shape[1] as usize * 2;
    let h = residual_units(b, w, x)?;
    let h = snake(b, w, "snake1", &h)?;
    conv(
        b,
        w,
        "conv1",
        &h,
        dim,
        2 * stride,
        Conv1d {
            stride: stride as i64,
            padding: stride_padding(stride),
            ..Default::default()
        },
    )
}

/// `DacDecoder`: latent `[1, hidden, frames]` -> waveform `[1, 1, samples]`.
pub fn decoder(
    b: &mut Builder,
    w: &DacWeights,
    cfg: &DacConfig,
    latent: &Value,
) -> Result<Value, DacError> {
    let same7 = Conv1d {
        padding: 3,
        ..Default::default()
    };
    let mut h = conv(b, w, "conv1", latent, cfg.decoder_hidden_size, 7, same7)?;
    for (i, &s) in cfg.upsampling_ratios.iter().enumerate() {
        h = decoder_block(b, &w.pp(format!("block.{i}")), &h, s)?;
    }
    let h = snake(b, w, "snake1", &h)?;
    let h = conv(b, w, "conv2", &h, 1, 7, same7)?;
    Ok(b.scoped(w.prefix(), |b| b.tanh(&h)))
}

/// `DacEncoder`: waveform `[1, 1, samples]` -> latent `[1, hidden, frames]`.
pub fn encoder(
    b: &mut Builder,
    w: &DacWeights,
    cfg: &DacConfig,
    audio: &Value,
) -> Result<Value, DacError> {
    let mut h = conv(
        b,
        w,
        "conv1",
        audio,
        cfg.encoder_hidden_size,
        7,
        Conv1d {
            padding: 3,
            ..Default::default()
        },
    )?;
    for (i, &s) in cfg.downsampling_ratios.iter().enumerate() {
        h = encoder_block(b, &w.pp(format!("block.{i}")), &h, s)?;
    }
    let h = snake(b, w, "snake1", &h)?;
    conv(
        b,
        w,
        "conv2",
        &h,
        cfg.hidden_size,
        3,
        Conv1d {
            padding: 1,
            ..Default::default()
        },
    )
}

/// `DacResidualVectorQuantizer.from_codes`: codes `[1, n_codebooks, frames]` -> latent
/// `[1, hidden, frames]`, the sum over codebooks of `out_proj(codebook[code])`, in order.
pub fn from_codes(
    b: &mut Builder,
    w: &DacWeights,
    cfg: &DacConfig,
    codes: &Value,
) -> Result<Value, DacError> {
    let mut latent: Option<Value> = None;
    for i in 0..cfg.n_codebooks {
        let q = w.pp(format!("quantizers.{i}"));
        let table = q.tensor("codebook.weight", &[cfg.codebook_size, cfg.codebook_dim])?;
        let table = q.add(b, "codebook.weight", &table);
        let (ow, ob) = q.conv(
            b,
            "out_proj",
            [cfg.hidden_size, cfg.codebook_dim, 1],
            cfg.hidden_size,
        )?;
        let y = b.scoped(q.prefix(), |b| {
            let idx = b.const_i64(&[i as i64], &[]);
            let c = b.gather(codes, &idx, 1); // [1, F]
            let e = b.gather(&table, &c, 0); // [1, F, D]
            let e = b.transpose(&e, &[0, 2, 1]); // [1, D, F]
            b.conv1d(&e, &ow, Some(&ob), Conv1d::default())
        });
        latent = Some(match latent {
            None => y,
            Some(acc) => b.scoped(w.prefix(), |b| b.add(&acc, &y)),
        });
    }
    Ok(latent.expect("at least one codebook"))
}

/// `DacVectorQuantize.forward` of codebook `<prefix>` on `residual` `[1, hidden, F]`:
/// returns (codes `[1, F]`, the quantized latent `[1, hidden, F]` to subtract).
/// Nearest neighbour by cosine similarity: encodings and codebook L2-normalised, then the
/// reference's score `-(‖e‖² - 2·e·c) + ‖c‖²`, its first maximum.
pub fn vector_quantize(
    b: &mut Builder,
    w: &DacWeights,
    cfg: &DacConfig,
    residual: &Value,
    coreml: bool,
) -> Result<(Value, Value), DacError> {
    let (n, d) = (cfg.codebook_size, cfg.codebook_dim);
    let (iw, ib) = w.conv(b, "in_proj", [d, cfg.hidden_size, 1], d)?;
    let (ow, ob) = w.conv(b, "out_proj", [cfg.hidden_size, d, 1], cfg.hidden_size)?;
    let table = w.tensor("codebook.weight", &[n, d])?;
    // F.normalize of the codebook and its squared norms, once, at export.
    let mut normed_t = vec![0f32; n * d];
    let mut sq = vec![0f32; n];
    for (r, row) in table.data.chunks_exact(d).enumerate() {
        let norm = row
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt() as f32;
        let norm = norm.max(NORMALIZE_EPS);
        let mut s = 0f64;
        for (j, &x) in row.iter().enumerate() {
            let y = x / norm;
            normed_t[j * n + r] = y;
            s += f64::from(y) * f64::from(y);
        }
        sq[r] = s as f32;
    }
    let table = w.add(b, "codebook.weight", &table);
    let normed_t = w.add(
        b,
        "codebook.normalized_t",
        &Tensor::new(vec![d, n], normed_t),
    );
    let sq = w.add(b, "codebook.sq_norm", &Tensor::new(vec![n], sq));
    Ok(b.scoped(w.prefix(), |b| {
        let z = b.conv1d(residual, &iw, Some(&ib), Conv1d::default()); // [1, D, F]
        let e = b.transpose(&z, &[0, 2, 1]); // [1, F, D]
        let norm = if coreml {
            // Core ML has no ReduceL2.
            let e2 = b.mul(&e, &e);
            let s = b.reduce_sum(&e2, &[-1], true);
            b.sqrt(&s)
        } else {
            b.reduce_l2(&e, &[-1], true)
        };
        let eps = b.scalar(NORMALIZE_EPS, DType::F32);
        let norm = b.max(&norm, &eps);
        let e = b.div(&e, &norm);
        let l2 = {
            let e2 = b.mul(&e, &e);
            b.reduce_sum(&e2, &[-1], true) // [1, F, 1]
        };
        let two = b.scalar(2.0, DType::F32);
        let e2x = b.mul(&two, &e);
        let dot = b.matmul(&e2x, &normed_t); // [1, F, N]
                                             // -(|e|² - 2e·c + |c|²): the reference's negated distance (no Neg: Core ML has none).
        let dist = b.sub(&dot, &l2);
        let dist = b.sub(&dist, &sq);
        let codes = b.argmax(&dist, -1, false); // [1, F]
                                                // Core ML: ArgMax may feed only one node, a Cast to int32.
        let codes = if coreml {
            b.cast(&codes, DType::I32)
        } else {
            codes
        };
        let q = b.gather(&table, &codes, 0); // [1, F, D]
        let q = b.transpose(&q, &[0, 2, 1]); // [1, D, F]

        // The straight-through estimator as the reference writes it: z + (q - z).
        let diff = b.sub(&q, &z);
        let zq = b.add(&z, &diff);
        let out = b.conv1d(&zq, &ow, Some(&ob), Conv1d::default());
        (codes, out)
    }))
}

/// `DacResidualVectorQuantizer.forward` (inference): latent `[1, hidden, F]` -> codes
/// `[1, n_codebooks, F]`, each codebook quantizing what the previous ones left.
pub fn quantize(
    b: &mut Builder,
    w: &DacWeights,
    cfg: &DacConfig,
    latent: &Value,
    coreml: bool,
) -> Result<Value, DacError> {
    let mut residual = latent.clone();
    let mut codes = Vec::new();
    for i in 0..cfg.n_codebooks {
        let q = w.pp(format!("quantizers.{i}"));
        let (c, out) = vector_quantize(b, &q, cfg, &residual, coreml)?;
        residual = b.scoped(q.prefix(), |b| b.sub(&residual, &out));
        // Core ML stacks only float tensors: codes < 1024 are exact in float32.
        let c = if coreml { b.cast(&c, DType::F32) } else { c };
        codes.push(b.scoped(q.prefix(), |b| b.unsqueeze(&c, &[1])));
    }
    let refs: Vec<&Value> = codes.iter().collect();
    Ok(b.scoped(w.prefix(), |b| {
        let all = b.concat(&refs, 1);
        b.cast(&all, DType::I64)
    }))
}

/// The decoder graph: `codes` int64 `[1, n_codebooks, frames]` -> `audio` float32
/// `[1, 1, samples]`. `frames` fixes the frame count (static shapes, for Core ML; the runtime
/// then decodes in overlapping chunks); `None` leaves it dynamic.
pub fn build_dac_decoder(
    b: &mut Builder,
    w: &DacWeights,
    cfg: &DacConfig,
    frames: Option<usize>,
) -> Result<(), DacError> {
    let shape = [1, cfg.n_codebooks as i64, frames.map_or(DYN, |f| f as i64)];
    let dims: &[&str] = if frames.is_some() { &[] } else { &["samples"] };
    let codes = if frames.is_some() {
        b.input(names::CODES, DType::I64, &shape)
    } else {
        b.input_dyn(names::CODES, DType::I64, &shape, &["frames"])
    };
    let latent = from_codes(b, &w.pp("quantizer"), cfg, &codes)?;
    let audio = decoder(b, &w.pp("decoder"), cfg, &latent)?;
    b.output_dyn(&audio, names::AUDIO, dims);
    Ok(())
}

/// The encoder graph: `audio` float32 `[1, 1, samples]` (zero-padded on the right to a
/// multiple of `hop_length` by the caller) -> `codes` int64 `[1, n_codebooks, frames]`.
/// `frames` fixes the length (static shapes and Core ML's ops, for Core ML; the runtime then
/// encodes in overlapping chunks); `None` leaves it dynamic.
pub fn build_dac_encoder(
    b: &mut Builder,
    w: &DacWeights,
    cfg: &DacConfig,
    frames: Option<usize>,
) -> Result<(), DacError> {
    let audio = match frames {
        Some(f) => b.input(
            names::AUDIO,
            DType::F32,
            &[1, 1, (f * cfg.hop_length) as i64],
        ),
        None => b.input_dyn(names::AUDIO, DType::F32, &[1, 1, DYN], &["samples"]),
    };
    let latent = encoder(b, &w.pp("encoder"), cfg, &audio)?;
    let codes = quantize(b, &w.pp("quantizer"), cfg, &latent, frames.is_some())?;
    let dims: &[&str] = if frames.is_some() { &[] } else { &["frames"] };
    b.output_dyn(&codes, names::CODES, dims);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::tensor::TensorView;
    use safetensors::{Dtype, SafeTensors};
    use std::collections::HashMap;

    fn tiny() -> DacConfig {
        DacConfig::from_json_str(
            r#"{"encoder_hidden_size":4,"downsampling_ratios":[2,4,8,8],"decoder_hidden_size":32,
               "n_codebooks":9,"codebook_size":1024,"codebook_dim":8,"sampling_rate":44100}"#,
            "t",
        )
        .unwrap()
    }

    /// Each kind of parameter maps to descript's name as transformers' conversion script
    /// reads it (`convert_dac_checkpoint.py`, MAPPING_ENCODER / _QUANTIZER / _DECODER).
    #[test]
    fn descript_names_per_tensor_kind() {
        let cases = [
            ("encoder.conv1.weight", "encoder.block.0.weight"),
            ("encoder.conv1.bias", "encoder.block.0.bias"),
            (
                "encoder.block.0.res_unit1.snake1.alpha",
                "encoder.block.1.block.0.block.0.alpha",
            ),
            (
                "encoder.block.0.res_unit1.conv1.weight",
                "encoder.block.1.block.0.block.1.weight",
            ),
            (
                "encoder.block.2.res_unit2.snake2.alpha",
                "encoder.block.3.block.1.block.2.alpha",
            ),
            (
                "encoder.block.3.res_unit3.conv2.bias",
                "encoder.block.4.block.2.block.3.bias",
            ),
            (
                "encoder.block.1.snake1.alpha",
                "encoder.block.2.block.3.alpha",
            ),
            (
                "encoder.block.1.conv1.weight",
                "encoder.block.2.block.4.weight",
            ),
            ("encoder.snake1.alpha", "encoder.block.5.alpha"),
            ("encoder.conv2.weight", "encoder.block.6.weight"),
            (
                "quantizer.quantizers.4.in_proj.weight",
                "quantizer.quantizers.4.in_proj.weight",
            ),
            (
                "quantizer.quantizers.8.out_proj.bias",
                "quantizer.quantizers.8.out_proj.bias",
            ),
            (
                "quantizer.quantizers.0.codebook.weight",
                "quantizer.quantizers.0.codebook.weight",
            ),
            ("decoder.conv1.weight", "decoder.model.0.weight"),
            (
                "decoder.block.0.snake1.alpha",
                "decoder.model.1.block.0.alpha",
            ),
            (
                "decoder.block.0.conv_t1.weight",
                "decoder.model.1.block.1.weight",
            ),
            (
                "decoder.block.1.res_unit1.snake1.alpha",
                "decoder.model.2.block.2.block.0.alpha",
            ),
            (
                "decoder.block.2.res_unit2.conv1.weight",
                "decoder.model.3.block.3.block.1.weight",
            ),
            (
                "decoder.block.3.res_unit3.snake2.alpha",
                "decoder.model.4.block.4.block.2.alpha",
            ),
            (
                "decoder.block.3.res_unit3.conv2.bias",
                "decoder.model.4.block.4.block.3.bias",
            ),
            ("decoder.snake1.alpha", "decoder.model.5.alpha"),
            ("decoder.conv2.weight", "decoder.model.6.weight"),
        ];
        let map = |p: &str| {
            let (m, leaf) = p.rsplit_once('.').unwrap();
            format!("{}.{leaf}", descript_module(m).unwrap())
        };
        for (hf, desc) in cases {
            assert_eq!(map(hf), desc, "{hf}");
        }
        // Every kind of module is covered by a case (indices masked; weight and bias of a
        // module map alike).
        let mask = |s: &str| {
            s.rsplit_once('.')
                .unwrap()
                .0
                .replace(|c: char| c.is_ascii_digit(), "#")
        };
        let covered: std::collections::HashSet<String> =
            cases.iter().map(|(h, _)| mask(h)).collect();
        let all = expected_tensors(&tiny());
        for (name, _) in &all {
            assert!(covered.contains(&mask(name)), "no case for {name}");
        }
        // The mapping is one-to-one over the whole model.
        let mapped: std::collections::HashSet<String> = all.iter().map(|(n, _)| map(n)).collect();
        assert_eq!(mapped.len(), all.len());
        assert_eq!(descript_module("decoder.block.0.res_unit4.conv1"), None);
        assert_eq!(descript_module("decoder.tanh"), None);
    }

    #[test]
    fn expected_tensors_of_the_44khz_codec() {
        let all = expected_tensors(&DacConfig::dac_44khz());
        let shape = |n: &str| all.iter().find(|(m, _)| m == n).unwrap().1.clone();
        assert_eq!(shape("encoder.conv1.weight"), vec![64, 1, 7]);
        assert_eq!(shape("encoder.block.3.conv1.weight"), vec![1024, 512, 16]);
        assert_eq!(shape("encoder.conv2.weight"), vec![1024, 1024, 3]);
        assert_eq!(shape("decoder.conv1.weight"), vec![1536, 1024, 7]);
        assert_eq!(shape("decoder.block.0.conv_t1.weight"), vec![1536, 768, 16]);
        assert_eq!(shape("decoder.block.3.conv_t1.weight"), vec![192, 96, 4]);
        assert_eq!(shape("decoder.conv2.weight"), vec![1, 96, 7]);
        assert_eq!(shape("decoder.snake1.alpha"), vec![1, 96, 1]);
        assert_eq!(
            shape("quantizer.quantizers.8.codebook.weight"),
            vec![1024, 8]
        );
        assert_eq!(
            shape("quantizer.quantizers.0.in_proj.weight"),
            vec![8, 1024, 1]
        );
        // Transformers' DacModel has 223 parameters for 4 blocks and 9 codebooks.
        assert_eq!(all.len(), 223);
    }

    #[test]
    fn config_in_both_namings_and_defaults() {
        let hf = r#"{"model_type":"dac","encoder_hidden_size":64,"downsampling_ratios":[2,4,8,8],
            "decoder_hidden_size":1536,"upsampling_ratios":[8,8,4,2],"hidden_size":1024,
            "hop_length":512,"n_codebooks":9,"codebook_size":1024,"codebook_dim":8,
            "sampling_rate":44100,"quantizer_dropout":0.0}"#;
        assert_eq!(
            DacConfig::from_json_str(hf, "c").unwrap(),
            DacConfig::dac_44khz()
        );
        let descript = r#"{"encoder_dim":64,"encoder_rates":[2,4,8,8],"latent_dim":1024,
            "decoder_dim":1536,"decoder_rates":[8,8,4,2],"n_codebooks":9,"codebook_size":1024,
            "codebook_dim":8,"quantizer_dropout":false,"sample_rate":44100}"#;
        assert_eq!(
            DacConfig::from_json_str(descript, "c").unwrap(),
            DacConfig::dac_44khz()
        );
        assert_eq!(
            DacConfig::from_json_str("{}", "c").unwrap(),
            DacConfig::dac_44khz()
        );
        let c = tiny();
        assert_eq!((c.hidden_size, c.hop_length), (64, 512));
        assert_eq!(c.upsampling_ratios, vec![8, 8, 4, 2]);
    }

    #[test]
    fn config_errors_name_the_problem() {
        let err = DacConfig::from_json_str(r#"{"hop_length":256}"#, "x/config.json")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("x/config.json") && err.contains("hop_length 256"),
            "{err}"
        );
        let err = DacConfig::from_json_str(r#"{"model_type":"dia"}"#, "c")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not `dac`"), "{err}");
        let err = DacConfig::from_json_str(r#"{"encoder_rates":[2,"x"]}"#, "c")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`encoder_rates`"), "{err}");
    }

    #[test]
    fn weight_norm_folds_over_all_dims_but_the_first() {
        let v = Tensor::new(vec![2, 1, 2], vec![3., 4., 0., 2.]);
        let g = Tensor::new(vec![2, 1, 1], vec![10., 0.5]);
        assert_eq!(fold_weight_norm(&g, &v).data, vec![6., 8., 0., 0.5]);
    }

    /// Writes a one-file checkpoint of the tiny config whose conv weights are stored in the
    /// form `form` picks, from the same random values; returns its directory.
    fn write_ckpt(
        dir: &Path,
        layout: DacLayout,
        form: &dyn Fn(&str) -> &'static str,
    ) -> (PathBuf, HashMap<String, Vec<f32>>) {
        let cfg = tiny();
        let mut seed = 1u64;
        let mut rand = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        let mut folded = HashMap::new();
        for (name, shape) in expected_tensors(&cfg) {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|_| rand()).collect();
            let file = match layout {
                DacLayout::Transformers => name.clone(),
                DacLayout::Descript => {
                    let (m, leaf) = name.rsplit_once('.').unwrap();
                    format!("{}.{leaf}", descript_module(m).unwrap())
                }
            };
            if kind_of(&name) == Kind::ConvWeight && form(&name) != "plain" {
                let module = file.strip_suffix(".weight").unwrap();
                let g: Vec<f32> = (0..shape[0]).map(|i| 0.5 + i as f32).collect();
                let (gn, vn) = if form(&name) == "g_v" {
                    (format!("{module}.weight_g"), format!("{module}.weight_v"))
                } else {
                    (
                        format!("{module}.parametrizations.weight.original0"),
                        format!("{module}.parametrizations.weight.original1"),
                    )
                };
                let gt = Tensor::new(vec![shape[0], 1, 1], g.clone());
                let vt = Tensor::new(shape.clone(), data.clone());
                folded.insert(name.clone(), fold_weight_norm(&gt, &vt).data);
                tensors.push((gn, vec![shape[0], 1, 1], g));
                tensors.push((vn, shape, data));
            } else {
                folded.insert(name.clone(), data.clone());
                tensors.push((file, shape, data));
            }
        }
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .into_iter()
            .map(|(n, s, d)| (n, s, encode_f32(&d, DType::F32)))
            .collect();
        let views: Vec<(String, TensorView)> = bytes
            .iter()
            .map(|(n, s, b)| {
                (
                    n.clone(),
                    TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
                )
            })
            .collect();
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("weights.safetensors"),
            safetensors::serialize(views, &None).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.join("config.json"),
            serde_json::to_string(&cfg).unwrap(),
        )
        .unwrap();
        (dir.to_path_buf(), folded)
    }

    #[test]
    fn every_weight_norm_form_is_read_and_folded() {
        let tmp = tempfile::tempdir().unwrap();
        // Mix the three forms within one file: plain, descript's g/v, torch parametrizations.
        let form = |n: &str| -> &'static str {
            if n.contains("decoder") {
                "g_v"
            } else if n.contains("quantizer") {
                "param"
            } else {
                "plain"
            }
        };
        for layout in [DacLayout::Transformers, DacLayout::Descript] {
            let (dir, want) = write_ckpt(&tmp.path().join(layout.name()), layout, &form);
            let ckpt = DacCheckpoint::open(&dir).unwrap();
            assert_eq!(ckpt.layout, layout);
            assert!(!ckpt.default_config);
            for (name, shape) in expected_tensors(&ckpt.config) {
                assert_eq!(ckpt.get(&name, &shape).unwrap().data, want[&name], "{name}");
            }
        }
    }

    #[test]
    fn missing_and_misshaped_tensors_are_named_with_shapes() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = write_ckpt(tmp.path(), DacLayout::Descript, &|_| "g_v");
        // Drop one weight_v: the error names it and its shape.
        let file = dir.join("weights.safetensors");
        let bytes = std::fs::read(&file).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let rewrite = |skip: &str, reshape: &str| {
            let kept: Vec<(String, TensorView)> = st
                .tensors()
                .into_iter()
                .filter(|(n, _)| n != skip)
                .map(|(n, v)| {
                    let shape = if n == reshape {
                        vec![v.shape().iter().product::<usize>()]
                    } else {
                        v.shape().to_vec()
                    };
                    (n, TensorView::new(v.dtype(), shape, v.data()).unwrap())
                })
                .collect();
            std::fs::write(&file, safetensors::serialize(kept, &None).unwrap()).unwrap();
        };
        rewrite("decoder.model.1.block.1.weight_v", "");
        let err = DacCheckpoint::open(&dir).err().unwrap().to_string();
        assert!(
            err.contains("`decoder.model.1.block.1.weight_v` is missing")
                && err.contains("[32, 16, 16]")
                && err.contains("descript layout"),
            "{err}"
        );
        rewrite("", "encoder.block.6.weight_g");
        let err = DacCheckpoint::open(&dir).err().unwrap().to_string();
        assert!(
            err.contains("`encoder.block.6.weight_g`")
                && err.contains("[64]")
                && err.contains("[64, 1, 1]"),
            "{err}"
        );
    }

    #[test]
    fn graphs_have_dynamic_io() {
        let tmp = tempfile::tempdir().unwrap();
        let (dir, _) = write_ckpt(tmp.path(), DacLayout::Transformers, &|_| "plain");
        let ckpt = DacCheckpoint::open(&dir).unwrap();
        let w = DacWeights::new(&ckpt);
        let mut b = Builder::new("dac_decoder", None);
        build_dac_decoder(&mut b, &w, &ckpt.config, None).unwrap();
        assert_eq!(b.inputs()[0].shape, vec![1, 9, DYN]);
        assert_eq!(
            (b.outputs()[0].name.as_str(), b.outputs()[0].shape.clone()),
            ("audio", vec![1, 1, DYN])
        );
        let mut b = Builder::new("dac_encoder", None);
        build_dac_encoder(&mut b, &w, &ckpt.config, None).unwrap();
        assert_eq!(b.inputs()[0].shape, vec![1, 1, DYN]);
        assert_eq!(b.outputs()[0].dtype, DType::I64);
        assert_eq!(b.outputs()[0].shape, vec![1, 9, DYN]);
        let (model, _) = b.finish("", &[]).unwrap();
        let g = model.graph.unwrap();
        let dim = |vi: &crate::onnx::ValueInfoProto, i: usize| {
            vi.r#type
                .as_ref()
                .unwrap()
                .tensor_type
                .as_ref()
                .unwrap()
                .shape
                .as_ref()
                .unwrap()
                .dim[i]
                .value
                .clone()
        };
        use crate::onnx::DimensionValue;
        assert_eq!(
            dim(&g.input[0], 2),
            Some(DimensionValue::DimParam("samples".into()))
        );
        assert_eq!(
            dim(&g.output[0], 2),
            Some(DimensionValue::DimParam("frames".into()))
        );
        assert_eq!(dim(&g.output[0], 1), Some(DimensionValue::DimValue(9)));
    }
}
