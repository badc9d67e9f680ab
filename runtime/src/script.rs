//! Scripts of any length: split into segments that each fit one generation
//! ([`crate::segmenter`]), generated in order, each after the first prompted with the one
//! before it (its codes and its transcript, as the reference's `audio_prompt`), so the
//! voices carry over: what users of nari-labs do by hand for audio beyond ~25 s.
//!
//! ```no_run
//! # fn demo(model: &dia_run::DiaModel, long_script: &str) -> Result<(), dia_run::RuntimeError> {
//! use dia_run::script::{ScriptGenerator, ScriptOptions, ScriptPlan};
//! let opts = dia_run::GenerateOptions::default();
//! let plan = ScriptPlan::new(model, long_script, None, &opts, &ScriptOptions::default())?;
//! let mut gen = ScriptGenerator::new(model, plan, None, &opts)?;
//! while !gen.is_done() {
//!     let step = gen.step()?; // frames that became complete, and of which segment
//!     # let _ = step;
//! }
//! let result = gen.finish();
//! # let _ = result; Ok(()) }
//! ```
//!
//! Budgets: with `T` decoder steps per generation, a voice prompt of `V` frames and the
//! previous segment carried, a segment may take `(T - 1 - V) / 2` steps, so that the carried
//! segment (never longer) and the new one always fit; likewise half the text window left
//! after the voice prompt's transcript. A script that fits one generation whole is generated
//! as given, exactly as without this module.

use std::ops::Range;
use std::time::Instant;

use crate::decoder::StepTimings;
use crate::delay::Frames;
use crate::error::RuntimeError;
use crate::generate::{GenerateOptions, Generation};
use crate::generator::Generator;
use crate::model::DiaModel;
use crate::segmenter::{split_script, Cut, Segment, SegmentLimits};
use crate::tokenizer::count_tokens;

/// A voice to speak the whole script in: the codes of a recording and its transcript.
#[derive(Clone, Debug)]
pub struct VoicePrompt {
    /// `[frames, C]`, e.g. from [`DiaModel::encode_audio`].
    pub codes: Frames,
    /// What the recording says, with speaker tags: `"[S1] What the prompt says."`
    pub transcript: String,
}

/// How a script is split and joined.
#[derive(Clone, Debug)]
pub struct ScriptOptions {
    /// Prompt each segment after the first with the previous one, so voices carry over.
    pub carry: bool,
    /// Crossfade between segments' audio, in seconds.
    pub crossfade_s: f32,
    /// Frames of speech per byte of text, to size segments: Dia speaks ~14 characters a
    /// second, about 6 frames (86 per second) each; 7 leaves a margin.
    pub frames_per_byte: f32,
    /// Text tokens a segment's input may take (voice transcript and carried text included);
    /// `None`: the bundle's window, and a larger value is cut to it. A server decoding on a
    /// [`crate::batch::Batch`] of a shorter text length plans for that length.
    pub text_window: Option<usize>,
}

impl Default for ScriptOptions {
    fn default() -> Self {
        Self {
            carry: true,
            crossfade_s: 0.04,
            frames_per_byte: 7.0,
            text_window: None,
        }
    }
}

/// A script split for a model: the segments and each one's budget.
#[derive(Clone, Debug)]
pub struct ScriptPlan {
    pub segments: Vec<Segment>,
    /// What the user should know about the split (odd tags, long sentences cut).
    pub warnings: Vec<String>,
    /// Decoder steps each segment may take after its prompt (`None`: the script is one
    /// generation, with the options' own budget).
    pub segment_steps: Option<usize>,
    pub carry: bool,
    /// Frames the whole script is expected to take (for progress bars).
    pub estimated_frames: usize,
}

