//! Turning the CFG pair's logits into the next frame's tokens, as nari-labs `_decoder_step`
//! and `_sample_next_token` do:
//!
//! 1. `cfg = cond + scale · (cond − uncond)`;
//! 2. keep the top-k (`cfg_filter_top_k`) indices of `cfg`, taking the *conditional* logits
//!    there (others −inf);
//! 3. tokens above EOS are −inf on every channel, EOS and above on channels 1..;
//! 4. temperature 0: argmax. Otherwise divide by temperature; EOS is masked unless it is the
//!    top logit, and then everything below EOS is; top-k again; top-p; softmax; draw.
//!
//! [`Sampler::sample`] is two public steps, so that tests check the very code generation runs:
//! [`Sampler::distribution`] computes every channel's final probabilities (what the reference
//! hands to `torch.multinomial`; for temperature 0 a one-hot row at the argmax) and
//! [`Sampler::draw`] draws one token per channel from them.
//!
//! All buffers are allocated once per generation; a step allocates nothing.

use rand::Rng;

#[derive(Clone, Copy, Debug)]
pub struct SamplingParams {
    pub cfg_scale: f32,
    pub cfg_filter_top_k: usize,
    pub temperature: f32,
    pub top_p: f32,
}

pub struct Sampler {
    channels: usize,
    vocab: usize,
    eos: usize,
    /// `[C, V]`: the CFG-filtered conditional logits (steps 1-3).
    logits: Vec<f32>,
    /// `[C, V]`: the final probabilities (step 4) the draw uses.
    probs: Vec<f32>,
    /// `[V]`: CFG logits, then one channel's tempered logits.
    scratch: Vec<f32>,
    /// Token ids of one channel's candidates (finite logits), ascending.
    order: Vec<u32>,
    /// Positions in `order`, sorted by probability (top-p).
    ranked: Vec<u32>,
    /// The candidates' tempered logits, in `order`'s order.
    vals: Vec<f32>,
    /// Scratch of the k-th largest search.
    select: Vec<f32>,
}

/// The k-th largest value of `v` (the top-k are the values >= it; among exact ties at the
/// boundary torch.topk's choice is unspecified too). Uses `buf` as scratch.
fn top_k_threshold(v: &[f32], k: usize, buf: &mut Vec<f32>) -> f32 {
    if k >= v.len() {
        return f32::NEG_INFINITY;
    }
    buf.clear();
    buf.extend_from_slice(v);
    let (_, kth, _) = buf.select_nth_unstable_by(k.max(1) - 1, |a, b| b.total_cmp(a));
    *kth
}

/// First index of the maximum (torch.argmax picks the first on ties).
pub fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// `softmax` of the candidates' values `vals` (token ids `cand`, ascending) written into
/// their places of `probs`; every other entry of `probs` must already be 0.
fn softmax_into(cand: &[u32], vals: &[f32], probs: &mut [f32]) {
    let max = vals.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0f32;
    for (&i, &x) in cand.iter().zip(vals) {
        let e = (x - max).exp();
        probs[i as usize] = e;
        sum += e;
    }
    for &i in cand {
        probs[i as usize] /= sum;
    }
}

impl Sampler {
    pub fn new(channels: usize, vocab: usize, eos: usize) -> Self {
        Self {
            channels,
            vocab,
            eos,
            logits: vec![0.0; channels * vocab],
            probs: vec![0.0; channels * vocab],
            scratch: vec![0.0; vocab],
            order: Vec::with_capacity(vocab),
            ranked: Vec::with_capacity(vocab),
            vals: Vec::with_capacity(vocab),
            select: Vec::with_capacity(vocab),
        }
    }

    /// The CFG-filtered conditional logits of the last call, `[channels, vocab]` (steps 1-3).
    pub fn filtered_logits(&self) -> &[f32] {
        &self.logits
    }

    /// The final per-channel probabilities of the last call, `[channels, vocab]`: what
    /// [`Sampler::draw`] draws from (the reference's `torch.multinomial` input; one-hot at the
    /// argmax for temperature 0).
    pub fn probabilities(&self) -> &[f32] {
        &self.probs
    }

    /// `pair` is the decoder output `[2, C, V]` (row 0 unconditional, row 1 conditional).
    /// Writes one token per channel into `out`: [`Sampler::distribution`], then
    /// [`Sampler::draw`].
    pub fn sample(
        &mut self,
        pair: &[f32],
        p: &SamplingParams,
        rng: &mut impl Rng,
        out: &mut [i64],
    ) {
        self.distribution(pair, p);
        self.draw(rng, out);
    }

