//! The pull API's state: a [`ScriptStream`] that owns (a share of) its model, and the chunk
//! last handed out, which C reads by pointer until the next call.

use std::sync::Arc;

use dia_run::stream::ScriptStream;
use dia_run::DiaModel;

use crate::error::CapiError;

pub struct StreamState {
    /// Borrows `*_model` (see [`StreamState::new`]); declared first so it is dropped before
    /// the model it borrows. `None` once finished or failed.
    stream: Option<ScriptStream<'static>>,
    _model: Arc<DiaModel>,
    pub sample_rate: u32,
    /// The samples of the chunk last handed out.
    pub chunk: Vec<f32>,
    /// The script's codes `[frames, channels]`, once the last chunk is out.
    pub codes: Option<(Vec<i64>, usize)>,
    /// Why the stream stopped, if it failed.
    failed: Option<String>,
}

/// What [`StreamState::next_chunk`] produced: the samples are in [`StreamState::chunk`].
pub struct Next {
    pub is_last: bool,
}

impl StreamState {
    /// `make` builds the stream on the model; the result keeps the model alive.
    pub fn new(
        model: Arc<DiaModel>,
        make: impl for<'m> FnOnce(&'m DiaModel) -> Result<ScriptStream<'m>, CapiError>,
    ) -> Result<Self, CapiError> {
        let stream = make(&model)?;
        // SAFETY: the stream borrows the `DiaModel` inside the `Arc`, whose address does not
        // change while this struct holds the `Arc`; the field order drops the stream first.
        let stream: ScriptStream<'static> = unsafe { std::mem::transmute(stream) };
        Ok(Self {
            stream: Some(stream),
            sample_rate: model.sample_rate(),
            _model: model,
            chunk: Vec::new(),
            codes: None,
            failed: None,
        })
    }

    /// The next chunk: `is_last` with the final samples (the crossfade's tail, which costs no
    /// more decoding once the generator is done, is fetched at once and appended, so the last
    /// samples never come after a chunk that said it was not the last).
    pub fn next_chunk(&mut self) -> Result<Next, CapiError> {
        if let Some(why) = &self.failed {
            return Err(CapiError::StreamFailed(why.clone()));
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(CapiError::StreamEnded);
        };
        self.chunk.clear();
        match next_chunk(stream, &mut self.chunk) {
            Ok(true) => Ok(Next { is_last: false }),
            Ok(false) => {
                let s = self.stream.take().expect("checked above");
                let g = s.finish().generation;
                self.codes = Some((g.codes.data, g.codes.channels));
                Ok(Next { is_last: true })
            }
            Err(e) => {
                self.failed = Some(e.to_string());
                self.stream = None;
                Err(CapiError::Run(e))
            }
        }
    }
}

/// Appends the next chunk to `out`; returns whether more may follow.
pub fn next_chunk(
    s: &mut ScriptStream<'_>,
    out: &mut Vec<f32>,
) -> Result<bool, dia_run::RuntimeError> {
    match s.next_chunk()? {
        None => return Ok(false),
        Some(c) => out.extend_from_slice(c),
    }
    if !s.generator().is_done() {
        return Ok(true);
    }
    while let Some(c) = s.next_chunk()? {
        out.extend_from_slice(c);
    }
    Ok(false)
}
