//! The audio codec (DAC): codes to waveform and back.
//!
//! Bundles for Core ML have fixed-size codec graphs; longer input then goes through in
//! overlapping windows ([`ChunkPlan`]), one scheduler for both directions, so the result
//! equals one call on the whole.

use std::ops::Range;
use std::sync::Mutex;

use dia_bundle::{names, DacInfo, DAC_CONTEXT_FRAMES};
use ort::session::Session;
use ort::value::Tensor;

use crate::delay::Frames;
use crate::error::RuntimeError;

/// One window of a chunked codec call: the graph runs on frames `start..start + n` (zero
/// padded past the end) and frames `keep` of its output are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Window {
    pub start: usize,
    pub keep: Range<usize>,
}

/// How a fixed-size codec graph covers any length: windows of `frames` that overlap by
/// `context` frames on each side (the graph's receptive field); each window contributes only
/// frames at least `context` from its cut edges. The first window starts at frame 0 and the
/// last ends at the last frame, so the utterance's edges are real edges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkPlan {
    pub frames: usize,
    pub context: usize,
}

impl ChunkPlan {
    /// The windows that cover `total` frames. Input no longer than a window is one window,
    /// zero-padded (the last `context` frames then differ slightly from an unpadded call).
    pub fn windows(&self, total: usize) -> Result<Vec<Window>, RuntimeError> {
        if total > self.frames {
            self.check()?;
        }
        let mut out = Vec::new();
        let mut start = 0;
        while let Some(w) = self.window_from(start, total, true) {
            start = w.keep.end;
            out.push(w);
        }
        Ok(out)
    }

    /// Fails when a window cannot hold `context` frames on both sides of what it keeps.
    fn check(&self) -> Result<(), RuntimeError> {
        let (n, ctx) = (self.frames, self.context);
        if n > 2 * ctx {
            return Ok(());
        }
        Err(RuntimeError::Bundle(dia_bundle::BundleError::Invalid {
            path: "manifest.json".into(),
            msg: format!(
                "DAC chunks of {n} frames cannot hold {ctx} frames of context on both sides"
            ),
        }))
    }

    /// The window whose kept frames begin at `start`, over `total` frames: all of the input
    /// when `done`; else only the frames that have arrived so far, and then `None` until the
    /// window's frames are all there.
    fn window_from(&self, start: usize, total: usize, done: bool) -> Option<Window> {
        let (n, ctx) = (self.frames, self.context);
        if start >= total {
            return None;
        }
        if done && total <= n {
            return Some(Window {
                start: 0,
                keep: start..total,
            });
        }
        let mut cs = if start == 0 { 0 } else { start - ctx };
        if done {
            // The last window ends at the last frame: the utterance's edge is a real edge.
            cs = cs.min(total - n);
        } else if cs + n > total {
            return None;
        }
        let keep_end = if done && cs + n == total {
            total
        } else {
            cs + n - ctx
        };
        (keep_end > start).then_some(Window {
            start: cs,
            keep: start..keep_end,
        })
    }

    /// Runs `call` on every window of `total` frames and joins the kept parts of its outputs
    /// (`per_frame` values per frame).
    fn run<T: Clone>(
        &self,
        total: usize,
        per_frame: usize,
        mut call: impl FnMut(usize) -> Result<Vec<T>, RuntimeError>,
    ) -> Result<Vec<T>, RuntimeError> {
        let mut out = Vec::with_capacity(total * per_frame);
        for w in self.windows(total)? {
            let got = call(w.start)?;
            let (a, b) = (w.keep.start - w.start, w.keep.end - w.start);
            let part = got.get(a * per_frame..b * per_frame).ok_or_else(|| {
                RuntimeError::Internal(format!(
                    "a codec window gave {} values, fewer than its {b} frames",
                    got.len() / per_frame.max(1)
                ))
            })?;
            out.extend_from_slice(part);
        }
        Ok(out)
    }
}

/// Chunk sizes of streamed decoding, in frames of audio (512 samples each at 44.1 kHz): a
/// small first chunk for latency, larger ones after for throughput. Codecs of fixed-size graphs
/// (coreml) decode whole windows, so their chunks are what a window holds whatever is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkSizes {
    pub first: usize,
    pub rest: usize,
}

impl Default for ChunkSizes {
    fn default() -> Self {
        // 4 frames ≈ 46 ms of audio first; 32 frames ≈ 0.37 s after.
        Self { first: 4, rest: 32 }
    }
}

