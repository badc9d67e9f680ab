//! One utterance's decoding, apart from where its decoder rows live: the delayed frames (BOS
//! and voice prompt prefill, then one row per step), sampling with its own RNG, the EOS
//! countdown, and the delay reverted as frames become complete.
//!
//! A [`Sequence`] says what to feed the decoder next ([`Sequence::next_input`]) and takes the
//! logits that came back ([`Sequence::accept`]). [`crate::Generator`] pairs one with a decoder
//! state of its own; [`crate::batch::Batch`] runs many in the rows of one step.

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use dia_bundle::DiaConfig;

use crate::delay::{delayed_prefill, revert_frame, Frames};
use crate::eos::EosCountdown;
use crate::error::RuntimeError;
use crate::generate::GenerateOptions;
use crate::sampler::{Sampler, SamplingParams};

pub struct Sequence {
    sampler: Sampler,
    params: SamplingParams,
    rng: ChaCha8Rng,
    countdown: EosCountdown,
    delay: Vec<i64>,
    codebook: i64,
    /// Delayed frames: the prefill, then one row per step; -1 where the model is still to
    /// write.
    delayed: Frames,
    /// Frames before the first generated one (BOS plus the voice prompt).
    prefill_steps: usize,
    max_tokens: usize,
    /// The next decoder step to run (its input is delayed row `step`).
    step: usize,
    /// Whether the prefill's BOS rows are behind every channel's delay: from then on every
    /// sampled token is written, before only slots still -1.
    bos_over: bool,
    pred: Vec<i64>,
    /// Delay-reverted frames handed out so far; `new_from` is where the last step's start.
    codes: Frames,
    new_from: usize,
    /// Seconds spent sampling.
    pub sample_s: f64,
}

impl Sequence {
    /// Validates the options for a model of `cfg` with a cache of `max_frames` and lays out the
    /// prefill (BOS and the options' voice prompt).
    pub fn new(
        cfg: &DiaConfig,
        max_frames: usize,
        opts: &GenerateOptions,
    ) -> Result<Self, RuntimeError> {
        let d = &cfg.decoder_config;
        let max_tokens = opts.validate(max_frames, d.vocab_size)?;
        let c = d.num_channels;
        let prompt = opts.audio_prompt.as_ref();
        if let Some(p) = prompt {
            if p.channels != c {
                return Err(RuntimeError::InvalidOption(format!(
                    "the voice prompt has {} codebooks but the model {c}",
                    p.channels
                )));
            }
        }
        let prefill_steps = 1 + prompt.map_or(0, |p| p.len());
        if prefill_steps >= max_tokens {
            return Err(RuntimeError::InvalidOption(format!(
                "the voice prompt is {} frames, which leaves no room in --max-tokens {max_tokens}",
                prefill_steps - 1
            )));
        }
        let delay = cfg.delay_pattern.clone();
        let max_delay = cfg.max_delay();
        let prefill = delayed_prefill(prompt, &delay, cfg.bos_token_id);
        let mut delayed = Frames::new(max_tokens + max_delay + 1, c);
        delayed.data[..prefill.data.len()].copy_from_slice(&prefill.data);
        Ok(Self {
            sampler: Sampler::new(c, d.vocab_size, cfg.eos_token_id as usize),
            params: SamplingParams {
                cfg_scale: opts.cfg_scale,
                cfg_filter_top_k: opts.cfg_filter_top_k,
                temperature: opts.temperature,
                top_p: opts.top_p,
            },
            rng: match opts.seed {
                Some(s) => ChaCha8Rng::seed_from_u64(s),
                None => ChaCha8Rng::from_entropy(),
            },
            countdown: EosCountdown::new(
                &delay,
                cfg.eos_token_id,
                cfg.pad_token_id,
                max_tokens,
                opts.ignore_eos,
            ),
            // Codes from EOS up (specials) become 0, as the reference clears them.
            codebook: cfg.eos_token_id,
            delay,
            delayed,
            prefill_steps,
            max_tokens,
            step: 0,
            bos_over: false,
            pred: vec![0; c],
            codes: Frames {
                channels: c,
                data: Vec::with_capacity(max_tokens * c),
            },
            new_from: 0,
            sample_s: 0.0,
        })
    }

