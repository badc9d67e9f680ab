//! The codec's hyper-parameters: [`DacConfig`], read from a `config.json` with transformers'
//! keys or descript's. The file is deserialised once into `RawConfig` (every key optional,
//! both namings), then normalised (defaults and derived values) and validated.

use std::num::NonZeroUsize;
use std::path::Path;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};

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

/// A DAC `config.json` that cannot be read, or does not describe a codec the graphs can build.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {msg}")]
pub struct DacConfigError {
    pub path: String,
    pub msg: String,
}

/// A DAC `config.json` as written, in either naming: transformers' key, then descript's
/// (`metadata.kwargs` of its `weights.pth`). Every key is optional (`null` counts as absent)
/// and other keys are ignored. A value of the wrong type deserialises as `Lenient(None)`, so
/// that `RawConfig::normalise` names the key it was under.
#[derive(Deserialize)]
struct RawConfig {
    model_type: Option<Lenient<String>>,
    encoder_hidden_size: Option<Lenient<NonZeroUsize>>,
    encoder_dim: Option<Lenient<NonZeroUsize>>,
    downsampling_ratios: Option<Lenient<Ratios>>,
    encoder_rates: Option<Lenient<Ratios>>,
    decoder_hidden_size: Option<Lenient<NonZeroUsize>>,
    decoder_dim: Option<Lenient<NonZeroUsize>>,
    upsampling_ratios: Option<Lenient<Ratios>>,
    decoder_rates: Option<Lenient<Ratios>>,
    hidden_size: Option<Lenient<NonZeroUsize>>,
    latent_dim: Option<Lenient<NonZeroUsize>>,
    hop_length: Option<Lenient<NonZeroUsize>>,
    n_codebooks: Option<Lenient<NonZeroUsize>>,
    codebook_size: Option<Lenient<NonZeroUsize>>,
    codebook_dim: Option<Lenient<NonZeroUsize>>,
    sampling_rate: Option<Lenient<NonZeroUsize>>,
    sample_rate: Option<Lenient<NonZeroUsize>>,
}

/// A value of type `T`, or `None` when config.json holds something else in its place.
struct Lenient<T>(Option<T>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Ok(Self(T::deserialize(v).ok()))
    }
}

/// Strides: a non-empty list of positive integers.
#[derive(Clone)]
struct Ratios(Vec<usize>);

impl<'de> Deserialize<'de> for Ratios {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<NonZeroUsize>::deserialize(d)?;
        if v.is_empty() {
            return Err(D::Error::invalid_length(0, &"at least one stride"));
        }
        Ok(Self(v.into_iter().map(NonZeroUsize::get).collect()))
    }
}

/// What a key's value must be, for messages.
trait Expecting {
    const EXPECTING: &'static str;
}

impl Expecting for NonZeroUsize {
    const EXPECTING: &'static str = "a positive integer";
}

impl Expecting for Ratios {
    const EXPECTING: &'static str = "a list of positive integers";
}

/// The value of the first of `keys` that config.json sets; an error naming that key if its
/// value has the wrong type.
fn pick<T: Expecting, const N: usize>(
    keys: [(&str, Option<Lenient<T>>); N],
) -> Result<Option<T>, String> {
    match keys.into_iter().find_map(|(k, v)| Some((k, v?))) {
        None => Ok(None),
        Some((_, Lenient(Some(x)))) => Ok(Some(x)),
        Some((k, Lenient(None))) => Err(format!("`{k}` must be {}", T::EXPECTING)),
    }
}

/// A size under the first of `keys` that config.json sets, else `default`.
fn size<const N: usize>(
    keys: [(&str, Option<Lenient<NonZeroUsize>>); N],
    default: usize,
) -> Result<usize, String> {
    Ok(pick(keys)?.map_or(default, NonZeroUsize::get))
}

/// The message for an `encoder_hidden_size` that the encoder blocks double past `usize`.
fn doubling_overflows(encoder_hidden_size: usize, blocks: usize) -> String {
    format!(
        "encoder_hidden_size {encoder_hidden_size} doubled by {blocks} encoder blocks overflows"
    )
}