    /// Computes every channel's final probabilities for the decoder output `pair`
    /// (`[2, C, V]`, row 0 unconditional, row 1 conditional) and returns them, `[C, V]`.
    pub fn distribution(&mut self, pair: &[f32], p: &SamplingParams) -> &[f32] {
        let (c, v, eos) = (self.channels, self.vocab, self.eos);
        assert_eq!(pair.len(), 2 * c * v, "logits must be [2, {c}, {v}]");
        let (uncond, cond) = pair.split_at(c * v);
        for ch in 0..c {
            let u = &uncond[ch * v..(ch + 1) * v];
            let k = &cond[ch * v..(ch + 1) * v];
            for i in 0..v {
                self.scratch[i] = k[i] + p.cfg_scale * (k[i] - u[i]);
            }
            let thr = top_k_threshold(&self.scratch, p.cfg_filter_top_k, &mut self.select);
            let row = &mut self.logits[ch * v..(ch + 1) * v];
            for ((r, &c), &kv) in row.iter_mut().zip(&self.scratch).zip(k) {
                *r = if c >= thr { kv } else { f32::NEG_INFINITY };
            }
            let first_masked = if ch == 0 { eos + 1 } else { eos };
            row[first_masked.min(v)..].fill(f32::NEG_INFINITY);
        }
        for ch in 0..c {
            self.channel_probabilities(ch, p);
        }
        &self.probs
    }