/// Incremental decoding of codes that arrive a few frames at a time: every chunk is decoded
/// with [`DAC_CONTEXT_FRAMES`] of left context and right lookahead (or the utterance's real
/// edge), so the concatenated audio equals one decode of all the codes.
pub struct StreamDecoder<'c> {
    codec: &'c Codec,
    codes: Frames,
    /// Frames whose audio has been handed out.
    emitted: usize,
    sizes: ChunkSizes,
    context: usize,
    audio: Vec<f32>,
}

impl<'c> StreamDecoder<'c> {
    pub fn new(codec: &'c Codec, sizes: ChunkSizes) -> Result<Self, RuntimeError> {
        if sizes.first == 0 || sizes.rest == 0 {
            return Err(RuntimeError::InvalidOption(
                "stream chunks must be at least one frame".into(),
            ));
        }
        if let Some(plan) = codec.plan {
            plan.check()?;
        }
        Ok(Self {
            codec,
            codes: Frames {
                channels: codec.info.n_codebooks,
                data: Vec::new(),
            },
            emitted: 0,
            sizes,
            context: codec.info.decoder_context_frames.max(DAC_CONTEXT_FRAMES),
            audio: Vec::new(),
        })
    }

    /// The audio the last [`StreamDecoder::push`] or [`StreamDecoder::finish`] returned.
    pub fn last_audio(&self) -> &[f32] {
        &self.audio
    }

    /// Frames whose audio has been handed out so far.
    pub fn frames_out(&self) -> usize {
        self.emitted
    }

    /// Appends codes (`[n, C]`, frame-major) and returns the audio of every chunk that can be
    /// decoded now (empty when none can).
    pub fn push(&mut self, codes: &[i64]) -> Result<&[f32], RuntimeError> {
        self.codes.data.extend_from_slice(codes);
        self.audio.clear();
        while let Some(w) = self.next_window(false) {
            self.decode(w)?;
        }
        Ok(&self.audio)
    }

    /// The audio of the frames still held back (the codes are complete).
    pub fn finish(&mut self) -> Result<&[f32], RuntimeError> {
        self.audio.clear();
        while let Some(w) = self.next_window(true) {
            self.decode(w)?;
        }
        Ok(&self.audio)
    }

    /// The next chunk to decode, if the codes it needs are there (all of them when `done`).
    fn next_window(&self, done: bool) -> Option<Window> {
        let total = self.codes.len();
        let start = self.emitted;
        if start >= total {
            return None;
        }
        let ctx = self.context;
        match self.codec.plan {
            // Fixed-size graphs: the scheduler of one-shot chunked decoding, window by window.
            Some(plan) => plan.window_from(start, total, done),
            None => {
                let size = if start == 0 {
                    self.sizes.first
                } else {
                    self.sizes.rest
                };
                let end = start + size;
                if done {
                    Some(Window {
                        start: start.saturating_sub(ctx),
                        keep: start..end.min(total),
                    })
                } else {
                    (end + ctx <= total).then_some(Window {
                        start: start.saturating_sub(ctx),
                        keep: start..end,
                    })
                }
            }
        }
    }

    fn decode(&mut self, mut w: Window) -> Result<(), RuntimeError> {
        let hop = self.codec.info.hop_length;
        let total = self.codes.len();
        let n = match (self.codec.plan, self.codec.windows) {
            (Some(plan), _) => plan.frames,
            (None, windows) => {
                let need = (w.keep.end + self.context).min(total) - w.start;
                match windows.map(|p| p.frames) {
                    // The chunk and its context fit one window. Zeros past what has arrived
                    // are beyond the kept frames' reach; at the end of the codes the window
                    // moves back to end on the last frame instead, so the edge stays real.
                    Some(n) if need <= n && w.keep.end + self.context <= total => n,
                    Some(n) if need <= n && total >= n => {
                        w.start = total - n;
                        n
                    }
                    // Codes shorter than a window, all there: the whole of them, as the
                    // one-shot decode calls it (one more length, not one per chunk).
                    Some(n) if need <= n && total < n => {
                        w.start = 0;
                        total
                    }
                    _ => need,
                }
            }
        };
        let audio = self.codec.decode_padded(&self.codes, w.start, n)?;
        let (a, b) = (w.keep.start - w.start, w.keep.end - w.start);
        let part = audio.get(a * hop..b * hop).ok_or_else(|| {
            RuntimeError::Internal("a codec window gave less audio than its frames".into())
        })?;
        self.audio.extend_from_slice(part);
        self.emitted = w.keep.end;
        Ok(())
    }
}

