//! The generation loop, step for step as nari-labs `Dia.generate`: BOS prefill with the delay
//! pattern, one decoder step per frame with CFG and sampling, the EOS countdown that closes
//! every channel in delay order, and the delay reverted on the way out.

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::decoder::Utterance;
use crate::delay::{delayed_prefill, revert, Frames};
use crate::error::RuntimeError;
use crate::model::DiaModel;
use crate::sampler::{Sampler, SamplingParams};
use crate::tokenizer::encode_text;

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
    pub step: usize,
    pub max_steps: usize,
    pub elapsed_s: f64,
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
    fn validate(&self, max_frames: usize, vocab: usize) -> Result<usize, RuntimeError> {
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

impl DiaModel {
    /// Generates audio codes for `text` (e.g. `"[S1] Hello. [S2] Hi!"`).
    pub fn generate(
        &self,
        text: &str,
        opts: &GenerateOptions,
        mut progress: impl FnMut(Progress),
    ) -> Result<Generation, RuntimeError> {
        let m = self.manifest();
        let cfg = &m.config;
        let d = &cfg.decoder_config;
        let max_tokens = opts.validate(m.max_frames, d.vocab_size)?;
        let tokens = encode_text(text, m.max_text_len)?;

        let t0 = Instant::now();
        let mut utt = Utterance::new(self, &tokens)?;
        let encoder_s = t0.elapsed().as_secs_f64();

        let c = d.num_channels;
        let delay = &cfg.delay_pattern;
        let max_delay = cfg.max_delay();
        let (eos, pad) = (cfg.eos_token_id, cfg.pad_token_id);

        // Generated (delayed) frames; -1 marks slots the model is still to write.
        let prompt = opts.audio_prompt.as_ref();
        if let Some(p) = prompt {
            if p.channels != c {
                return Err(RuntimeError::InvalidOption(format!(
                    "the voice prompt has {} codebooks but the model {c}",
                    p.channels
                )));
            }
        }
        let prefill = delayed_prefill(prompt, delay, cfg.bos_token_id);
        // BOS frame plus the prompt's frames.
        let prefill_steps = 1 + prompt.map_or(0, |p| p.len());
        if prefill_steps >= max_tokens {
            return Err(RuntimeError::InvalidOption(format!(
                "the voice prompt is {} frames, which leaves no room in --max-tokens {max_tokens}",
                prefill_steps - 1
            )));
        }
        let mut frames = Frames::new(max_tokens + max_delay + 1, c);
        frames.data[..prefill.data.len()].copy_from_slice(&prefill.data);
        // Prefill: the prompt frames go through the decoder to fill the cache; their logits
        // are not needed (the reference runs them as one causal pass; a step at a time is the
        // same computation).
        let mut input = vec![0i64; c];
        for t in 0..prefill_steps - 1 {
            input.copy_from_slice(frames.row(t));
            utt.step(&input, t)?;
        }

        let params = SamplingParams {
            cfg_scale: opts.cfg_scale,
            cfg_filter_top_k: opts.cfg_filter_top_k,
            temperature: opts.temperature,
            top_p: opts.top_p,
        };
        let mut sampler = Sampler::new(c, d.vocab_size, eos as usize);
        let mut rng = match opts.seed {
            Some(s) => ChaCha8Rng::seed_from_u64(s),
            None => ChaCha8Rng::from_entropy(),
        };
        let mut pred = vec![0i64; c];

        let mut dec_step = prefill_steps - 1;
        let mut eos_detected = false;
        let mut countdown: i64 = -1;
        let mut finished_step: Option<usize> = None;
        let mut eos_step = None;
        let mut bos_over = false;
        let t1 = Instant::now();
        let mut first_step_s = 0.0;
        let mut sample_s = 0.0;

        while dec_step < max_tokens {
            if countdown == 0 {
                break;
            }
            let current = dec_step + 1;
            input.copy_from_slice(frames.row(dec_step));
            let logits = utt.step(&input, dec_step)?;
            let ts = Instant::now();
            sampler.sample(logits, &params, &mut rng, &mut pred);
            sample_s += ts.elapsed().as_secs_f64();
            if dec_step == prefill_steps - 1 {
                first_step_s = t1.elapsed().as_secs_f64();
            }

            let is_eos = !eos_detected && pred[0] == eos && !opts.ignore_eos;
            let is_max_len = current >= max_tokens.saturating_sub(max_delay);
            if is_eos && eos_step.is_none() {
                eos_step = Some(dec_step);
            }
            if is_eos || is_max_len {
                eos_detected = true;
                if countdown < 0 {
                    countdown = max_delay as i64;
                    finished_step = Some(current);
                }
            }
            if countdown > 0 {
                let after = max_delay as i64 - countdown;
                for (p, &dl) in pred.iter_mut().zip(delay) {
                    if after == dl {
                        *p = eos;
                    } else if after > dl {
                        *p = pad;
                    }
                }
                countdown -= 1;
            }
            if !bos_over {
                bos_over = dec_step as i64 - prefill_steps as i64 > max_delay as i64;
            }
            let row = frames.row_mut(current);
            for (slot, &p) in row.iter_mut().zip(&pred) {
                if bos_over || *slot == -1 {
                    *slot = p;
                }
            }
            dec_step += 1;
            progress(Progress {
                step: dec_step,
                max_steps: max_tokens,
                elapsed_s: t1.elapsed().as_secs_f64(),
            });
        }
        let decode_s = t1.elapsed().as_secs_f64();

        let final_step = dec_step + 1;
        let finished = finished_step.unwrap_or(final_step.saturating_sub(max_delay));
        let length = finished.saturating_sub(prefill_steps);
        let total = length + max_delay;
        let mut out = Frames::new(total, c);
        for t in 0..total {
            let src = prefill_steps + t;
            if src < frames.len() {
                out.row_mut(t).copy_from_slice(frames.row(src));
            } else {
                out.row_mut(t).fill(pad);
            }
        }
        let codes = revert(&out, delay, eos);
        Ok(Generation {
            codes,
            steps: dec_step,
            eos_step,
            encoder_s,
            first_step_s,
            decode_s,
            step_timings: utt.timings,
            sample_s,
        })
    }
}
