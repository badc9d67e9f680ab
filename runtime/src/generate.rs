//! Generation's options and results, shared by [`crate::Generator`] and
//! [`crate::DiaModel::generate`].

use crate::delay::Frames;
use crate::error::RuntimeError;

/// `generate()` arguments, with the reference's meanings and defaults.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Most decoder steps (frames including the delay tail); default: the bundle's max frames.
    pub max_tokens: Option<usize>,
    pub cfg_scale: f32,
    pub temperature: f32,
    pub top_p: f32,
    pub cfg_filter_top_k: usize,
    /// Seed of the sampler's RNG (same seed, same tokens); random when `None`.
    pub seed: Option<u64>,
    /// Codes `[frames, C]` of a voice prompt (its transcript goes at the start of the text),
    /// prefilled into the decoder as the reference's `audio_prompt`.
    pub audio_prompt: Option<Frames>,
    /// Benchmarks only: run all `max_tokens` steps even if channel 0 says EOS, so runs of
    /// different models take the same number of steps.
    pub ignore_eos: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_tokens: None,
            cfg_scale: 3.0,
            temperature: 1.2,
            top_p: 0.95,
            cfg_filter_top_k: 45,
            seed: None,
            audio_prompt: None,
            ignore_eos: false,
        }
    }
}

/// Progress reported after every step.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// Decoder steps run (prefill included).
    pub step: usize,
    pub max_steps: usize,
    /// Seconds since the first generated step started.
    pub elapsed_s: f64,
    /// Delay-reverted frames complete so far.
    pub frames: usize,
}

/// What a generation produced.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Delay-reverted codes `[frames, channels]`, codes outside the codebook set to 0:
    /// exactly what the reference hands to the DAC decoder.
    pub codes: Frames,
    /// Decoder steps run.
    pub steps: usize,
    /// The step whose channel-0 token was EOS, if any.
    pub eos_step: Option<usize>,
    pub encoder_s: f64,
    pub first_step_s: f64,
    pub decode_s: f64,
    /// Where the decode time went: the decoder's share per part, and the sampler's.
    pub step_timings: crate::decoder::StepTimings,
    pub sample_s: f64,
}

impl GenerateOptions {
    /// Checks every option; returns the step budget.
    pub(crate) fn validate(&self, max_frames: usize, vocab: usize) -> Result<usize, RuntimeError> {
        let max_tokens = self.max_tokens.unwrap_or(max_frames);
        if max_tokens == 0 || max_tokens > max_frames {
            return Err(RuntimeError::InvalidOption(format!(
                "--max-tokens {max_tokens} must be between 1 and the bundle's {max_frames} frames \
                 (export with a larger --max-frames for longer audio)"
            )));
        }
        if self.cfg_filter_top_k == 0 || self.cfg_filter_top_k > vocab {
            return Err(RuntimeError::InvalidOption(format!(
                "--cfg-filter-top-k {} must be between 1 and {vocab}",
                self.cfg_filter_top_k
            )));
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(RuntimeError::InvalidOption(
                "--temperature must be >= 0".into(),
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(RuntimeError::InvalidOption(
                "--top-p must be in (0, 1]".into(),
            ));
        }
        if !self.cfg_scale.is_finite() {
            return Err(RuntimeError::InvalidOption(
                "--cfg-scale must be finite".into(),
            ));
        }
        Ok(max_tokens)
    }
}