impl ScriptPlan {
    /// Splits `script` for `model`; `voice` is the voice the whole script is spoken in.
    pub fn new(
        model: &DiaModel,
        script: &str,
        voice: Option<&VoicePrompt>,
        opts: &GenerateOptions,
        sopts: &ScriptOptions,
    ) -> Result<Self, RuntimeError> {
        let m = model.manifest();
        let cfg = &m.config;
        let steps = opts.validate(m.max_frames, cfg.decoder_config.vocab_size)?;
        if !(sopts.frames_per_byte > 0.0 && sopts.frames_per_byte.is_finite()) {
            return Err(RuntimeError::InvalidOption(
                "frames per byte must be a positive number".into(),
            ));
        }
        if !(sopts.crossfade_s >= 0.0 && sopts.crossfade_s <= 1.0) {
            return Err(RuntimeError::InvalidOption(
                "the crossfade must be between 0 and 1 second".into(),
            ));
        }
        let window = match sopts.text_window {
            None => m.max_text_len,
            Some(0) => {
                return Err(RuntimeError::InvalidOption(
                    "the text window must be at least one token".into(),
                ))
            }
            Some(w) => w.min(m.max_text_len),
        };
        let max_delay = cfg.max_delay();
        let (voice_frames, voice_tokens) =
            voice.map_or((0, 0), |v| (v.codes.len(), count_tokens(&v.transcript)));
        if script.trim().is_empty() {
            return Err(RuntimeError::EmptyText);
        }
        if voice.is_some() && 1 + voice_frames >= steps {
            return Err(RuntimeError::InvalidOption(format!(
                "the voice prompt ({voice_frames} frames) leaves no room for speech in {steps} \
                 steps: use a shorter recording, or raise --max-tokens"
            )));
        }
        let estimate = |bytes: usize| (bytes as f32 * sopts.frames_per_byte).ceil() as usize;
        let parts = if sopts.carry { 2 } else { 1 };
        let room = steps.saturating_sub(1 + voice_frames);
        let segment_steps = room / parts;
        // A carried transcript and the new text are joined by a space.
        let max_tokens = window.saturating_sub(voice_tokens + parts - 1) / parts;
        let splittable = segment_steps > max_delay + 1 && max_tokens >= 8;
        let fits_window = voice_tokens + count_tokens(script) <= window;
        // Whole, as given, when it fits the text window and either its estimated frames fit
        // the budget or the budget is the user's own (`max_tokens`: one generation of at most
        // that many steps, as the reference's `generate`).
        if fits_window
            && (opts.max_tokens.is_some()
                || 1 + voice_frames + estimate(script.len()) + max_delay <= steps
                || !splittable)
        {
            // The segmenter's checks and warnings still apply.
            let split = split_script(
                script,
                &SegmentLimits {
                    max_tokens: window,
                    target_bytes: usize::MAX,
                },
            )?;
            return Ok(Self {
                segments: vec![Segment {
                    source: 0..script.len(),
                    text: script.to_string(),
                    cut: Cut::End,
                }],
                warnings: split.warnings,
                segment_steps: None,
                carry: sopts.carry,
                estimated_frames: steps.saturating_sub(1 + voice_frames),
            });
        }
        if !splittable {
            let voice = if voice.is_some() {
                format!(
                    " after the voice prompt ({voice_frames} frames, {voice_tokens} tokens of \
                     transcript)"
                )
            } else {
                String::new()
            };
            return Err(RuntimeError::InvalidOption(format!(
                "the script ({} tokens) is longer than the {window}-token text window and \
                 needs splitting, but {steps} steps{voice} leave too little for a segment: \
                 raise --max-tokens or use a shorter voice prompt",
                count_tokens(script)
            )));
        }
        let target_bytes =
            (((segment_steps - max_delay) as f32 / sopts.frames_per_byte) as usize).max(1);
        let split = split_script(
            script,
            &SegmentLimits {
                max_tokens,
                target_bytes,
            },
        )?;
        let estimated_frames = split
            .segments
            .iter()
            .map(|s| estimate(s.text.len()).min(segment_steps - max_delay))
            .sum();
        Ok(Self {
            segments: split.segments,
            warnings: split.warnings,
            segment_steps: Some(segment_steps),
            carry: sopts.carry,
            estimated_frames,
        })
    }

