//! Incremental generation, step for step as nari-labs `Dia.generate`: BOS (and voice prompt)
//! prefill with the delay pattern, one decoder step per frame with CFG and sampling, the EOS
//! countdown ([`crate::eos::EosCountdown`]; the per-utterance part is [`crate::sequence::Sequence`]), and the delay reverted as frames become complete.
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

use crate::decoder::Utterance;
use crate::delay::Frames;
use crate::error::RuntimeError;
use crate::generate::{GenerateOptions, Generation, Progress};
use crate::model::DiaModel;
use crate::sequence::Sequence;
use crate::tokenizer::encode_text;

/// One utterance on a decoder state of its own: a [`Sequence`] fed by an [`Utterance`].
pub struct Generator<'m> {
    utt: Utterance<'m>,
    seq: Sequence,
    /// This step's input, copied out of the sequence (the step borrows the state mutably).
    input: Vec<i64>,
    started: Instant,
    encoder_s: f64,
    first_step_s: f64,
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
        let mut seq = Sequence::new(&m.config, m.max_frames, opts)?;
        let tokens = encode_text(text, m.max_text_len)?;

        let t0 = Instant::now();
        let mut utt = model.utterance(&tokens)?;
        let encoder_s = t0.elapsed().as_secs_f64();

        let mut input = vec![0; m.config.decoder_config.num_channels];
        while seq.in_prefill() {
            let (tokens, position) = seq.next_input();
            input.copy_from_slice(tokens);
            utt.step(&input, position)?;
            seq.accept(&[]);
        }
        Ok(Self {
            utt,
            seq,
            input,
            started: Instant::now(),
            encoder_s,
            first_step_s: 0.0,
        })
    }

    /// Whether generation has ended (EOS countdown over, or the step budget spent).
    pub fn is_done(&self) -> bool {
        self.seq.is_done()
    }

    /// Runs one decoder step and returns the codes `[n, C]` (frame-major, delay reverted)
    /// of the frames that became complete with it: none during the first `max_delay` steps,
    /// then one per step, and the rest when the generation ends. Empty once done.
    pub fn step(&mut self) -> Result<&[i64], RuntimeError> {
        if self.seq.is_done() {
            return Ok(self.seq.accept(&[]));
        }
        let first = self.seq.at_first_sample();
        let (tokens, position) = self.seq.next_input();
        self.input.copy_from_slice(tokens);
        let logits = self.utt.step(&self.input, position)?;
        let new = self.seq.accept(logits);
        if first {
            self.first_step_s = self.started.elapsed().as_secs_f64();
        }
        Ok(new)
    }

    /// Progress after the last step.
    pub fn progress(&self) -> Progress {
        Progress {
            step: self.seq.steps(),
            max_steps: self.seq.max_tokens(),
            elapsed_s: self.started.elapsed().as_secs_f64(),
            frames: self.seq.codes().len(),
        }
    }

    /// All frames handed out so far, `[n, C]`.
    pub fn codes(&self) -> &Frames {
        self.seq.codes()
    }

    /// The result: every frame handed out (all of them once [`Generator::is_done`]).
    pub fn finish(self) -> Generation {
        let decode_s = self.started.elapsed().as_secs_f64();
        Generation {
            steps: self.seq.steps(),
            eos_step: self.seq.eos_step(),
            encoder_s: self.encoder_s,
            first_step_s: self.first_step_s,
            decode_s,
            step_timings: self.utt.timings,
            sample_s: self.seq.sample_s,
            codes: self.seq.into_codes(),
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
