//! Reading a Dia checkpoint directory (`config.json` + `model.safetensors`, or sharded
//! safetensors with an index) in either layout users download:
//!
//! - **nari**: the nari-labs layout, DenseGeneral kernels with input dims first
//!   (`decoder.layers.0.self_attention.q_proj.weight` is `[hidden, heads, head_dim]`);
//! - **transformers**: what `DiaForConditionalGeneration.save_pretrained` writes, Linear
//!   matrices `[out, in]` under a `model.` prefix, one merged decoder embedding table.
//!
//! Weights are addressed by their nari name and returned in the nari shape whatever the file's
//! layout; the mapping from one layout to the other lives in `transformers_source`, once.
//! Files are memory-mapped and tensors are decoded one at a time, so export streams weights.

use std::path::{Path, PathBuf};

use dia_bundle::{BundleError, DiaConfig};

use crate::safetensors_files::{Expected, TensorFiles, WeightsError};
use crate::tensor::Tensor;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(
        "{0}: no config.json: a Dia checkpoint directory holds config.json and model.safetensors"
    )]
    MissingConfig(PathBuf),
    #[error(transparent)]
    Config(#[from] BundleError),
    #[error("{0}: no model.safetensors (nor model.safetensors.index.json with shards)")]
    MissingWeights(PathBuf),
    /// The files, or a tensor in them (shared with the DAC reader).
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("{file}: neither the nari-labs layout (`encoder.embedding.weight`) nor the transformers layout (`model.encoder.embedding.weight`) was found")]
    UnknownLayout { file: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Nari,
    Transformers,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Nari => "nari",
            Layout::Transformers => "transformers",
        }
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// An opened checkpoint. Cheap: tensors are read on demand.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: DiaConfig,
    pub layout: Layout,
    files: TensorFiles,
}

/// How a nari-named weight is found in a transformers-layout file.
enum Source {
    /// Same shape and data.
    Same(String),
    /// A Linear `[out, in]` matrix holding the transposed kernel.
    Transposed { name: String, shape: [usize; 2] },
    /// Rows `start..start+rows` of a `[total, cols]` table.
    Rows {
        name: String,
        table: [usize; 2],
        start: usize,
    },
}

fn transformers_source(nari: &str, shape: &[usize], cfg: &DiaConfig) -> Source {
    let prod = |s: &[usize]| s.iter().product::<usize>();
    let model = |n: &str| format!("model.{n}");
    if let Some(c) = nari
        .strip_prefix("decoder.embeddings.")
        .and_then(|r| r.strip_suffix(".weight"))
    {
        let c: usize = c.parse().expect("channel index");
        let v = cfg.decoder_config.vocab_size;
        return Source::Rows {
            name: "model.decoder.embeddings.embed.weight".into(),
            table: [cfg.decoder_config.num_channels * v, shape[1]],
            start: c * v,
        };
    }
    if nari == "decoder.logits_dense.weight" {
        return Source::Transposed {
            name: "logits_dense.weight".into(),
            shape: [prod(&shape[1..]), shape[0]],
        };
    }
    for proj in ["q_proj", "k_proj", "v_proj"] {
        if nari.ends_with(&format!(".{proj}.weight")) {
            return Source::Transposed {
                name: model(nari),
                shape: [prod(&shape[1..]), shape[0]],
            };
        }
    }
    if nari.ends_with(".o_proj.weight") {
        return Source::Transposed {
            name: model(nari),
            shape: [shape[2], shape[0] * shape[1]],
        };
    }
    if nari.ends_with(".mlp.wi_fused.weight") {
        return Source::Transposed {
            name: model(&nari.replace("wi_fused", "gate_up_proj")),
            shape: [shape[1] * shape[2], shape[0]],
        };
    }
    if nari.ends_with(".mlp.wo.weight") {
        return Source::Transposed {
            name: model(&nari.replace(".wo.", ".down_proj.")),
            shape: [shape[1], shape[0]],
        };
    }
    Source::Same(model(nari))
}