    /// Whether the script is one generation, as given.
    pub fn is_whole(&self) -> bool {
        self.segment_steps.is_none()
    }
}

/// How one segment went.
#[derive(Clone, Debug)]
pub struct SegmentReport {
    /// The bytes of the script it said.
    pub source: Range<usize>,
    /// Its text (with the speaker tag in force in front when it starts inside a turn).
    pub text: String,
    /// The text before it in the encoder's input: the voice's transcript, then the carried
    /// segment's.
    pub prompt_text: String,
    /// Frames of the audio prompt it continued (voice, then the carried segment).
    pub prompt_frames: usize,
    /// Its frames in the script's codes.
    pub frames: Range<usize>,
    pub steps: usize,
    /// The step whose channel-0 token was EOS; `None`: it ran out of steps.
    pub eos_step: Option<usize>,
    pub seed: Option<u64>,
    pub encoder_s: f64,
    pub decode_s: f64,
}

/// What a script produced.
#[derive(Clone, Debug)]
pub struct ScriptGeneration {
    /// All segments together: codes one after another, steps and times summed; `eos_step`
    /// and `first_step_s` are the last segment's and the first's.
    pub generation: Generation,
    pub segments: Vec<SegmentReport>,
    /// The plan's warnings, and segments that ran out of steps.
    pub warnings: Vec<String>,
}

/// Progress through a script.
#[derive(Clone, Copy, Debug)]
pub struct ScriptProgress {
    /// The segment under way (0-based) and how many there are.
    pub segment: usize,
    pub segments: usize,
    /// Frames complete so far, all segments.
    pub frames: usize,
    /// Frames the script is expected to take (an estimate).
    pub estimated_frames: usize,
    /// Decoder steps run, all segments.
    pub steps: usize,
    /// Seconds since the script started.
    pub elapsed_s: f64,
}

/// What one [`ScriptGenerator::step`] produced.
#[derive(Debug)]
pub struct ScriptStep<'a> {
    /// The segment the frames belong to.
    pub segment: usize,
    /// Codes `[n, C]` that became complete, delay reverted.
    pub frames: &'a [i64],
    /// Whether this step ended the segment.
    pub segment_done: bool,
}

/// The seed of segment `k`: the script's seed for the first, so a script of one segment is
/// the plain generation; distinct, repeatable ones after it.
pub fn segment_seed(seed: u64, k: usize) -> u64 {
    seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// What segment `k` of `plan` is generated with: its text and its generation options.
///
/// The text is the voice's transcript, then (when the plan carries and `k > 0`) the previous
/// segment's text and a space, then the segment's own text; the audio prompt is the voice's
/// codes, then the previous segment's codes. The seed is [`segment_seed`] of `base`'s, and a
/// split script's segment may take `1 + prompt frames + plan.segment_steps` steps (a whole
/// script keeps `base`'s budget). `base` gives the sampling settings (its `audio_prompt` is
/// replaced); `prev` is segment `k - 1`'s text and codes (`[n, channels]`, as generated), used
/// only when carried; `channels` is the model's codebooks.
///
/// The one definition of a segment's inputs: [`ScriptGenerator`] runs it, and so can anything
/// that decodes segments elsewhere (a server on a [`crate::batch::Scheduler`]), with the same
/// codes.
pub fn segment_request(
    plan: &ScriptPlan,
    voice: Option<&VoicePrompt>,
    prev: Option<(&str, &[i64])>,
    k: usize,
    base: &GenerateOptions,
    channels: usize,
) -> (String, GenerateOptions) {
    let carried = if plan.carry && k > 0 { prev } else { None };
    debug_assert!(
        !(plan.carry && k > 0) || carried.is_some(),
        "segment {k} of a carried script needs the previous segment"
    );
    let mut text = String::new();
    let mut prompt = Frames {
        channels,
        data: Vec::new(),
    };
    if let Some(v) = voice {
        text.push_str(&v.transcript);
        prompt.data.extend_from_slice(&v.codes.data);
    }
    if let Some((prev_text, prev_codes)) = carried {
        text.push_str(prev_text);
        text.push(' ');
        prompt.data.extend_from_slice(prev_codes);
    }
    text.push_str(&plan.segments[k].text);
    let prompt_frames = prompt.len();
    let opts = GenerateOptions {
        max_tokens: match plan.segment_steps {
            Some(s) => Some(1 + prompt_frames + s),
            None => base.max_tokens,
        },
        seed: base.seed.map(|s| segment_seed(s, k)),
        audio_prompt: (!prompt.is_empty()).then_some(prompt),
        ..base.clone()
    };
    (text, opts)
}

/// The warning for segment `k` of `plan` that used all its `steps` steps without EOS.
pub fn unfinished_segment_warning(plan: &ScriptPlan, k: usize, steps: usize) -> String {
    let preview: String = plan.segments[k].text.chars().take(48).collect();
    format!(
        "segment {}/{} used all its {steps} steps without ending (no EOS), so it may stop \
         mid-word: \"{preview}…\"; give it fewer words, or more steps with --max-tokens",
        k + 1,
        plan.segments.len(),
    )
}

/// Generates a [`ScriptPlan`] segment after segment, a step at a time.
pub struct ScriptGenerator<'m> {
    model: &'m DiaModel,
    plan: ScriptPlan,
    voice: Option<VoicePrompt>,
    base: GenerateOptions,
    /// The next segment to start, and the one under way.
    next: usize,
    current: Option<Generator<'m>>,
    current_prompt: (String, usize),
    codes: Frames,
    segment_from: usize,
    reports: Vec<SegmentReport>,
    warnings: Vec<String>,
    steps_before: usize,
    timings: StepTimings,
    sample_s: f64,
    first_step_s: f64,
    started: Instant,
}

