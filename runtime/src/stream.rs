//! Streaming speech: PCM chunks (mono f32 at the codec's rate) handed out while the decoder
//! runs. A [`Generator`] makes frames as they become complete; a [`StreamDecoder`] turns them
//! into audio a chunk at a time, with enough context at every cut that the concatenated
//! stream equals the one-shot decode of the same codes.
//!
//! ```no_run
//! # fn demo(model: &dia_run::DiaModel) -> Result<(), dia_run::RuntimeError> {
//! let opts = dia_run::GenerateOptions::default();
//! let mut s = dia_run::AudioStream::new(model, "[S1] Hello.", &opts, Default::default())?;
//! while let Some(pcm) = s.next_chunk()? {
//!     // play or send `pcm`
//!     # let _ = pcm;
//! }
//! # Ok(()) }
//! ```

use std::time::Instant;

use crate::codec::{ChunkSizes, Codec, StreamDecoder};
use crate::crossfade::Crossfade;
use crate::error::RuntimeError;
use crate::generate::{GenerateOptions, Generation};
use crate::generator::Generator;
use crate::model::DiaModel;
use crate::script::{ScriptGeneration, ScriptGenerator, ScriptOptions, ScriptPlan, VoicePrompt};

pub struct AudioStream<'m> {
    generator: Generator<'m>,
    decoder: StreamDecoder<'m>,
    started: Instant,
    first_audio_s: Option<f64>,
    finished: bool,
}

impl<'m> AudioStream<'m> {
    /// Starts generating `text` (see [`Generator::new`]); fails at once when the bundle has
    /// no codec.
    pub fn new(
        model: &'m DiaModel,
        text: &str,
        opts: &GenerateOptions,
        chunks: ChunkSizes,
    ) -> Result<Self, RuntimeError> {
        let started = Instant::now();
        let codec = model.require_codec("stream audio")?;
        let decoder = StreamDecoder::new(codec, chunks)?;
        Ok(Self {
            generator: Generator::new(model, text, opts)?,
            decoder,
            started,
            first_audio_s: None,
            finished: false,
        })
    }

    /// Runs decoder steps until the next chunk of audio is ready and returns it; `None` once
    /// the utterance has been handed out whole.
    pub fn next_chunk(&mut self) -> Result<Option<&[f32]>, RuntimeError> {
        loop {
            if self.finished {
                return Ok(None);
            }
            let ready = if self.generator.is_done() {
                self.finished = true;
                self.decoder.finish()?.len()
            } else {
                let frames = self.generator.step()?;
                self.decoder.push(frames)?.len()
            };
            if ready > 0 {
                self.first_audio_s
                    .get_or_insert_with(|| self.started.elapsed().as_secs_f64());
                return Ok(Some(self.decoder.last_audio()));
            }
        }
    }

    /// Seconds from [`AudioStream::new`] (encoder included) to the first audio.
    pub fn first_audio_seconds(&self) -> Option<f64> {
        self.first_audio_s
    }

    /// The generation under way (progress, codes so far).
    pub fn generator(&self) -> &Generator<'m> {
        &self.generator
    }

    /// The generation's result (all codes, timings).
    pub fn finish(self) -> Generation {
        self.generator.finish()
    }
}

/// Streaming speech for a script of any length: each segment's audio streamed as its frames
/// are decoded (a fresh codec stream per segment), the segments joined by a crossfade
/// ([`Crossfade`]) as they come.
pub struct ScriptStream<'m> {
    generator: ScriptGenerator<'m>,
    codec: &'m Codec,
    sizes: ChunkSizes,
    decoder: Option<StreamDecoder<'m>>,
    fade: Crossfade,
    out: Vec<f32>,
    started: Instant,
    first_audio_s: Option<f64>,
    finished: bool,
}

impl<'m> ScriptStream<'m> {
    /// Ready to stream `plan` (see [`ScriptGenerator::new`]); fails at once when the bundle
    /// has no codec.
    pub fn new(
        model: &'m DiaModel,
        plan: ScriptPlan,
        voice: Option<VoicePrompt>,
        opts: &GenerateOptions,
        sopts: &ScriptOptions,
        sizes: ChunkSizes,
    ) -> Result<Self, RuntimeError> {
        let started = Instant::now();
        let codec = model.require_codec("stream audio")?;
        // Checks the sizes now, before any work.
        let decoder = Some(StreamDecoder::new(codec, sizes)?);
        let fade = (sopts.crossfade_s * codec.info().sample_rate as f32).round() as usize;
        Ok(Self {
            generator: ScriptGenerator::new(model, plan, voice, opts)?,
            codec,
            sizes,
            decoder,
            fade: Crossfade::new(fade),
            out: Vec::new(),
            started,
            first_audio_s: None,
            finished: false,
        })
    }

    /// Runs decoder steps until the next chunk of audio is ready and returns it; `None` once
    /// the script has been handed out whole.
    pub fn next_chunk(&mut self) -> Result<Option<&[f32]>, RuntimeError> {
        loop {
            if self.finished {
                return Ok(None);
            }
            self.out.clear();
            if self.generator.is_done() {
                self.finished = true;
                self.out.extend_from_slice(self.fade.finish());
            } else {
                let step = self.generator.step()?;
                let decoder = match &mut self.decoder {
                    Some(d) => d,
                    None => self
                        .decoder
                        .insert(StreamDecoder::new(self.codec, self.sizes)?),
                };
                let audio = decoder.push(step.frames)?;
                self.out.extend_from_slice(self.fade.push(audio));
                if step.segment_done {
                    let audio = decoder.finish()?;
                    self.out.extend_from_slice(self.fade.push(audio));
                    self.out.extend_from_slice(self.fade.end_segment());
                    self.decoder = None;
                }
            }
            if !self.out.is_empty() {
                self.first_audio_s
                    .get_or_insert_with(|| self.started.elapsed().as_secs_f64());
                return Ok(Some(&self.out));
            }
        }
    }

    /// Seconds from [`ScriptStream::new`] (the first segment's encoder included) to the
    /// first audio.
    pub fn first_audio_seconds(&self) -> Option<f64> {
        self.first_audio_s
    }

    /// The script under way (progress, codes and segments so far).
    pub fn generator(&self) -> &ScriptGenerator<'m> {
        &self.generator
    }

    /// The script's result (all codes, segment reports, timings).
    pub fn finish(self) -> ScriptGeneration {
        self.generator.finish()
    }
}