/// Every weight a Dia checkpoint must hold, by nari name, with its nari shape.
pub fn expected_tensors(cfg: &DiaConfig) -> Vec<(String, Vec<usize>)> {
    let e = &cfg.encoder_config;
    let d = &cfg.decoder_config;
    let mut out = vec![(
        "encoder.embedding.weight".to_string(),
        vec![e.vocab_size, e.hidden_size],
    )];
    for i in 0..e.num_hidden_layers {
        let p = format!("encoder.layers.{i}");
        let (h, kv, hd, dim) = (
            e.num_attention_heads,
            e.num_key_value_heads,
            e.head_dim,
            e.hidden_size,
        );
        out.extend([
            (format!("{p}.pre_sa_norm.weight"), vec![dim]),
            (
                format!("{p}.self_attention.q_proj.weight"),
                vec![dim, h, hd],
            ),
            (
                format!("{p}.self_attention.k_proj.weight"),
                vec![dim, kv, hd],
            ),
            (
                format!("{p}.self_attention.v_proj.weight"),
                vec![dim, kv, hd],
            ),
            (
                format!("{p}.self_attention.o_proj.weight"),
                vec![h, hd, dim],
            ),
            (format!("{p}.post_sa_norm.weight"), vec![dim]),
            (
                format!("{p}.mlp.wi_fused.weight"),
                vec![dim, 2, e.intermediate_size],
            ),
            (format!("{p}.mlp.wo.weight"), vec![e.intermediate_size, dim]),
        ]);
    }
    out.push(("encoder.norm.weight".into(), vec![e.hidden_size]));
    for c in 0..d.num_channels {
        out.push((
            format!("decoder.embeddings.{c}.weight"),
            vec![d.vocab_size, d.hidden_size],
        ));
    }
    for i in 0..d.num_hidden_layers {
        let p = format!("decoder.layers.{i}");
        let (h, kv, hd, dim) = (
            d.num_attention_heads,
            d.num_key_value_heads,
            d.head_dim,
            d.hidden_size,
        );
        let (ch, ckv, chd) = (
            d.cross_num_attention_heads,
            d.cross_num_key_value_heads,
            d.cross_head_dim,
        );
        out.extend([
            (format!("{p}.pre_sa_norm.weight"), vec![dim]),
            (
                format!("{p}.self_attention.q_proj.weight"),
                vec![dim, h, hd],
            ),
            (
                format!("{p}.self_attention.k_proj.weight"),
                vec![dim, kv, hd],
            ),
            (
                format!("{p}.self_attention.v_proj.weight"),
                vec![dim, kv, hd],
            ),
            (
                format!("{p}.self_attention.o_proj.weight"),
                vec![h, hd, dim],
            ),
            (format!("{p}.pre_ca_norm.weight"), vec![dim]),
            (
                format!("{p}.cross_attention.q_proj.weight"),
                vec![dim, ch, chd],
            ),
            (
                format!("{p}.cross_attention.k_proj.weight"),
                vec![d.cross_hidden_size, ckv, chd],
            ),
            (
                format!("{p}.cross_attention.v_proj.weight"),
                vec![d.cross_hidden_size, ckv, chd],
            ),
            (
                format!("{p}.cross_attention.o_proj.weight"),
                vec![ch, chd, dim],
            ),
            (format!("{p}.pre_mlp_norm.weight"), vec![dim]),
            (
                format!("{p}.mlp.wi_fused.weight"),
                vec![dim, 2, d.intermediate_size],
            ),
            (format!("{p}.mlp.wo.weight"), vec![d.intermediate_size, dim]),
        ]);
    }
    out.push(("decoder.norm.weight".into(), vec![d.hidden_size]));
    out.push((
        "decoder.logits_dense.weight".into(),
        vec![d.hidden_size, d.num_channels, d.vocab_size],
    ));
    out
}