impl<'m> ScriptGenerator<'m> {
    /// Ready to generate `plan` in `voice`, with `opts`' sampling settings and seed (its
    /// `audio_prompt` is ignored: the voice is `voice`). Nothing runs until the first step.
    pub fn new(
        model: &'m DiaModel,
        plan: ScriptPlan,
        voice: Option<VoicePrompt>,
        opts: &GenerateOptions,
    ) -> Result<Self, RuntimeError> {
        let c = model.config().decoder_config.num_channels;
        if let Some(v) = &voice {
            if v.codes.channels != c {
                return Err(RuntimeError::InvalidOption(format!(
                    "the voice prompt has {} codebooks but the model {c}",
                    v.codes.channels
                )));
            }
        }
        let warnings = plan.warnings.clone();
        Ok(Self {
            model,
            plan,
            voice,
            base: GenerateOptions {
                audio_prompt: None,
                ..opts.clone()
            },
            next: 0,
            current: None,
            current_prompt: (String::new(), 0),
            codes: Frames {
                channels: c,
                data: Vec::new(),
            },
            segment_from: 0,
            reports: Vec::new(),
            warnings,
            steps_before: 0,
            timings: StepTimings::default(),
            sample_s: 0.0,
            first_step_s: 0.0,
            started: Instant::now(),
        })
    }

    pub fn plan(&self) -> &ScriptPlan {
        &self.plan
    }

    /// Whether every segment is done.
    pub fn is_done(&self) -> bool {
        self.current.is_none() && self.next >= self.plan.segments.len()
    }

    /// The text and the audio prompt segment `k` is generated with: the voice, then the
    /// segment before it (when carried), then its own text (see [`segment_request`]).
    pub fn inputs(&self, k: usize) -> (String, Option<Frames>) {
        let (text, opts) = self.request(k);
        (text, opts.audio_prompt)
    }

    /// Segment `k`'s text and options ([`segment_request`] with the segment before it).
    fn request(&self, k: usize) -> (String, GenerateOptions) {
        let c = self.codes.channels;
        let prev = k.checked_sub(1).and_then(|j| self.reports.get(j)).map(|r| {
            (
                r.text.as_str(),
                &self.codes.data[r.frames.start * c..r.frames.end * c],
            )
        });
        segment_request(&self.plan, self.voice.as_ref(), prev, k, &self.base, c)
    }

