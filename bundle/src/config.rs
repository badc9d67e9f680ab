//! Dia's model config, parsed from either checkpoint layout's `config.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::BundleError;

/// Encoder hyper-parameters (key names as in both layouts' config.json).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    /// The text length: every text is padded to it.
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    pub norm_eps: f64,
    pub rope_theta: f64,
}

/// Decoder hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub cross_num_attention_heads: usize,
    pub cross_num_key_value_heads: usize,
    pub cross_head_dim: usize,
    pub cross_hidden_size: usize,
    /// The most frames a generation can have (the self-attention cache length).
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    pub num_channels: usize,
    pub norm_eps: f64,
    pub rope_theta: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiaConfig {
    pub encoder_config: EncoderConfig,
    pub decoder_config: DecoderConfig,
    pub bos_token_id: i64,
    pub eos_token_id: i64,
    pub pad_token_id: i64,
    pub delay_pattern: Vec<i64>,
}

/// One section of config.json as either layout writes it: every key optional here, required
/// ones are checked by [`DiaConfig::from_json_str`] with a message naming them.
#[derive(Deserialize, Default)]
struct RawSection {
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    cross_num_attention_heads: Option<usize>,
    cross_num_key_value_heads: Option<usize>,
    cross_head_dim: Option<usize>,
    cross_hidden_size: Option<usize>,
    max_position_embeddings: Option<usize>,
    vocab_size: Option<usize>,
    num_channels: Option<usize>,
    norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_parameters: Option<RopeParameters>,
    bos_token_id: Option<i64>,
    eos_token_id: Option<i64>,
    pad_token_id: Option<i64>,
}

#[derive(Deserialize, Default)]
struct RopeParameters {
    rope_theta: Option<f64>,
}

#[derive(Deserialize)]
struct RawConfig {
    encoder_config: Option<RawSection>,
    decoder_config: Option<RawSection>,
    delay_pattern: Option<Vec<i64>>,
    norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    bos_token_id: Option<i64>,
    eos_token_id: Option<i64>,
    pad_token_id: Option<i64>,
}

/// The largest value any size in a config may take: far above Dia's, far below what would
/// make an export or a load allocate absurd amounts.
const MAX_DIM: usize = 1 << 20;

impl RawSection {
    /// A required size: present and in `1..=MAX_DIM`.
    fn size(&self, section: &str, key: &str, v: Option<usize>) -> Result<usize, String> {
        match v {
            Some(x) if (1..=MAX_DIM).contains(&x) => Ok(x),
            Some(x) => Err(format!("`{section}.{key}` is {x}, outside 1..={MAX_DIM}")),
            None => Err(format!("`{section}.{key}` is missing")),
        }
    }
    fn theta(&self, root: &RawConfig) -> f64 {
        self.rope_theta
            .or(self.rope_parameters.as_ref().and_then(|p| p.rope_theta))
            .or(root.rope_theta)
            .unwrap_or(10000.0)
    }
    fn eps(&self, root: &RawConfig) -> f64 {
        self.norm_eps.or(root.norm_eps).unwrap_or(1e-5)
    }
}