/// The codec's two graphs.
pub struct Codec {
    decoder: Mutex<Session>,
    encoder: Mutex<Session>,
    info: DacInfo,
    /// Fixed-size graphs (coreml): every call is a window of this plan.
    plan: Option<ChunkPlan>,
    /// Graphs of any length run in windows of this plan when the input is longer than one
    /// (every call the same length; shorter input is decoded exactly as it is).
    windows: Option<ChunkPlan>,
    /// The input lengths the decoder graph has been called with (for tests and diagnostics).
    lengths: Mutex<std::collections::BTreeSet<usize>>,
}

impl Codec {
    /// The codec of `info`; `window`: the length of every decoder call for a codec of
    /// dynamic length (see [`crate::ModelOptions::codec_window`]).
    pub fn new(
        decoder: Session,
        encoder: Session,
        info: DacInfo,
        window: Option<usize>,
    ) -> Result<Self, RuntimeError> {
        let plan = info.decoder_chunk_frames.map(|frames| ChunkPlan {
            frames,
            context: info.decoder_context_frames,
        });
        let context = info.decoder_context_frames.max(DAC_CONTEXT_FRAMES);
        let windows = match (plan, window) {
            (None, Some(frames)) => {
                let w = ChunkPlan { frames, context };
                w.check()?;
                Some(w)
            }
            _ => None,
        };
        Ok(Self {
            decoder: Mutex::new(decoder),
            encoder: Mutex::new(encoder),
            info,
            plan,
            windows,
            lengths: Mutex::new(Default::default()),
        })
    }

    /// The distinct input lengths the decoder graph has been called with so far.
    pub fn lengths_seen(&self) -> Vec<usize> {
        let l = self.lengths.lock().unwrap_or_else(|e| e.into_inner());
        l.iter().copied().collect()
    }

    /// The length of every decoder call, when fixed (fixed-size graphs, or windows).
    pub fn window(&self) -> Option<usize> {
        self.plan.or(self.windows).map(|p| p.frames)
    }

    pub fn info(&self) -> &DacInfo {
        &self.info
    }

    /// Decodes codes `[frames, C]` into a mono waveform at the codec's sample rate.
    pub fn decode(&self, codes: &Frames) -> Result<Vec<f32>, RuntimeError> {
        let total = codes.len();
        let hop = self.info.hop_length;
        match (self.plan, self.windows) {
            (Some(plan), _) => plan.run(total, hop, |start| {
                self.decode_padded(codes, start, plan.frames)
            }),
            // Windows that end at the last frame: no padding, the edges are real edges.
            (None, Some(w)) if total > w.frames => w.run(total, hop, |start| {
                self.decode_padded(codes, start, w.frames)
            }),
            _ => self.decode_once(codes),
        }
    }

    /// One decoder call on the `n` frames of `codes` from `start`; codes past their end are 0
    /// (a fixed-size window over the utterance's end), and their audio is the caller's to cut.
    fn decode_padded(
        &self,
        codes: &Frames,
        start: usize,
        n: usize,
    ) -> Result<Vec<f32>, RuntimeError> {
        let c = codes.channels;
        let end = (start + n).min(codes.len());
        let mut window = Frames::new(n, c);
        window.data.fill(0);
        window.data[..(end - start) * c].copy_from_slice(&codes.data[start * c..end * c]);
        self.decode_once(&window)
    }

    /// One decoder call on all of `codes`.
    fn decode_once(&self, codes: &Frames) -> Result<Vec<f32>, RuntimeError> {
        let (frames, c) = (codes.len(), codes.channels);
        if frames == 0 {
            return Ok(Vec::new());
        }
        // [frames, C] -> [1, C, frames]
        let mut data = vec![0i64; frames * c];
        for t in 0..frames {
            for ch in 0..c {
                data[ch * frames + t] = codes.data[t * c + ch];
            }
        }
        let input = Tensor::from_array(([1usize, c, frames], data))?;
        self.lengths
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(frames);
        let mut s = self.decoder.lock().unwrap_or_else(|e| e.into_inner());
        let out = s.run(ort::inputs![names::dac::CODES => input])?;
        let audio = out
            .get(names::dac::AUDIO)
            .ok_or_else(|| RuntimeError::GraphMismatch {
                graph: "dac_decoder".into(),
                kind: "output",
                name: names::dac::AUDIO.into(),
            })?
            .try_extract_tensor::<f32>()?
            .1
            .to_vec();
        Ok(audio)
    }