    fn start_segment(&mut self) -> Result<(), RuntimeError> {
        let k = self.next;
        let (text, opts) = self.request(k);
        let prompt_frames = opts.audio_prompt.as_ref().map_or(0, Frames::len);
        let prompt_text = text[..text.len() - self.plan.segments[k].text.len()].to_string();
        self.current = Some(Generator::new(self.model, &text, &opts)?);
        self.current_prompt = (prompt_text, prompt_frames);
        self.segment_from = self.codes.len();
        self.next += 1;
        Ok(())
    }

    /// Runs one decoder step (starting the next segment first when one is due: its encoder
    /// and prompt prefill run then) and returns the frames that became complete.
    pub fn step(&mut self) -> Result<ScriptStep<'_>, RuntimeError> {
        let from = self.codes.data.len();
        if self.is_done() {
            return Ok(ScriptStep {
                segment: self.next.saturating_sub(1),
                frames: &[],
                segment_done: false,
            });
        }
        if self.current.is_none() {
            self.start_segment()?;
        }
        let k = self.next - 1;
        let g = self.current.as_mut().expect("a segment is under way");
        let frames = g.step()?;
        self.codes.data.extend_from_slice(frames);
        let done = g.is_done();
        if done {
            self.end_segment(k);
        }
        Ok(ScriptStep {
            segment: k,
            frames: &self.codes.data[from..],
            segment_done: done,
        })
    }

    fn end_segment(&mut self, k: usize) {
        let Some(g) = self.current.take() else {
            return;
        };
        let gen = g.finish();
        let seg = &self.plan.segments[k];
        if k == 0 {
            self.first_step_s = gen.first_step_s;
        }
        if gen.eos_step.is_none() && !self.base.ignore_eos {
            let msg = unfinished_segment_warning(&self.plan, k, gen.steps);
            tracing::warn!("{msg}");
            self.warnings.push(msg);
        }
        self.steps_before += gen.steps;
        self.timings.add(&gen.step_timings);
        self.sample_s += gen.sample_s;
        let (prompt_text, prompt_frames) = std::mem::take(&mut self.current_prompt);
        self.reports.push(SegmentReport {
            source: seg.source.clone(),
            text: seg.text.clone(),
            prompt_text,
            prompt_frames,
            frames: self.segment_from..self.codes.len(),
            steps: gen.steps,
            eos_step: gen.eos_step,
            seed: self.base.seed.map(|s| segment_seed(s, k)),
            encoder_s: gen.encoder_s,
            decode_s: gen.decode_s,
        });
    }

    /// Progress after the last step.
    pub fn progress(&self) -> ScriptProgress {
        ScriptProgress {
            segment: self.next.saturating_sub(1),
            segments: self.plan.segments.len(),
            frames: self.codes.len(),
            estimated_frames: self.plan.estimated_frames.max(self.codes.len()),
            steps: self.steps_before + self.current.as_ref().map_or(0, |g| g.progress().step),
            elapsed_s: self.started.elapsed().as_secs_f64(),
        }
    }

    /// Reports of the segments done so far.
    pub fn reports(&self) -> &[SegmentReport] {
        &self.reports
    }

    /// The result: every segment done so far (all of them once [`ScriptGenerator::is_done`]).
    pub fn finish(mut self) -> ScriptGeneration {
        if let Some(k) = self.current.is_some().then(|| self.next - 1) {
            self.end_segment(k);
        }
        let sum = |f: fn(&SegmentReport) -> f64| self.reports.iter().map(f).sum::<f64>();
        ScriptGeneration {
            generation: Generation {
                steps: self.steps_before,
                eos_step: self.reports.last().and_then(|r| r.eos_step),
                encoder_s: sum(|r| r.encoder_s),
                first_step_s: self.first_step_s,
                decode_s: sum(|r| r.decode_s),
                step_timings: self.timings,
                sample_s: self.sample_s,
                codes: self.codes,
            },
            segments: self.reports,
            warnings: self.warnings,
        }
    }
}