/// The shard files `model.safetensors.index.json` names: the distinct values of its
/// `weight_map`, each a plain file name in `dir`.
fn shard_files(dir: &Path, index: &Path) -> Result<Vec<PathBuf>, CheckpointError> {
    let corrupt = |detail: String| {
        CheckpointError::from(WeightsError::Corrupt {
            file: index.to_path_buf(),
            detail,
        })
    };
    let text = std::fs::read_to_string(index).map_err(WeightsError::io(index))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
    let map = v
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| corrupt("no `weight_map` object naming the shard files".into()))?;
    let mut names = Vec::new();
    for (tensor, file) in map {
        let name = file.as_str().filter(|f| {
            let p = Path::new(f);
            p.file_name().is_some_and(|n| n == p.as_os_str()) && *f != ".."
        });
        match name {
            Some(n) => names.push(n.to_string()),
            None => {
                return Err(corrupt(format!(
                    "`weight_map` puts `{tensor}` in {file}, which is not a file name in the \
                     checkpoint directory"
                )))
            }
        }
    }
    names.sort();
    names.dedup();
    // (No names at all reached `TensorFiles::first_path` of no files: an index panic.)
    if names.is_empty() {
        return Err(corrupt("`weight_map` names no shard files".into()));
    }
    Ok(names.into_iter().map(|n| dir.join(n)).collect())
}