impl RawConfig {
    /// The config these keys describe. Keys left out take the 44.1 kHz codec's values, except
    /// those derived from others (upsampling ratios reverse the downsampling ones, the latent
    /// is `encoder_hidden_size · 2^blocks`, the hop the product of the ratios), as
    /// transformers' `DacConfig` derives them.
    fn normalise(self) -> Result<DacConfig, String> {
        if let Some(Lenient(Some(t))) = &self.model_type {
            if t != "dac" {
                return Err(format!(
                    "model_type is `{t}`, not `dac`: is this the DAC's directory?"
                ));
            }
        }
        let d = DacConfig::dac_44khz();
        let encoder_hidden_size = size(
            [
                ("encoder_hidden_size", self.encoder_hidden_size),
                ("encoder_dim", self.encoder_dim),
            ],
            d.encoder_hidden_size,
        )?;
        let downsampling_ratios = match pick([
            ("downsampling_ratios", self.downsampling_ratios),
            ("encoder_rates", self.encoder_rates),
        ])? {
            Some(r) => r.0,
            None => d.downsampling_ratios,
        };
        let upsampling_ratios = match pick([
            ("upsampling_ratios", self.upsampling_ratios),
            ("decoder_rates", self.decoder_rates),
        ])? {
            Some(r) => r.0,
            None => downsampling_ratios.iter().rev().cloned().collect(),
        };
        let blocks = downsampling_ratios.len();
        let hidden_size = match pick([
            ("hidden_size", self.hidden_size),
            ("latent_dim", self.latent_dim),
        ])? {
            Some(h) => h.get(),
            None => doubled(encoder_hidden_size, blocks)
                .ok_or_else(|| doubling_overflows(encoder_hidden_size, blocks))?,
        };
        let hop_length = match pick([("hop_length", self.hop_length)])? {
            Some(h) => h.get(),
            None => product(&downsampling_ratios).ok_or_else(|| {
                format!("the product of the downsampling ratios {downsampling_ratios:?} overflows")
            })?,
        };
        let decoder_hidden_size = size(
            [
                ("decoder_hidden_size", self.decoder_hidden_size),
                ("decoder_dim", self.decoder_dim),
            ],
            d.decoder_hidden_size,
        )?;
        let n_codebooks = size([("n_codebooks", self.n_codebooks)], d.n_codebooks)?;
        let codebook_size = size([("codebook_size", self.codebook_size)], d.codebook_size)?;
        let codebook_dim = size([("codebook_dim", self.codebook_dim)], d.codebook_dim)?;
        let sampling_rate = match pick([
            ("sampling_rate", self.sampling_rate),
            ("sample_rate", self.sample_rate),
        ])? {
            Some(r) => u32::try_from(r.get())
                .map_err(|_| format!("sampling_rate {r} Hz is out of range"))?,
            None => d.sampling_rate,
        };
        Ok(DacConfig {
            encoder_hidden_size,
            downsampling_ratios,
            decoder_hidden_size,
            upsampling_ratios,
            hidden_size,
            n_codebooks,
            codebook_size,
            codebook_dim,
            sampling_rate,
            hop_length,
        })
    }
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
    /// `encoder_rates`, `decoder_dim`, `decoder_rates`, `latent_dim`, `sample_rate`):
    /// deserialised, then normalised (keys left out take the 44.1 kHz codec's values or, for
    /// the upsampling ratios, the latent size and the hop, are derived from others, as
    /// transformers' `DacConfig` derives them), then [validated](Self::validate).
    pub fn from_json_str(text: &str, path: &str) -> Result<Self, DacConfigError> {
        let invalid = |msg: String| DacConfigError {
            path: path.to_string(),
            msg,
        };
        // Through a `Value`: a struct would also deserialise from a JSON array.
        let root: serde_json::Value =
            serde_json::from_str(text).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
        if !root.is_object() {
            return Err(invalid("not a JSON object".into()));
        }
        // Cannot fail: every field takes any value.
        let raw =
            RawConfig::deserialize(root).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
        let cfg = raw.normalise().map_err(invalid)?;
        cfg.validate().map_err(invalid)?;
        Ok(cfg)
    }

    pub fn from_file(path: &Path) -> Result<Self, DacConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| DacConfigError {
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
            return Err(doubling_overflows(
                self.encoder_hidden_size,
                self.downsampling_ratios.len(),
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny codec: 4 blocks, few channels, the 44.1 kHz codec's codebooks.
    pub(crate) fn tiny() -> DacConfig {
        DacConfig::from_json_str(
            r#"{"encoder_hidden_size":4,"downsampling_ratios":[2,4,8,8],"decoder_hidden_size":32,
               "n_codebooks":9,"codebook_size":1024,"codebook_dim":8,"sampling_rate":44100}"#,
            "t",
        )
        .unwrap()
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
}
