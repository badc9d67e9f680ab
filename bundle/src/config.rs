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

fn get<'a>(v: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    v.get(key).filter(|x| !x.is_null())
}

impl DiaConfig {
    /// Parses config.json of the nari-labs layout or the `transformers` layout. The two differ
    /// in where the token ids live (top level vs. `decoder_config`) and in how RoPE's theta is
    /// given (`rope_theta` vs. `rope_parameters.rope_theta`).
    pub fn from_json_str(text: &str, path: &str) -> Result<Self, BundleError> {
        let invalid = |msg: String| BundleError::Invalid {
            path: path.to_string(),
            msg,
        };
        let root: serde_json::Value =
            serde_json::from_str(text).map_err(|e| BundleError::Json {
                path: path.to_string(),
                source: e,
            })?;
        let enc = get(&root, "encoder_config")
            .ok_or_else(|| invalid("no `encoder_config` section: not a Dia config.json".into()))?;
        let dec = get(&root, "decoder_config")
            .ok_or_else(|| invalid("no `decoder_config` section: not a Dia config.json".into()))?;

        let usize_of =
            |sec: &serde_json::Value, name: &str, key: &str| -> Result<usize, BundleError> {
                get(sec, key)
                    .and_then(|v| v.as_u64())
                    .map(|v| v as usize)
                    .ok_or_else(|| {
                        invalid(format!(
                            "`{name}.{key}` is missing or not a positive integer"
                        ))
                    })
            };
        let theta = |sec: &serde_json::Value| -> f64 {
            get(sec, "rope_theta")
                .and_then(|v| v.as_f64())
                .or_else(|| {
                    get(sec, "rope_parameters")
                        .and_then(|p| get(p, "rope_theta"))
                        .and_then(|v| v.as_f64())
                })
                .or_else(|| get(&root, "rope_theta").and_then(|v| v.as_f64()))
                .unwrap_or(10000.0)
        };
        let eps = |sec: &serde_json::Value| -> f64 {
            get(sec, "norm_eps")
                .and_then(|v| v.as_f64())
                .or_else(|| get(&root, "norm_eps").and_then(|v| v.as_f64()))
                .unwrap_or(1e-5)
        };
        let token = |key: &str, default: i64| -> i64 {
            get(&root, key)
                .or_else(|| get(dec, key))
                .and_then(|v| v.as_i64())
                .unwrap_or(default)
        };

        let encoder_config = EncoderConfig {
            hidden_size: usize_of(enc, "encoder_config", "hidden_size")?,
            intermediate_size: usize_of(enc, "encoder_config", "intermediate_size")?,
            num_hidden_layers: usize_of(enc, "encoder_config", "num_hidden_layers")?,
            num_attention_heads: usize_of(enc, "encoder_config", "num_attention_heads")?,
            num_key_value_heads: usize_of(enc, "encoder_config", "num_key_value_heads")?,
            head_dim: usize_of(enc, "encoder_config", "head_dim")?,
            max_position_embeddings: usize_of(enc, "encoder_config", "max_position_embeddings")?,
            vocab_size: usize_of(enc, "encoder_config", "vocab_size")?,
            norm_eps: eps(enc),
            rope_theta: theta(enc),
        };
        let decoder_config = DecoderConfig {
            hidden_size: usize_of(dec, "decoder_config", "hidden_size")?,
            intermediate_size: usize_of(dec, "decoder_config", "intermediate_size")?,
            num_hidden_layers: usize_of(dec, "decoder_config", "num_hidden_layers")?,
            num_attention_heads: usize_of(dec, "decoder_config", "num_attention_heads")?,
            num_key_value_heads: usize_of(dec, "decoder_config", "num_key_value_heads")?,
            head_dim: usize_of(dec, "decoder_config", "head_dim")?,
            cross_num_attention_heads: usize_of(
                dec,
                "decoder_config",
                "cross_num_attention_heads",
            )?,
            cross_num_key_value_heads: usize_of(
                dec,
                "decoder_config",
                "cross_num_key_value_heads",
            )?,
            cross_head_dim: usize_of(dec, "decoder_config", "cross_head_dim")?,
            cross_hidden_size: usize_of(dec, "decoder_config", "cross_hidden_size")?,
            max_position_embeddings: usize_of(dec, "decoder_config", "max_position_embeddings")?,
            vocab_size: usize_of(dec, "decoder_config", "vocab_size")?,
            num_channels: usize_of(dec, "decoder_config", "num_channels")?,
            norm_eps: eps(dec),
            rope_theta: theta(dec),
        };
        let delay_pattern = match get(&root, "delay_pattern") {
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| invalid(format!("`delay_pattern`: {e}")))?,
            None => vec![0, 8, 9, 10, 11, 12, 13, 14, 15],
        };
        let cfg = DiaConfig {
            encoder_config,
            decoder_config,
            bos_token_id: token("bos_token_id", 1026),
            eos_token_id: token("eos_token_id", 1024),
            pad_token_id: token("pad_token_id", 1025),
            delay_pattern,
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
        if self.delay_pattern.iter().any(|&x| x < 0) {
            return Err("delay_pattern entries must be >= 0".into());
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
    fn delay_pattern_must_match_channels() {
        let text = NARI.replace("[0,8,9,10,11,12,13,14,15]", "[0,8,9]");
        let err = DiaConfig::from_json_str(&text, "c")
            .unwrap_err()
            .to_string();
        assert!(err.contains("delay_pattern has 3 entries"), "{err}");
    }
}