impl Checkpoint {
    /// Opens `dir`, parses its config and the safetensors headers, detects the layout and
    /// checks that every expected tensor is present with the right shape and a float type.
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(CheckpointError::MissingConfig(dir.to_path_buf()));
        }
        let config = DiaConfig::from_file(&config_path)?;

        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            shard_files(dir, &index)?
        } else {
            return Err(CheckpointError::MissingWeights(dir.to_path_buf()));
        };

        let tf = TensorFiles::open(files)?;
        let layout = if tf.contains("encoder.embedding.weight") {
            Layout::Nari
        } else if tf.contains("model.encoder.embedding.weight") {
            Layout::Transformers
        } else {
            return Err(CheckpointError::UnknownLayout {
                file: tf.first_path().to_path_buf(),
            });
        };
        let ckpt = Checkpoint {
            dir: dir.to_path_buf(),
            config,
            layout,
            files: tf,
        };
        ckpt.validate()?;
        Ok(ckpt)
    }

    /// The file-level tensor a nari-named weight comes from, with the shape it must have.
    fn locate(&self, nari: &str, shape: &[usize]) -> (String, Vec<usize>, Source) {
        match self.layout {
            Layout::Nari => (
                nari.to_string(),
                shape.to_vec(),
                Source::Same(nari.to_string()),
            ),
            Layout::Transformers => {
                let src = transformers_source(nari, shape, &self.config);
                let (name, file_shape) = match &src {
                    Source::Same(n) => (n.clone(), shape.to_vec()),
                    Source::Transposed { name, shape } => (name.clone(), shape.to_vec()),
                    Source::Rows { name, table, .. } => (name.clone(), table.to_vec()),
                };
                (name, file_shape, src)
            }
        }
    }

    fn check_entry(&self, name: &str, shape: &[usize]) -> Result<(), CheckpointError> {
        let at = Expected {
            model: "Dia",
            layout: self.layout.name(),
        };
        Ok(self.files.check(name, shape, at)?)
    }

    /// Checks every weight the config implies, before anything is written.
    pub fn validate(&self) -> Result<(), CheckpointError> {
        self.check_layer_counts()?;
        for (nari, shape) in expected_tensors(&self.config) {
            let (name, file_shape, _) = self.locate(&nari, &shape);
            self.check_entry(&name, &file_shape)?;
        }
        Ok(())
    }

    /// A layer count larger than the number of tensors in the files cannot be right, and
    /// listing every tensor it implies first would cost time and memory in proportion to the
    /// claim (config.json allows 2^20 layers: 13 million names). Names the first missing layer
    /// instead. (The channel count is bounded: `delay_pattern` lists one delay per channel.)
    fn check_layer_counts(&self) -> Result<(), CheckpointError> {
        let held = self.files.len();
        let (e, d) = (&self.config.encoder_config, &self.config.decoder_config);
        for (side, count, dim) in [
            ("encoder", e.num_hidden_layers, e.hidden_size),
            ("decoder", d.num_hidden_layers, d.hidden_size),
        ] {
            if count > held {
                // Each layer has its own norm weight: one of the first held + 1 is missing.
                for i in 0..=held {
                    let nari = format!("{side}.layers.{i}.pre_sa_norm.weight");
                    let (name, shape, _) = self.locate(&nari, &[dim]);
                    self.check_entry(&name, &shape)?;
                }
            }
        }
        Ok(())
    }

    fn read_entry(&self, name: &str, shape: &[usize]) -> Result<Tensor, CheckpointError> {
        self.check_entry(name, shape)?;
        Ok(self.files.read(name))
    }

    /// A weight by its nari name, decoded to float32 and laid out in the nari shape `shape`.
    pub fn get(&self, nari: &str, shape: &[usize]) -> Result<Tensor, CheckpointError> {
        let (name, file_shape, src) = self.locate(nari, shape);
        let t = self.read_entry(&name, &file_shape)?;
        Ok(match src {
            Source::Same(_) => t,
            Source::Transposed { .. } => t.transpose2().reshape(shape.to_vec()),
            Source::Rows { table, start, .. } => {
                let cols = table[1];
                let rows = shape[0];
                Tensor::new(
                    shape.to_vec(),
                    t.data[start * cols..(start + rows) * cols].to_vec(),
                )
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> DiaConfig {
        let text = r#"{"encoder_config":{"hidden_size":8,"intermediate_size":12,"num_hidden_layers":1,
          "num_attention_heads":2,"num_key_value_heads":2,"head_dim":4,"max_position_embeddings":16,"vocab_size":256},
          "decoder_config":{"hidden_size":6,"intermediate_size":10,"num_hidden_layers":1,"num_attention_heads":4,
          "num_key_value_heads":2,"head_dim":4,"cross_num_attention_heads":2,"cross_num_key_value_heads":2,
          "cross_head_dim":4,"cross_hidden_size":8,"max_position_embeddings":32,"vocab_size":1028,"num_channels":9}}"#;
        DiaConfig::from_json_str(text, "t").unwrap()
    }

    /// Each nari weight maps to one transformers tensor of the documented name and shape.
    #[test]
    fn transformers_names_and_shapes_per_tensor() {
        let cfg = tiny();
        let expect = |nari: &str| {
            let shape = expected_tensors(&cfg)
                .into_iter()
                .find(|(n, _)| n == nari)
                .unwrap()
                .1;
            match transformers_source(nari, &shape, &cfg) {
                Source::Same(n) => (n, shape),
                Source::Transposed { name, shape } => (name, shape.to_vec()),
                Source::Rows { name, table, start } => (format!("{name}@{start}"), table.to_vec()),
            }
        };
        let cases: &[(&str, &str, &[usize])] = &[
            (
                "encoder.embedding.weight",
                "model.encoder.embedding.weight",
                &[256, 8],
            ),
            (
                "encoder.layers.0.pre_sa_norm.weight",
                "model.encoder.layers.0.pre_sa_norm.weight",
                &[8],
            ),
            (
                "encoder.layers.0.post_sa_norm.weight",
                "model.encoder.layers.0.post_sa_norm.weight",
                &[8],
            ),
            (
                "encoder.layers.0.self_attention.q_proj.weight",
                "model.encoder.layers.0.self_attention.q_proj.weight",
                &[8, 8],
            ),
            (
                "encoder.layers.0.self_attention.k_proj.weight",
                "model.encoder.layers.0.self_attention.k_proj.weight",
                &[8, 8],
            ),
            (
                "encoder.layers.0.self_attention.v_proj.weight",
                "model.encoder.layers.0.self_attention.v_proj.weight",
                &[8, 8],
            ),
            (
                "encoder.layers.0.self_attention.o_proj.weight",
                "model.encoder.layers.0.self_attention.o_proj.weight",
                &[8, 8],
            ),
            (
                "encoder.layers.0.mlp.wi_fused.weight",
                "model.encoder.layers.0.mlp.gate_up_proj.weight",
                &[24, 8],
            ),
            (
                "encoder.layers.0.mlp.wo.weight",
                "model.encoder.layers.0.mlp.down_proj.weight",
                &[8, 12],
            ),
            ("encoder.norm.weight", "model.encoder.norm.weight", &[8]),
            (
                "decoder.embeddings.0.weight",
                "model.decoder.embeddings.embed.weight@0",
                &[9 * 1028, 6],
            ),
            (
                "decoder.embeddings.3.weight",
                "model.decoder.embeddings.embed.weight@3084",
                &[9 * 1028, 6],
            ),
            (
                "decoder.layers.0.self_attention.q_proj.weight",
                "model.decoder.layers.0.self_attention.q_proj.weight",
                &[16, 6],
            ),
            (
                "decoder.layers.0.self_attention.k_proj.weight",
                "model.decoder.layers.0.self_attention.k_proj.weight",
                &[8, 6],
            ),
            (
                "decoder.layers.0.self_attention.v_proj.weight",
                "model.decoder.layers.0.self_attention.v_proj.weight",
                &[8, 6],
            ),
            (
                "decoder.layers.0.self_attention.o_proj.weight",
                "model.decoder.layers.0.self_attention.o_proj.weight",
                &[6, 16],
            ),
            (
                "decoder.layers.0.cross_attention.q_proj.weight",
                "model.decoder.layers.0.cross_attention.q_proj.weight",
                &[8, 6],
            ),
            (
                "decoder.layers.0.cross_attention.k_proj.weight",
                "model.decoder.layers.0.cross_attention.k_proj.weight",
                &[8, 8],
            ),
            (
                "decoder.layers.0.cross_attention.v_proj.weight",
                "model.decoder.layers.0.cross_attention.v_proj.weight",
                &[8, 8],
            ),
            (
                "decoder.layers.0.cross_attention.o_proj.weight",
                "model.decoder.layers.0.cross_attention.o_proj.weight",
                &[6, 8],
            ),
            (
                "decoder.layers.0.pre_sa_norm.weight",
                "model.decoder.layers.0.pre_sa_norm.weight",
                &[6],
            ),
            (
                "decoder.layers.0.pre_ca_norm.weight",
                "model.decoder.layers.0.pre_ca_norm.weight",
                &[6],
            ),
            (
                "decoder.layers.0.pre_mlp_norm.weight",
                "model.decoder.layers.0.pre_mlp_norm.weight",
                &[6],
            ),
            (
                "decoder.layers.0.mlp.wi_fused.weight",
                "model.decoder.layers.0.mlp.gate_up_proj.weight",
                &[20, 6],
            ),
            (
                "decoder.layers.0.mlp.wo.weight",
                "model.decoder.layers.0.mlp.down_proj.weight",
                &[6, 10],
            ),
            ("decoder.norm.weight", "model.decoder.norm.weight", &[6]),
            (
                "decoder.logits_dense.weight",
                "logits_dense.weight",
                &[9 * 1028, 6],
            ),
        ];
        for (nari, hf, shape) in cases {
            assert_eq!(expect(nari), (hf.to_string(), shape.to_vec()), "{nari}");
        }
        // Every expected tensor is covered by the cases above (per layer kind).
        let kinds: std::collections::HashSet<String> = expected_tensors(&cfg)
            .into_iter()
            .map(|(n, _)| n.replace(|c: char| c.is_ascii_digit(), "#"))
            .collect();
        let covered: std::collections::HashSet<String> = cases
            .iter()
            .map(|(n, _, _)| n.replace(|c: char| c.is_ascii_digit(), "#"))
            .collect();
        assert!(
            kinds.is_subset(&covered),
            "{:?}",
            kinds.difference(&covered)
        );
    }
}
