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

use crate::codec::{ChunkSizes, StreamDecoder};
use crate::error::RuntimeError;
use crate::generate::{GenerateOptions, Generation};
use crate::generator::Generator;
use crate::model::DiaModel;

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
