//! Incremental generation, step for step as nari-labs `Dia.generate`: BOS (and voice prompt)
//! prefill with the delay pattern, one decoder step per frame with CFG and sampling, the EOS
//! countdown ([`EosCountdown`]), and the delay reverted as frames become complete.
//!
//! ```no_run
//! # fn demo(model: &dia_run::DiaModel) -> Result<(), dia_run::RuntimeError> {
//! let opts = dia_run::GenerateOptions::default();
//! let mut gen = dia_run::Generator::new(model, "[S1] Hello.", &opts)?;
//! while !gen.is_done() {
//!     let frames = gen.step()?; // codes [n, 9] that became complete, delay reverted
//!     # let _ = frames;
//! }
//! let result = gen.finish();
//! # let _ = result; Ok(()) }
//! ```
//!
//! Dropping a generator stops it and gives its decoder state back to the model's pool.

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::decoder::Utterance;
use crate::delay::{delayed_prefill, revert_frame, Frames};
use crate::eos::EosCountdown;
use crate::error::RuntimeError;
use crate::generate::{GenerateOptions, Generation, Progress};
use crate::model::DiaModel;
use crate::sampler::{Sampler, SamplingParams};
use crate::tokenizer::encode_text;

pub struct Generator<'m> {
    utt: Utterance<'m>,
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
    input: Vec<i64>,
    pred: Vec<i64>,
    /// Delay-reverted frames handed out so far; `new_from` is where the last step's start.
    codes: Frames,
    new_from: usize,
    started: Instant,
    encoder_s: f64,
    first_step_s: f64,
    sample_s: f64,
}

impl<'m> Generator<'m> {
    /// Validates the options, runs the encoder on `text`, checks a decoder state out of the
    /// model's pool and prefills BOS and the voice prompt.
    pub fn new(
        model: &'m DiaModel,
        text: &str,
        opts: &GenerateOptions,
    ) -> Result<Self, RuntimeError> {
        let m = model.manifest();
        let cfg = &m.config;
        let d = &cfg.decoder_config;
        let max_tokens = opts.validate(m.max_frames, d.vocab_size)?;
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
        let tokens = encode_text(text, m.max_text_len)?;

        let t0 = Instant::now();
        let utt = model.utterance(&tokens)?;
        let encoder_s = t0.elapsed().as_secs_f64();

        let delay = cfg.delay_pattern.clone();
        let max_delay = cfg.max_delay();
        let prefill = delayed_prefill(prompt, &delay, cfg.bos_token_id);
        let mut delayed = Frames::new(max_tokens + max_delay + 1, c);
        delayed.data[..prefill.data.len()].copy_from_slice(&prefill.data);
        let mut g = Self {
            utt,
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
            input: vec![0; c],
            pred: vec![0; c],
            codes: Frames {
                channels: c,
                data: Vec::with_capacity(max_tokens * c),
            },
            new_from: 0,
            started: Instant::now(),
            encoder_s,
            first_step_s: 0.0,
            sample_s: 0.0,
        };
        // The prompt's frames go through the decoder to fill the cache; their logits are not
        // needed (the reference runs them as one causal pass; a step at a time is the same
        // computation).
        for t in 0..prefill_steps - 1 {
            g.input.copy_from_slice(g.delayed.row(t));
            g.utt.step(&g.input, t)?;
        }
        g.step = prefill_steps - 1;
        g.started = Instant::now();
        Ok(g)
    }

    /// Whether generation has ended (EOS countdown over, or the step budget spent).
    pub fn is_done(&self) -> bool {
        self.countdown.is_done() || self.step >= self.max_tokens
    }

    /// Runs one decoder step and returns the codes `[n, C]` (frame-major, delay reverted)
    /// of the frames that became complete with it: none during the first `max_delay` steps,
    /// then one per step, and the rest when the generation ends. Empty once done.
    pub fn step(&mut self) -> Result<&[i64], RuntimeError> {
        self.new_from = self.codes.data.len();
        if self.is_done() {
            return Ok(&[]);
        }
        let step = self.step;
        let current = step + 1;
        self.input.copy_from_slice(self.delayed.row(step));
        let logits = self.utt.step(&self.input, step)?;
        let ts = Instant::now();
        self.sampler
            .sample(logits, &self.params, &mut self.rng, &mut self.pred);
        self.sample_s += ts.elapsed().as_secs_f64();
        if step == self.prefill_steps - 1 {
            self.first_step_s = self.started.elapsed().as_secs_f64();
        }
        self.countdown.apply(step, &mut self.pred);
        let max_delay = self.countdown.max_delay();
        if !self.bos_over {
            self.bos_over = step as i64 - self.prefill_steps as i64 > max_delay as i64;
        }
        let bos_over = self.bos_over;
        let row = self.delayed.row_mut(current);
        for (slot, &p) in row.iter_mut().zip(&self.pred) {
            if bos_over || *slot == -1 {
                *slot = p;
            }
        }
        self.step += 1;
        self.emit_complete();
        Ok(&self.codes.data[self.new_from..])
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

    /// Progress after the last step.
    pub fn progress(&self) -> Progress {
        Progress {
            step: self.step,
            max_steps: self.max_tokens,
            elapsed_s: self.started.elapsed().as_secs_f64(),
            frames: self.codes.len(),
        }
    }

    /// All frames handed out so far, `[n, C]`.
    pub fn codes(&self) -> &Frames {
        &self.codes
    }

    /// The result: every frame handed out (all of them once [`Generator::is_done`]).
    pub fn finish(self) -> Generation {
        let decode_s = self.started.elapsed().as_secs_f64();
        Generation {
            steps: self.step,
            eos_step: self.countdown.eos_step(),
            encoder_s: self.encoder_s,
            first_step_s: self.first_step_s,
            decode_s,
            step_timings: self.utt.timings,
            sample_s: self.sample_s,
            codes: self.codes,
        }
    }
}

impl DiaModel {
    /// Generates audio codes for `text` (e.g. `"[S1] Hello. [S2] Hi!"`), calling `progress`
    /// after every step. For frames as they come, or to stop early, use a [`Generator`].
    pub fn generate(
        &self,
        text: &str,
        opts: &GenerateOptions,
        mut progress: impl FnMut(Progress),
    ) -> Result<Generation, RuntimeError> {
        let mut g = Generator::new(self, text, opts)?;
        while !g.is_done() {
            g.step()?;
            progress(g.progress());
        }
        Ok(g.finish())
    }
}