impl DiaModel {
    /// Generates codes for a script of any length (see [`ScriptPlan`]), calling `progress`
    /// after every step.
    pub fn generate_script(
        &self,
        script: &str,
        voice: Option<VoicePrompt>,
        opts: &GenerateOptions,
        sopts: &ScriptOptions,
        mut progress: impl FnMut(ScriptProgress),
    ) -> Result<ScriptGeneration, RuntimeError> {
        let plan = ScriptPlan::new(self, script, voice.as_ref(), opts, sopts)?;
        let mut g = ScriptGenerator::new(self, plan, voice, opts)?;
        while !g.is_done() {
            g.step()?;
            progress(g.progress());
        }
        Ok(g.finish())
    }
}

impl ScriptGeneration {
    /// The script's audio in one go: each segment decoded whole, the segments joined by a
    /// `crossfade_s` crossfade (what [`crate::stream::ScriptStream`] streams, within the
    /// codec's float tolerance).
    pub fn decode_audio(
        &self,
        model: &DiaModel,
        crossfade_s: f32,
    ) -> Result<Vec<f32>, RuntimeError> {
        let codes = &self.generation.codes;
        if self.segments.len() <= 1 {
            return model.decode_audio(codes);
        }
        let c = codes.channels;
        let parts = self
            .segments
            .iter()
            .map(|s| {
                if s.frames.is_empty() {
                    return Ok(Vec::new());
                }
                model.decode_audio(&Frames {
                    channels: c,
                    data: codes.data[s.frames.start * c..s.frames.end * c].to_vec(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let fade = (crossfade_s * model.sample_rate() as f32).round() as usize;
        Ok(crate::crossfade::crossfade_join(&parts, fade))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(carry: bool, segment_steps: Option<usize>) -> ScriptPlan {
        let seg = |text: &str| Segment {
            source: 0..text.len(),
            text: text.to_string(),
            cut: Cut::Sentence,
        };
        ScriptPlan {
            segments: vec![seg("[S1] One."), seg("[S2] Two.")],
            warnings: Vec::new(),
            segment_steps,
            carry,
            estimated_frames: 100,
        }
    }

    #[test]
    fn a_segment_request_is_the_voice_then_the_carried_segment_then_its_own_text() {
        let voice = VoicePrompt {
            codes: Frames {
                channels: 2,
                data: vec![1, 2, 3, 4],
            },
            transcript: "[S1] Voice. ".into(),
        };
        let base = GenerateOptions {
            seed: Some(9),
            max_tokens: Some(77),
            temperature: 0.5,
            ..GenerateOptions::default()
        };
        let p = plan(true, Some(40));
        let (text, o) = segment_request(&p, Some(&voice), None, 0, &base, 2);
        assert_eq!(text, "[S1] Voice. [S1] One.");
        assert_eq!(o.audio_prompt.as_ref().unwrap().data, [1, 2, 3, 4]);
        assert_eq!(o.max_tokens, Some(1 + 2 + 40));
        assert_eq!((o.seed, o.temperature), (Some(9), 0.5));

        let prev = ("[S1] One.", &[5i64, 6, 7, 8, 9, 10][..]);
        let (text, o) = segment_request(&p, Some(&voice), Some(prev), 1, &base, 2);
        assert_eq!(text, "[S1] Voice. [S1] One. [S2] Two.");
        assert_eq!(
            o.audio_prompt.as_ref().unwrap().data,
            [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
        );
        assert_eq!(o.max_tokens, Some(1 + 5 + 40));
        assert_eq!(o.seed, Some(segment_seed(9, 1)));

        // Without carry the previous segment is not in the prompt; a whole script keeps the
        // options' budget; no voice and nothing carried is no prompt at all.
        let (text, o) = segment_request(&plan(false, None), None, Some(prev), 1, &base, 2);
        assert_eq!(text, "[S2] Two.");
        assert!(o.audio_prompt.is_none());
        assert_eq!(o.max_tokens, Some(77));
    }
}