impl DiaConfig {
    /// Parses config.json of the nari-labs layout or the `transformers` layout (deserialised,
    /// then normalised). The two differ in where the token ids live (top level vs.
    /// `decoder_config`) and in how RoPE's theta is given (`rope_theta` vs.
    /// `rope_parameters.rope_theta`).
    pub fn from_json_str(text: &str, path: &str) -> Result<Self, BundleError> {
        let invalid = |msg: String| BundleError::Invalid {
            path: path.to_string(),
            msg,
        };
        // Errors name the key (`decoder_config.hidden_size: invalid type: ...`).
        let de = &mut serde_json::Deserializer::from_str(text);
        let root: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let at = e.path().to_string();
            let source = e.into_inner();
            if at == "." || source.is_syntax() || source.is_eof() {
                BundleError::Json {
                    path: path.to_string(),
                    source,
                }
            } else {
                invalid(format!("`{at}`: {source}"))
            }
        })?;
        let enc = root
            .encoder_config
            .as_ref()
            .ok_or_else(|| invalid("no `encoder_config` section: not a Dia config.json".into()))?;
        let dec = root
            .decoder_config
            .as_ref()
            .ok_or_else(|| invalid("no `decoder_config` section: not a Dia config.json".into()))?;
        let e = |key: &str, v: Option<usize>| enc.size("encoder_config", key, v).map_err(invalid);
        let d = |key: &str, v: Option<usize>| dec.size("decoder_config", key, v).map_err(invalid);

        let encoder_config = EncoderConfig {
            hidden_size: e("hidden_size", enc.hidden_size)?,
            intermediate_size: e("intermediate_size", enc.intermediate_size)?,
            num_hidden_layers: e("num_hidden_layers", enc.num_hidden_layers)?,
            num_attention_heads: e("num_attention_heads", enc.num_attention_heads)?,
            num_key_value_heads: e("num_key_value_heads", enc.num_key_value_heads)?,
            head_dim: e("head_dim", enc.head_dim)?,
            max_position_embeddings: e("max_position_embeddings", enc.max_position_embeddings)?,
            vocab_size: e("vocab_size", enc.vocab_size)?,
            norm_eps: enc.eps(&root),
            rope_theta: enc.theta(&root),
        };
        let decoder_config = DecoderConfig {
            hidden_size: d("hidden_size", dec.hidden_size)?,
            intermediate_size: d("intermediate_size", dec.intermediate_size)?,
            num_hidden_layers: d("num_hidden_layers", dec.num_hidden_layers)?,
            num_attention_heads: d("num_attention_heads", dec.num_attention_heads)?,
            num_key_value_heads: d("num_key_value_heads", dec.num_key_value_heads)?,
            head_dim: d("head_dim", dec.head_dim)?,
            cross_num_attention_heads: d(
                "cross_num_attention_heads",
                dec.cross_num_attention_heads,
            )?,
            cross_num_key_value_heads: d(
                "cross_num_key_value_heads",
                dec.cross_num_key_value_heads,
            )?,
            cross_head_dim: d("cross_head_dim", dec.cross_head_dim)?,
            cross_hidden_size: d("cross_hidden_size", dec.cross_hidden_size)?,
            max_position_embeddings: d("max_position_embeddings", dec.max_position_embeddings)?,
            vocab_size: d("vocab_size", dec.vocab_size)?,
            num_channels: d("num_channels", dec.num_channels)?,
            norm_eps: dec.eps(&root),
            rope_theta: dec.theta(&root),
        };
        let cfg = DiaConfig {
            encoder_config,
            decoder_config,
            bos_token_id: root.bos_token_id.or(dec.bos_token_id).unwrap_or(1026),
            eos_token_id: root.eos_token_id.or(dec.eos_token_id).unwrap_or(1024),
            pad_token_id: root.pad_token_id.or(dec.pad_token_id).unwrap_or(1025),
            delay_pattern: root
                .delay_pattern
                .clone()
                .unwrap_or_else(|| vec![0, 8, 9, 10, 11, 12, 13, 14, 15]),
        };
        cfg.validate().map_err(invalid)?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Self, BundleError> {
        let text = std::fs::read_to_string(path).map_err(|e| BundleError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// Checks the relations the graphs rely on.
    pub fn validate(&self) -> Result<(), String> {
        let e = &self.encoder_config;
        let d = &self.decoder_config;
        // The same bounds whichever way the config was read (config.json or a manifest).
        let sizes = [
            ("encoder_config.hidden_size", e.hidden_size),
            ("encoder_config.intermediate_size", e.intermediate_size),
            ("encoder_config.num_hidden_layers", e.num_hidden_layers),
            ("encoder_config.num_attention_heads", e.num_attention_heads),
            ("encoder_config.num_key_value_heads", e.num_key_value_heads),
            ("encoder_config.head_dim", e.head_dim),
            (
                "encoder_config.max_position_embeddings",
                e.max_position_embeddings,
            ),
            ("encoder_config.vocab_size", e.vocab_size),
            ("decoder_config.hidden_size", d.hidden_size),
            ("decoder_config.intermediate_size", d.intermediate_size),
            ("decoder_config.num_hidden_layers", d.num_hidden_layers),
            ("decoder_config.num_attention_heads", d.num_attention_heads),
            ("decoder_config.num_key_value_heads", d.num_key_value_heads),
            ("decoder_config.head_dim", d.head_dim),
            (
                "decoder_config.cross_num_attention_heads",
                d.cross_num_attention_heads,
            ),
            (
                "decoder_config.cross_num_key_value_heads",
                d.cross_num_key_value_heads,
            ),
            ("decoder_config.cross_head_dim", d.cross_head_dim),
            ("decoder_config.cross_hidden_size", d.cross_hidden_size),
            (
                "decoder_config.max_position_embeddings",
                d.max_position_embeddings,
            ),
            ("decoder_config.vocab_size", d.vocab_size),
            ("decoder_config.num_channels", d.num_channels),
        ];
        for (key, v) in sizes {
            if !(1..=MAX_DIM).contains(&v) {
                return Err(format!("`{key}` is {v}, outside 1..={MAX_DIM}"));
            }
        }
        if !e.num_attention_heads.is_multiple_of(e.num_key_value_heads) {
            return Err("encoder heads must be a multiple of its kv heads".into());
        }
        if !d.num_attention_heads.is_multiple_of(d.num_key_value_heads) {
            return Err("decoder heads must be a multiple of its kv heads".into());
        }
        if !d
            .cross_num_attention_heads
            .is_multiple_of(d.cross_num_key_value_heads)
        {
            return Err("decoder cross heads must be a multiple of its cross kv heads".into());
        }
        if !e.head_dim.is_multiple_of(2) || !d.head_dim.is_multiple_of(2) {
            return Err("RoPE needs an even head_dim".into());
        }
        if d.cross_hidden_size != e.hidden_size {
            return Err(format!(
                "decoder cross_hidden_size {} differs from encoder hidden_size {}",
                d.cross_hidden_size, e.hidden_size
            ));
        }
        if self.delay_pattern.len() != d.num_channels {
            return Err(format!(
                "delay_pattern has {} entries but the decoder has {} channels",
                self.delay_pattern.len(),
                d.num_channels
            ));
        }
        if self
            .delay_pattern
            .iter()
            .any(|&x| x < 0 || x as usize >= d.max_position_embeddings)
        {
            return Err(format!(
                "delay_pattern entries must be in 0..{} (the decoder's positions)",
                d.max_position_embeddings
            ));
        }
        for (name, x) in [
            ("encoder norm_eps", e.norm_eps),
            ("decoder norm_eps", d.norm_eps),
            ("encoder rope_theta", e.rope_theta),
            ("decoder rope_theta", d.rope_theta),
        ] {
            if !(x.is_finite() && x > 0.0) {
                return Err(format!("{name} must be a positive number, not {x}"));
            }
        }
        for (name, id) in [
            ("bos", self.bos_token_id),
            ("eos", self.eos_token_id),
            ("pad", self.pad_token_id),
        ] {
            if id < 0 || id as usize >= d.vocab_size {
                return Err(format!(
                    "{name}_token_id {id} is outside the audio vocabulary"
                ));
            }
        }
        Ok(())
    }

    pub fn max_delay(&self) -> usize {
        *self.delay_pattern.iter().max().unwrap_or(&0) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NARI: &str = r#"{"architectures":["DiaForConditionalGeneration"],"bos_token_id":1026,
      "decoder_config":{"cross_head_dim":128,"cross_hidden_size":1024,"cross_num_attention_heads":16,
      "cross_num_key_value_heads":16,"head_dim":128,"hidden_act":"silu","hidden_size":2048,
      "intermediate_size":8192,"max_position_embeddings":3072,"norm_eps":1e-05,"num_attention_heads":16,
      "num_channels":9,"num_hidden_layers":18,"num_key_value_heads":4,"rope_theta":10000.0,"vocab_size":1028},
      "delay_pattern":[0,8,9,10,11,12,13,14,15],
      "encoder_config":{"head_dim":128,"hidden_size":1024,"intermediate_size":4096,"max_position_embeddings":1024,
      "norm_eps":1e-05,"num_attention_heads":16,"num_hidden_layers":12,"num_key_value_heads":16,
      "rope_theta":10000.0,"vocab_size":256},"eos_token_id":1024,"pad_token_id":1025}"#;

    #[test]
    fn parses_nari_config() {
        let c = DiaConfig::from_json_str(NARI, "config.json").unwrap();
        assert_eq!(c.decoder_config.num_key_value_heads, 4);
        assert_eq!(c.encoder_config.max_position_embeddings, 1024);
        assert_eq!(c.max_delay(), 15);
        assert_eq!(c.eos_token_id, 1024);
    }

    #[test]
    fn parses_transformers_style_rope_and_token_ids() {
        let text = NARI
            .replace("\"bos_token_id\":1026,", "")
            .replace("\"rope_theta\":10000.0,\"vocab_size\":1028}", "\"rope_parameters\":{\"rope_theta\":500.0,\"rope_type\":\"default\"},\"vocab_size\":1028,\"bos_token_id\":7}");
        let c = DiaConfig::from_json_str(&text, "config.json").unwrap();
        assert_eq!(c.decoder_config.rope_theta, 500.0);
        assert_eq!(c.bos_token_id, 7);
    }

    #[test]
    fn missing_key_is_named() {
        let text = NARI.replace("\"num_channels\":9,", "");
        let err = DiaConfig::from_json_str(&text, "x/config.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("decoder_config.num_channels"), "{err}");
        assert!(err.contains("x/config.json"), "{err}");
    }

    #[test]
    fn wrong_types_and_absurd_sizes_name_the_key() {
        let text = NARI.replace("\"hidden_size\":2048", "\"hidden_size\":\"big\"");
        let err = DiaConfig::from_json_str(&text, "c")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("decoder_config.hidden_size") && err.contains("invalid type"),
            "{err}"
        );
        let text = NARI.replace("\"num_channels\":9", "\"num_channels\":0");
        let err = DiaConfig::from_json_str(&text, "c")
            .unwrap_err()
            .to_string();
        assert!(err.contains("decoder_config.num_channels` is 0"), "{err}");
        let text = NARI.replace("\"vocab_size\":256", "\"vocab_size\":99999999999");
        let err = DiaConfig::from_json_str(&text, "c")
            .unwrap_err()
            .to_string();
        assert!(err.contains("encoder_config.vocab_size"), "{err}");
        let text = NARI.replace(
            "[0,8,9,10,11,12,13,14,15]",
            "[0,8,9,10,11,12,13,14,1500000]",
        );
        let err = DiaConfig::from_json_str(&text, "c")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("delay_pattern entries must be in 0..3072"),
            "{err}"
        );
    }

    #[test]
    fn delay_pattern_must_match_channels() {
        let text = NARI.replace("[0,8,9,10,11,12,13,14,15]", "[0,8,9]");
        let err = DiaConfig::from_json_str(&text, "c")
            .unwrap_err()
            .to_string();
        assert!(err.contains("delay_pattern has 3 entries"), "{err}");
    }
}