    /// Step 4 for one channel: `logits` row → `probs` row.
    ///
    /// Only the candidates (the finite logits: at most the CFG top-k) are worked on, in index
    /// order, so every max, sum and division sees the same values in the same order as over
    /// the whole row, where the others contribute exact zeros: the same probabilities, bit for
    /// bit, for a tenth of the work (this runs for every slot of a batch every step).
    fn channel_probabilities(&mut self, ch: usize, p: &SamplingParams) {
        let (v, eos) = (self.vocab, self.eos);
        let filtered = &self.logits[ch * v..(ch + 1) * v];
        let probs = &mut self.probs[ch * v..(ch + 1) * v];
        if p.temperature == 0.0 {
            probs.fill(0.0);
            probs[argmax(filtered)] = 1.0;
            return;
        }
        probs.fill(0.0);
        let (cand, vals) = (&mut self.order, &mut self.vals);
        cand.clear();
        cand.extend((0..v as u32).filter(|&i| filtered[i as usize] > f32::NEG_INFINITY));
        vals.clear();
        vals.extend(cand.iter().map(|&i| filtered[i as usize] / p.temperature));
        if eos < v && !cand.is_empty() {
            // First index of the maximum, as over the whole row.
            let best = cand[argmax(vals)] as usize;
            for (&i, x) in cand.iter().zip(vals.iter_mut()) {
                let i = i as usize;
                if (best != eos && i == eos) || (best == eos && i < eos) {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
        // top-k again, on the tempered logits (the reference passes cfg_filter_top_k here too,
        // so this cuts nothing the CFG filter left, barring exact ties; kept to mirror it).
        let thr = top_k_threshold(vals, p.cfg_filter_top_k, &mut self.select);
        for x in vals.iter_mut() {
            if *x < thr {
                *x = f32::NEG_INFINITY;
            }
        }
        softmax_into(cand, vals, probs);
        if p.top_p < 1.0 {
            // Sort the candidates by probability (ties by index), keep the smallest prefix
            // whose cumulative probability passes top_p (the first always kept), as the
            // reference's shifted mask does; softmax the kept logits again.
            let order = &mut self.ranked;
            order.clear();
            order
                .extend((0..cand.len() as u32).filter(|&j| probs[cand[j as usize] as usize] > 0.0));
            let pr = |j: u32| probs[cand[j as usize] as usize];
            order.sort_unstable_by(|&a, &b| {
                pr(b)
                    .total_cmp(&pr(a))
                    .then(cand[a as usize].cmp(&cand[b as usize]))
            });
            let mut cum = 0.0f32;
            let mut cut = order.len();
            for (rank, &j) in order.iter().enumerate() {
                if rank > 0 && cum > p.top_p {
                    cut = rank;
                    break;
                }
                cum += pr(j);
            }
            if cut < order.len() {
                for &j in &order[cut..] {
                    vals[j as usize] = f32::NEG_INFINITY;
                }
                softmax_into(cand, vals, probs);
            }
        }
    }

    /// Draws one token per channel from the probabilities of the last
    /// [`Sampler::distribution`] call (inverse CDF, one uniform number per channel).
    pub fn draw(&self, rng: &mut impl Rng, out: &mut [i64]) {
        let v = self.vocab;
        for (ch, o) in out.iter_mut().enumerate().take(self.channels) {
            let r: f32 = rng.gen::<f32>();
            let mut acc = 0.0f32;
            let mut last = 0;
            *o = -1;
            for (i, &pr) in self.probs[ch * v..(ch + 1) * v].iter().enumerate() {
                if pr > 0.0 {
                    acc += pr;
                    last = i;
                    if r < acc {
                        *o = i as i64;
                        break;
                    }
                }
            }
            if *o < 0 {
                // Rounding left the total just below r: the last candidate.
                *o = last as i64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn params(t: f32) -> SamplingParams {
        SamplingParams {
            cfg_scale: 3.0,
            cfg_filter_top_k: 2,
            temperature: t,
            top_p: 0.95,
        }
    }

    #[test]
    fn greedy_takes_conditional_logit_inside_cfg_top_k() {
        // V = 6, EOS = 4. Channel 0 cond favours 0 but CFG's top-2 is {1, 2}.
        let (c, v) = (2, 6);
        let mut pair = vec![0f32; 2 * c * v];
        let uncond = [6.0, -1.0, -1.0, 0.0, 0.0, 0.0];
        let cond = [5.0, 1.0, 2.0, 0.0, 0.0, 0.0];
        pair[..v].copy_from_slice(&uncond);
        pair[c * v..c * v + v].copy_from_slice(&cond);
        // Channel 1: EOS (4) and above are masked even if CFG loves them.
        pair[c * v + v..].copy_from_slice(&[0.0, 0.5, 0.0, 0.0, 9.0, 0.0]);
        let mut s = Sampler::new(c, v, 4);
        let mut out = [0i64; 2];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        s.sample(&pair, &params(0.0), &mut rng, &mut out);
        assert_eq!(out, [2, 1]);
        let row0 = &s.filtered_logits()[..v];
        assert_eq!(row0[0], f32::NEG_INFINITY);
        assert_eq!(row0[1], 1.0);
    }

    #[test]
    fn eos_on_channel_zero_survives_greedy_but_pad_does_not() {
        let (c, v) = (1, 6);
        let mut pair = vec![0f32; 2 * v];
        pair[v..].copy_from_slice(&[0.0, 0.0, 0.0, 0.0, 3.0, 9.0]);
        let mut s = Sampler::new(c, v, 4);
        let mut out = [0i64; 1];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        s.sample(&pair, &params(0.0), &mut rng, &mut out);
        assert_eq!(out, [4]);
    }

    #[test]
    fn distribution_then_draw() {
        // V = 6, EOS = 4, cfg_scale 0 (CFG = cond). Channel 0: 5 is masked (above EOS), so EOS
        // is the top logit and takes all the mass. Channel 1: top-3 {4, 1, 0}, EOS masked on
        // channels 1.. and not the top: {0, 1} share it.
        let (c, v) = (2, 6);
        let mut pair = vec![0f32; 2 * c * v];
        pair[c * v..c * v + v].copy_from_slice(&[0.0, 1.0, 0.5, 0.0, 3.0, 9.0]);
        pair[c * v + v..].copy_from_slice(&[1.0, 1.1, 0.9, 0.0, 9.0, 0.0]);
        let mut s = Sampler::new(c, v, 4);
        let p = SamplingParams {
            cfg_scale: 0.0,
            cfg_filter_top_k: 3,
            temperature: 1.0,
            top_p: 1.0,
        };
        let probs = s.distribution(&pair, &p).to_vec();
        assert_eq!(&probs[..v], &[0.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        let want = 1.0 / (1.0 + (0.1f32).exp());
        assert!((probs[v] - want).abs() < 1e-6, "{probs:?}");
        assert!((probs[v + 1] - (1.0 - want)).abs() < 1e-6, "{probs:?}");
        assert!(probs[v + 2..].iter().all(|&x| x == 0.0), "{probs:?}");
        // Greedy: one-hot at the argmax; every draw takes it.
        let greedy = SamplingParams {
            temperature: 0.0,
            ..p
        };
        let probs = s.distribution(&pair, &greedy).to_vec();
        assert_eq!(&probs[v..], &[0.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
        for seed in 0..20 {
            let mut out = [0i64; 2];
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            s.draw(&mut rng, &mut out);
            assert_eq!(out, [4, 1]);
        }
    }

    #[test]
    fn sampling_is_seeded_and_stays_in_the_filtered_set() {
        let (c, v) = (1, 8);
        let mut pair = vec![0f32; 2 * v];
        pair[v..].copy_from_slice(&[1.0, 1.1, 0.9, 0.0, -5.0, 0.0, 0.0, 0.0]);
        let p = SamplingParams {
            cfg_filter_top_k: 3,
            ..params(1.0)
        };
        let draw = |seed| {
            let mut s = Sampler::new(c, v, 4);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut seen = vec![];
            for _ in 0..50 {
                let mut out = [0i64; 1];
                s.sample(&pair, &p, &mut rng, &mut out);
                seen.push(out[0]);
            }
            seen
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert!(a.iter().all(|t| [0, 1, 2].contains(t)), "{a:?}");
        assert!(
            a.iter().any(|&t| t != a[0]),
            "temperature 1 should vary: {a:?}"
        );
    }
}