    /// Encodes a mono waveform at the codec's sample rate into codes `[frames, C]`. The audio
    /// is zero-padded on the right to a whole number of frames, as the codec's preprocessing
    /// does.
    pub fn encode(&self, wave: &[f32]) -> Result<Frames, RuntimeError> {
        let hop = self.info.hop_length;
        let c = self.info.n_codebooks;
        let total = wave.len().div_ceil(hop).max(1);
        let data = match self.plan {
            None => {
                let mut padded = wave.to_vec();
                padded.resize(total * hop, 0.0);
                self.encode_once(padded)?
            }
            Some(plan) => plan.run(total, c, |start| {
                let mut w = vec![0f32; plan.frames * hop];
                let from = (start * hop).min(wave.len());
                let to = ((start + plan.frames) * hop).min(wave.len());
                w[..to - from].copy_from_slice(&wave[from..to]);
                self.encode_once(w)
            })?,
        };
        Ok(Frames { channels: c, data })
    }

    /// One encoder call on all of `wave` (a multiple of the hop length); codes frame-major.
    fn encode_once(&self, wave: Vec<f32>) -> Result<Vec<i64>, RuntimeError> {
        let n = wave.len();
        let input = Tensor::from_array(([1usize, 1, n], wave))?;
        let mut s = self.encoder.lock().unwrap_or_else(|e| e.into_inner());
        let out = s.run(ort::inputs![names::dac::AUDIO => input])?;
        let codes = out
            .get(names::dac::CODES)
            .ok_or_else(|| RuntimeError::GraphMismatch {
                graph: "dac_encoder".into(),
                kind: "output",
                name: names::dac::CODES.into(),
            })?;
        let (shape, data) = codes.try_extract_tensor::<i64>()?;
        let (c, frames) = (shape[1] as usize, shape[2] as usize);
        let mut f = vec![0i64; frames * c];
        for t in 0..frames {
            for ch in 0..c {
                f[t * c + ch] = data[ch * frames + t];
            }
        }
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covered(plan: ChunkPlan, total: usize) {
        let ws = plan.windows(total).unwrap();
        // The kept parts tile 0..total in order.
        let mut next = 0;
        for w in &ws {
            assert_eq!(w.keep.start, next, "{ws:?}");
            next = w.keep.end;
            // A window is one graph call, inside the input (or the one padded window).
            assert!(w.start + plan.frames <= total.max(plan.frames), "{ws:?}");
            // Kept frames are `context` away from cut edges (not from the input's edges).
            if w.start > 0 {
                assert!(w.keep.start >= w.start + plan.context, "{ws:?}");
            }
            if w.start + plan.frames < total {
                assert!(w.keep.end + plan.context <= w.start + plan.frames, "{ws:?}");
            }
        }
        assert_eq!(next, total);
    }

    #[test]
    fn windows_tile_every_length_with_context_at_cut_edges() {
        let plan = ChunkPlan {
            frames: 32,
            context: 11,
        };
        for total in 1..200 {
            covered(plan, total);
        }
        assert!(plan.windows(0).unwrap().is_empty());
    }

    #[test]
    fn windows_too_small_for_their_context_are_refused() {
        let plan = ChunkPlan {
            frames: 20,
            context: 10,
        };
        let e = plan.windows(50).unwrap_err().to_string();
        assert!(e.contains("cannot hold 10 frames of context"), "{e}");
    }

    #[test]
    fn run_joins_the_kept_frames_in_order() {
        let plan = ChunkPlan {
            frames: 8,
            context: 2,
        };
        // A "codec" that returns each frame's index twice (2 values per frame).
        let out = plan
            .run(30, 2, |start| {
                Ok((start..start + 8).flat_map(|f| [f, f]).collect::<Vec<_>>())
            })
            .unwrap();
        let want: Vec<usize> = (0..30).flat_map(|f| [f, f]).collect();
        assert_eq!(out, want);
    }
}
