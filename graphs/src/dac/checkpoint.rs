//! Reading a DAC checkpoint: finding the weights file, telling the transformers layout from
//! descript's, mapping parameter names between them, and folding weight norm. Parameters are
//! addressed by their transformers name and returned in their transformers shape whatever the
//! layout; tensor and file errors are the shared [`WeightsError`].

use std::path::{Path, PathBuf};

use super::config::{DacConfig, DacConfigError};
use crate::safetensors_files::{Expected, TensorFiles, WeightsError};
use crate::tensor::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum DacError {
    #[error("{0}: no DAC weights: expected model.safetensors (transformers' DacModel.save_pretrained, e.g. the Hub's descript/dac_44khz) or one .safetensors file in descript's layout")]
    MissingWeights(PathBuf),
    #[error("{dir}: {count} .safetensors files and no model.safetensors: cannot tell which holds the DAC; keep one or name it model.safetensors")]
    AmbiguousWeights { dir: PathBuf, count: usize },
    #[error(transparent)]
    Config(#[from] DacConfigError),
    /// The files, or a tensor in them (shared with the Dia reader).
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{file}: not a DAC checkpoint: neither the transformers layout (`decoder.conv1.*`) nor descript's (`decoder.model.0.*`) was found")]
    UnknownLayout { file: PathBuf },
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

/// The name in descript's layout of a parameter named as transformers names it
/// (`decoder.conv1.weight` -> `decoder.model.0.weight`): [`descript_module`] of its module.
fn descript_param(hf_param: &str) -> Option<String> {
    let (module, leaf) = hf_param.rsplit_once('.')?;
    Some(format!("{}.{leaf}", descript_module(module)?))
}

/// The names of g and v of a conv weight `<module>.weight` stored weight-normed: descript's
/// `weight_g` / `weight_v`, then torch parametrizations (`original0` = g, `original1` = v).
fn weight_norm_names(module: &str) -> [(String, String); 2] {
    [
        (format!("{module}.weight_g"), format!("{module}.weight_v")),
        (
            format!("{module}.parametrizations.weight.original0"),
            format!("{module}.parametrizations.weight.original1"),
        ),
    ]
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
            DacLayout::Descript => descript_param(hf_param)
                .unwrap_or_else(|| panic!("{hf_param}: not a DAC parameter path")),
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
        if self.files.contains(&plain) {
            self.check(&plain, shape)?;
            return Ok(WeightSource::Plain(plain));
        }
        for (g, v) in weight_norm_names(module) {
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

/// The L2 norm of `row`, accumulated in float64 and then rounded, as torch computes it.
pub(super) fn l2_norm(row: &[f32]) -> f32 {
    row.iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt() as f32
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
        let scale = g.data[r] / l2_norm(row);
        w.extend(row.iter().map(|&x| x * scale));
    }
    Tensor::new(v.shape.clone(), w)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::builder::DType;
    use crate::dac::config::tests::tiny;
    use crate::tensor::encode_f32;
    use safetensors::tensor::TensorView;
    use safetensors::{Dtype, SafeTensors};
    use std::collections::HashMap;

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
        let map = |p: &str| descript_param(p).unwrap();
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
    fn weight_norm_folds_over_all_dims_but_the_first() {
        let v = Tensor::new(vec![2, 1, 2], vec![3., 4., 0., 2.]);
        let g = Tensor::new(vec![2, 1, 1], vec![10., 0.5]);
        assert_eq!(fold_weight_norm(&g, &v).data, vec![6., 8., 0., 0.5]);
    }

    /// Writes a one-file checkpoint of the tiny config whose conv weights are stored in the
    /// form `form` picks, from the same random values; returns its directory.
    pub(crate) fn write_ckpt(
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
                DacLayout::Descript => descript_param(&name).unwrap(),
            };
            if kind_of(&name) == Kind::ConvWeight && form(&name) != "plain" {
                let module = file.strip_suffix(".weight").unwrap();
                let g: Vec<f32> = (0..shape[0]).map(|i| 0.5 + i as f32).collect();
                let [g_v, param] = weight_norm_names(module);
                let (gn, vn) = if form(&name) == "g_v" { g_v } else { param };
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
}
