//! Joining the audio of consecutive segments with a short equal-power crossfade, one-shot
//! ([`crossfade_join`]) or as the samples stream in ([`Crossfade`]); both give the same
//! samples.
//!
//! At each join the last `n` samples of what came before are mixed with the first `n` of the
//! next segment, `n` the crossfade length or less when either side is shorter. The segments
//! are generated separately, so they are uncorrelated: equal power (cos/sin) keeps the
//! loudness steady through the fade where a linear one would dip.

/// Weights of sample `i` of an `n`-sample fade: (outgoing, incoming).
fn weights(i: usize, n: usize) -> (f32, f32) {
    let t = (i as f32 + 0.5) / n as f32 * std::f32::consts::FRAC_PI_2;
    (t.cos(), t.sin())
}

/// Mixes `incoming` into the end of `out` (its last `incoming.len()` samples fade out).
fn mix_into(out: &mut [f32], incoming: &[f32]) {
    let n = incoming.len();
    let tail = out.len() - n;
    for (i, (o, &b)) in out[tail..].iter_mut().zip(incoming).enumerate() {
        let (wa, wb) = weights(i, n);
        *o = *o * wa + b * wb;
    }
}

/// The segments joined, each join faded over `len` samples.
pub fn crossfade_join(segments: &[Vec<f32>], len: usize) -> Vec<f32> {
    let mut out: Vec<f32> = Vec::new();
    for (k, s) in segments.iter().enumerate() {
        let n = if k == 0 {
            0
        } else {
            len.min(out.len()).min(s.len())
        };
        mix_into(&mut out, &s[..n]);
        out.extend_from_slice(&s[n..]);
    }
    out
}

/// The streaming join: push each segment's samples as they come and call
/// [`Crossfade::end_segment`] after each segment; it hands out every sample that no later
/// fade can change, and holds back the rest.
#[derive(Debug)]
pub struct Crossfade {
    len: usize,
    /// Samples not handed out yet: at most `len` once settled.
    pending: Vec<f32>,
    /// The end of what came before, waiting for the next segment's first samples.
    tail: Option<Vec<f32>>,
    /// The next segment's first samples, while fewer than the tail.
    head: Vec<f32>,
    out: Vec<f32>,
}

impl Crossfade {
    pub fn new(len: usize) -> Self {
        Self {
            len,
            pending: Vec::with_capacity(2 * len),
            tail: None,
            head: Vec::with_capacity(len),
            out: Vec::new(),
        }
    }

    /// The current segment's next samples; returns what is final.
    pub fn push(&mut self, samples: &[f32]) -> &[f32] {
        self.out.clear();
        match &self.tail {
            Some(tail) => {
                self.head.extend_from_slice(samples);
                if self.head.len() >= tail.len() {
                    self.join();
                    self.settle();
                }
            }
            None => {
                self.pending.extend_from_slice(samples);
                self.settle();
            }
        }
        &self.out
    }

    /// The current segment is over: the next one's samples fade in over its end.
    pub fn end_segment(&mut self) -> &[f32] {
        self.out.clear();
        if self.tail.is_some() {
            // A segment shorter than the fade: it all fades in.
            self.join();
        }
        self.settle();
        self.tail = Some(std::mem::take(&mut self.pending));
        &self.out
    }

    /// The script is over: everything held back.
    pub fn finish(&mut self) -> &[f32] {
        self.out.clear();
        if self.tail.is_some() {
            self.join();
        }
        self.out.append(&mut self.pending);
        &self.out
    }

    /// Mixes the waiting head into the tail; the result and the rest of the head are pending.
    fn join(&mut self) {
        let tail = self.tail.take().unwrap_or_default();
        let n = tail.len().min(self.head.len());
        self.pending.clear();
        self.pending.extend_from_slice(&tail);
        mix_into(&mut self.pending, &self.head[..n]);
        self.pending.extend_from_slice(&self.head[n..]);
        self.head.clear();
    }

    /// Hands out all but the last `len` pending samples.
    fn settle(&mut self) {
        let keep = self.len.min(self.pending.len());
        let ready = self.pending.len() - keep;
        self.out.extend(self.pending.drain(..ready));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_fade_keeps_constant_power_and_the_length_shrinks_by_the_overlap() {
        let a = vec![1.0f32; 100];
        let b = vec![1.0f32; 100];
        let j = crossfade_join(&[a, b], 10);
        assert_eq!(j.len(), 190);
        for (i, &v) in j[90..100].iter().enumerate() {
            let (wa, wb) = weights(i, 10);
            assert!((wa * wa + wb * wb - 1.0).abs() < 1e-6);
            assert!((v - (wa + wb)).abs() < 1e-6);
        }
        assert_eq!(&j[..90], &[1.0; 90][..]);
    }

    proptest! {
        #[test]
        fn streaming_equals_the_one_shot_join(
            segments in proptest::collection::vec(proptest::collection::vec(-1.0f32..1.0, 0..300), 1..6),
            len in 0usize..64,
            chunk in 1usize..50,
        ) {
            let want = crossfade_join(&segments, len);
            let mut x = Crossfade::new(len);
            let mut got = Vec::new();
            for s in &segments {
                for c in s.chunks(chunk) {
                    got.extend_from_slice(x.push(c));
                }
                got.extend_from_slice(x.end_segment());
            }
            got.extend_from_slice(x.finish());
            prop_assert_eq!(got, want);
        }
    }
}