    /// The next step's decoder input: the tokens of delayed row `step` (one per channel, the
    /// same for both CFG rows) and its position `step`.
    pub fn next_input(&self) -> (&[i64], usize) {
        (self.delayed.row(self.step), self.step)
    }

    /// Whether the next step only fills the cache with a prompt frame (its logits unused: the
    /// reference runs the prompt as one causal pass; a step at a time is the same computation).
    pub fn in_prefill(&self) -> bool {
        self.step + 1 < self.prefill_steps
    }

    /// Whether this is the first step whose logits are sampled.
    pub fn at_first_sample(&self) -> bool {
        self.step + 1 == self.prefill_steps
    }

    /// Takes the logits `[2, C, V]` (unconditional, conditional) of the step fed with
    /// [`Sequence::next_input`] and returns the codes `[n, C]` (frame-major, delay reverted)
    /// of the frames that became complete: none during the prefill and the first `max_delay`
    /// steps, then one per step, and the rest when the generation ends. Empty once done.
    pub fn accept(&mut self, logits: &[f32]) -> &[i64] {
        self.new_from = self.codes.data.len();
        if self.is_done() {
            return &[];
        }
        if self.in_prefill() {
            self.step += 1;
            return &[];
        }
        let step = self.step;
        let ts = Instant::now();
        self.sampler
            .sample(logits, &self.params, &mut self.rng, &mut self.pred);
        self.sample_s += ts.elapsed().as_secs_f64();
        self.countdown.apply(step, &mut self.pred);
        let max_delay = self.countdown.max_delay();
        if !self.bos_over {
            self.bos_over = step as i64 - self.prefill_steps as i64 > max_delay as i64;
        }
        let bos_over = self.bos_over;
        let row = self.delayed.row_mut(step + 1);
        for (slot, &p) in row.iter_mut().zip(&self.pred) {
            if bos_over || *slot == -1 {
                *slot = p;
            }
        }
        self.step += 1;
        self.emit_complete();
        &self.codes.data[self.new_from..]
    }

    /// Whether generation has ended (EOS countdown over, or the step budget spent).
    pub fn is_done(&self) -> bool {
        self.countdown.is_done() || self.step >= self.max_tokens
    }

    /// The codes the last [`Sequence::accept`] returned.
    pub fn last_new(&self) -> &[i64] {
        &self.codes.data[self.new_from..]
    }

    /// Steps before the first sampled one's result: BOS plus the voice prompt's frames.
    pub fn prefill_steps(&self) -> usize {
        self.prefill_steps
    }

    /// Decoder steps run so far (prefill included).
    pub fn steps(&self) -> usize {
        self.step
    }

    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The step at which channel 0 said EOS, if it did.
    pub fn eos_step(&self) -> Option<usize> {
        self.countdown.eos_step()
    }

    /// The number of frames the utterance has: known once the countdown started (the budget
    /// starts it `max_delay` steps before the last, so it always does).
    fn length(&self) -> Option<usize> {
        self.countdown
            .finished_at()
            .map(|f| f.saturating_sub(self.prefill_steps))
    }

    /// Appends the reverted frames whose delayed rows are all written (all of them up to the
    /// utterance's length once it is done).
    fn emit_complete(&mut self) {
        let c = self.codes.channels;
        let max_delay = self.countdown.max_delay();
        let emitted = self.codes.data.len() / c;
        // Rows 0..=step are written; frame j needs row prefill + j + max_delay.
        let written = (self.step + 1).saturating_sub(self.prefill_steps + max_delay);
        let upto = match (self.is_done(), self.length()) {
            (true, Some(len)) => len,
            (_, Some(len)) => written.min(len),
            (_, None) => written,
        };
        // Rows past the delayed buffer read as PAD, as the reference pads them.
        let total_rows = self.prefill_steps + upto + max_delay;
        for j in emitted..upto {
            let start = self.codes.data.len();
            self.codes.data.resize(start + c, 0);
            revert_frame(
                &self.delayed,
                self.prefill_steps + j,
                total_rows,
                &self.delay,
                self.codebook,
                &mut self.codes.data[start..],
            );
        }
    }

    /// All frames handed out so far, `[n, C]`.
    pub fn codes(&self) -> &Frames {
        &self.codes
    }

    /// The codes, taken out.
    pub fn into_codes(self) -> Frames {
        self.codes
    }
}
