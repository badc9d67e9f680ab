//! Sampling parity with the official nari-labs code: our sampler (`dia_run::sampler`, the code
//! `generate` runs) gives the reference's final distributions, and its draws follow them.
//!
//! Fixtures: `tests/fixtures/reference/sampling/` (`scripts/make_reference.py --only sampling`;
//! `sampling.json` describes the files). The reference ran its unmodified `Dia._decoder_step`
//! teacher-forced along the greedy `eos` case's own frames on the tiny-nari checkpoint and
//! recorded, per step and channel, the probabilities `_sample_next_token` handed to
//! `torch.multinomial`, for nari-labs' defaults (cfg_scale 3, temperature 1.2, top_p 0.95,
//! cfg_filter_top_k 45) and for a set where every parameter differs (2, 0.8, 0.8, 10). The
//! recorded steps include the one where the reference chose EOS (channel 0's distribution is
//! then all EOS), steps where EOS is a candidate but not the top token, and steps where the CFG
//! filter drops it.

use std::sync::OnceLock;

use dia_run::sampler::{Sampler, SamplingParams};
use dia_run::{DiaModel, ModelOptions};
use dia_tests::{bundle, reference, rel_err};
use ndarray::{Array2, Array3, Array4, Axis};
use ndarray_npy::read_npy;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Max |ours − reference| of a probability.
const TOL: f32 = 1e-5;

struct Set {
    name: String,
    params: SamplingParams,
    /// `[R, C, V]` reference probabilities (dense).
    probs: Vec<f32>,
    /// `[R, C, V]` reference logits after the CFG filter and the EOS/PAD masks (dense, −inf
    /// where the reference has −inf).
    filtered: Vec<f32>,
    eos_top_steps: Vec<usize>,
}

struct Fixture {
    text: String,
    /// Recorded decoder steps (positions).
    steps: Vec<usize>,
    /// `[S, C]` decoder input of steps 0..S.
    tokens: Array2<i64>,
    /// `[R, 2, C, V]` reference logits of the recorded steps.
    logits: Array4<f32>,
    channels: usize,
    vocab: usize,
    eos: usize,
    sets: Vec<Set>,
}

impl Fixture {
    fn logits(&self, r: usize) -> &[f32] {
        self.logits
            .index_axis(Axis(0), r)
            .to_slice()
            .expect("contiguous")
    }

    fn row<'a>(&self, dense: &'a [f32], r: usize, ch: usize) -> &'a [f32] {
        let (c, v) = (self.channels, self.vocab);
        &dense[(r * c + ch) * v..(r * c + ch + 1) * v]
    }

    fn sampler(&self) -> Sampler {
        Sampler::new(self.channels, self.vocab, self.eos)
    }
}

fn sampling(name: &str) -> std::path::PathBuf {
    reference("sampling").join(name)
}

/// Expands `<set>_<kind>_index.npy` / `<set>_<kind>.npy` (`[R, C, K]`, index −1 = padding) to
/// `[R, C, V]`, `fill` elsewhere.
fn dense(set: &str, kind: &str, vocab: usize, fill: f32) -> Vec<f32> {
    let index: Array3<i64> = read_npy(sampling(&format!("{set}_{kind}_index.npy"))).unwrap();
    let value: Array3<f32> = read_npy(sampling(&format!("{set}_{kind}.npy"))).unwrap();
    assert_eq!(index.shape(), value.shape());
    let (r, c, _) = index.dim();
    let mut out = vec![fill; r * c * vocab];
    for ((pos, &i), &x) in index.indexed_iter().zip(value.iter()) {
        if i >= 0 {
            out[(pos.0 * c + pos.1) * vocab + i as usize] = x;
        }
    }
    out
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let p = sampling("sampling.json");
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        )
        .unwrap();
        let usize_of = |v: &serde_json::Value| v.as_u64().unwrap() as usize;
        let steps: Vec<usize> = meta["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(usize_of)
            .collect();
        let (channels, vocab) = (usize_of(&meta["channels"]), usize_of(&meta["vocab_size"]));
        let logits: Array4<f32> = read_npy(sampling("logits.npy")).unwrap();
        assert_eq!(logits.shape(), [steps.len(), 2, channels, vocab]);
        let tokens: Array2<i64> = read_npy(sampling("tokens.npy")).unwrap();
        assert_eq!(tokens.dim(), (steps.last().unwrap() + 1, channels));
        let sets = meta["sets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let name = s["name"].as_str().unwrap().to_string();
                Set {
                    params: SamplingParams {
                        cfg_scale: s["cfg_scale"].as_f64().unwrap() as f32,
                        cfg_filter_top_k: usize_of(&s["cfg_filter_top_k"]),
                        temperature: s["temperature"].as_f64().unwrap() as f32,
                        top_p: s["top_p"].as_f64().unwrap() as f32,
                    },
                    probs: dense(&name, "probs", vocab, 0.0),
                    filtered: dense(&name, "filtered", vocab, f32::NEG_INFINITY),
                    eos_top_steps: s["eos_top_steps"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(usize_of)
                        .collect(),
                    name,
                }
            })
            .collect();
        Fixture {
            text: meta["text"].as_str().unwrap().to_string(),
            steps,
            tokens,
            logits,
            channels,
            vocab,
            eos: usize_of(&meta["eos_token_id"]),
            sets,
        }
    })
}

/// Where our probabilities of step `r` differ from the reference's: (max abs difference,
/// description of the worst channel), after checking both have the same support.
fn compare_distribution(f: &Fixture, set: &Set, r: usize, ours: &[f32]) -> (f32, String) {
    let mut worst = (0f32, String::new());
    for ch in 0..f.channels {
        let want = f.row(&set.probs, r, ch);
        let got = &ours[ch * f.vocab..(ch + 1) * f.vocab];
        let sum: f32 = got.iter().sum();
        assert!(
            (sum - 1.0).abs() < 1e-5,
            "{}: step {} channel {ch}: our probabilities sum to {sum}",
            set.name,
            f.steps[r]
        );
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let d = (g - w).abs();
            if d > worst.0 || (d == worst.0 && worst.1.is_empty()) {
                worst = (
                    d,
                    format!(
                        "step {} channel {ch} token {i}: ours {g}, reference {w}",
                        f.steps[r]
                    ),
                );
            }
        }
    }
    worst
}

/// The support (tokens with probability > 0) of a row must be the reference's, exactly.
fn assert_same_support(f: &Fixture, set: &Set, r: usize, ours: &[f32], what: &str) {
    for ch in 0..f.channels {
        let want = f.row(&set.probs, r, ch);
        let got = &ours[ch * f.vocab..(ch + 1) * f.vocab];
        let diff: Vec<usize> = (0..f.vocab)
            .filter(|&i| (got[i] > 0.0) != (want[i] > 0.0))
            .collect();
        assert!(
            diff.is_empty(),
            "{what}, {}: step {} channel {ch}: support differs from the reference's at tokens \
             {diff:?} (ours {:?}, reference {:?})",
            set.name,
            f.steps[r],
            diff.iter().map(|&i| got[i]).collect::<Vec<_>>(),
            diff.iter().map(|&i| want[i]).collect::<Vec<_>>(),
        );
    }
}

/// The fixtures cover both kinds of step: EOS the top channel-0 token (the reference's own EOS
/// step; the distribution is then all EOS) and not.
#[test]
fn fixtures_cover_eos_and_non_eos_steps() {
    let f = fixture();
    assert_eq!(f.sets.len(), 2, "the default set and one more");
    for set in &f.sets {
        assert!(!set.eos_top_steps.is_empty(), "{}: no EOS step", set.name);
        assert!(
            set.eos_top_steps.len() < f.steps.len(),
            "{}: no step without EOS",
            set.name
        );
        for (r, &s) in f.steps.iter().enumerate() {
            let p_eos = f.row(&set.probs, r, 0)[f.eos];
            let top = set.eos_top_steps.contains(&s);
            assert_eq!(p_eos, if top { 1.0 } else { 0.0 }, "{}: step {s}", set.name);
        }
    }
}

/// Our sampler on the reference's own logits gives the reference's final distributions: every
/// set, step and channel. Measured: max |difference| 1.2e-7 (float32 rounding of the
/// softmax; the CFG-filtered logits agree bit for bit).
#[test]
fn reference_logits_give_reference_distributions() {
    let f = fixture();
    let mut s = f.sampler();
    let mut worst = (0f32, String::new());
    for set in &f.sets {
        for r in 0..f.steps.len() {
            s.distribution(f.logits(r), &set.params);
            // Steps 1-3 (CFG, its top-k, the EOS/PAD masks): the very same values.
            for ch in 0..f.channels {
                let want = f.row(&set.filtered, r, ch);
                let got = &s.filtered_logits()[ch * f.vocab..(ch + 1) * f.vocab];
                let bad: Vec<usize> = (0..f.vocab)
                    .filter(|&i| got[i].to_bits() != want[i].to_bits())
                    .collect();
                assert!(
                    bad.is_empty(),
                    "{}: step {} channel {ch}: filtered logits differ at tokens {bad:?}",
                    set.name,
                    f.steps[r]
                );
            }
            assert_same_support(f, set, r, s.probabilities(), "reference logits");
            let (d, at) = compare_distribution(f, set, r, s.probabilities());
            if d >= worst.0 {
                worst = (d, format!("{}: {at}", set.name));
            }
        }
    }
    eprintln!(
        "reference logits: max |ours - reference| probability {:e} ({})",
        worst.0, worst.1
    );
    assert!(
        worst.0 <= TOL,
        "max difference {:e} at {}",
        worst.0,
        worst.1
    );
}

/// End to end: our model (the tiny-nari bundle, float32) teacher-forced on the same frames,
/// its logits through our sampler, give the reference's distributions. Measured: logits within
/// 1.0e-6 of the reference's (relative to their largest magnitude), probabilities within
/// 1.4e-6 of the reference's. The supports are asserted equal, not tolerated: a token flips in
/// or out only where the logits' error reaches a boundary, and the recorded steps are far from
/// one (from the reference's logits: the k-th and (k+1)-th CFG values differ by at least
/// 1.0e-3, 19x the most a logit error of 1.0e-6 · max|logit| (7.4e-6) can move them with
/// cfg_scale 3; the cumulative probability at each top-p rank is at least 2.4e-5 from top_p, 17x
/// the probability errors). Should a re-generated fixture or a changed graph put a step on such
/// a near-tie, the support assertion names the step, channel and tokens: check that margin
/// before anything else, and drop that step from the fixture rather than loosen this test.
#[test]
fn model_logits_give_reference_distributions() {
    let f = fixture();
    let model = DiaModel::load(&bundle("tiny-nari"), &ModelOptions::default()).unwrap();
    let text = dia_run::tokenizer::encode_text(&f.text, model.manifest().max_text_len).unwrap();
    let mut utt = model.utterance(&text).unwrap();
    let mut s = f.sampler();
    let (mut worst, mut worst_logits) = ((0f32, String::new()), 0f32);
    for t in 0..f.tokens.nrows() {
        let input: Vec<i64> = f.tokens.row(t).to_vec();
        let logits = utt.step(&input, t).unwrap();
        let Some(r) = f.steps.iter().position(|&x| x == t) else {
            continue;
        };
        worst_logits = worst_logits.max(rel_err(logits, f.logits(r)));
        for set in &f.sets {
            s.distribution(logits, &set.params);
            assert_same_support(f, set, r, s.probabilities(), "model logits");
            let (d, at) = compare_distribution(f, set, r, s.probabilities());
            if d >= worst.0 {
                worst = (d, format!("{}: {at}", set.name));
            }
        }
    }
    eprintln!(
        "model logits: rel err {worst_logits:e}; max |ours - reference| probability {:e} ({})",
        worst.0, worst.1
    );
    assert!(
        worst.0 <= TOL,
        "max difference {:e} at {}",
        worst.0,
        worst.1
    );
}

/// `ln(n!)` for n = 0..=max.
fn ln_factorials(max: usize) -> Vec<f64> {
    let mut out = vec![0f64; max + 1];
    for n in 1..=max {
        out[n] = out[n - 1] + (n as f64).ln();
    }
    out
}

/// `E|X − n·p|` for `X ~ Binomial(n, p)`, summed exactly over the binomial's n + 1 outcomes.
fn binomial_mean_abs_dev(n: usize, p: f64, lnf: &[f64]) -> f64 {
    if p <= 0.0 || p >= 1.0 {
        return 0.0;
    }
    let (lp, lq) = (p.ln(), (-p).ln_1p());
    (0..=n)
        .map(|k| {
            let ln_pmf = lnf[n] - lnf[k] - lnf[n - k] + k as f64 * lp + (n - k) as f64 * lq;
            ln_pmf.exp() * (k as f64 - n as f64 * p).abs()
        })
        .sum()
}

/// Seeded draws: for 500 seeds, draws of our sampler on every recorded step's reference logits,
/// both parameter sets, one `ChaCha8Rng::seed_from_u64(seed)` per seed and row (its own
/// ChaCha stream per step and set, so that every draw is independent of every other). Every
/// draw lands inside the reference's support, and the empirical frequencies agree with the
/// reference's distribution in total variation (TV):
///
/// * under "our draws follow the reference's distribution p", a row's (set, step, channel)
///   `TV = ½ Σ |n_i/N − p_i|` over N = 500 draws has the expectation
///   `E_r = 1/(2N) Σ_i E|Binomial(N, p_i) − N p_i|`, computed here exactly from p;
/// * one draw moves a row's TV by at most 1/N, so (McDiarmid) `P(TV_r ≥ E_r + t) ≤ exp(−2Nt²)`,
///   and for the mean over the R rows `P(mean ≥ mean E + t) ≤ exp(−2NRt²)`.
///
/// The bounds below take t for a false-alarm probability of 1e-6 (per row: 1e-6 / R each):
/// a row's TV may exceed E_r by ~0.14, the mean TV its expectation by only ~0.007, so a
/// sampler drawing from a distribution that differs from the reference's in most rows fails
/// the mean even where every single row would pass.
///
/// `Sampler::sample` is `distribution` then `draw`: the distribution does not depend on the
/// seed, so it is computed once per row and `draw` (the same code `sample` runs) draws 500
/// times (`sample` per draw would take a minute in a debug build);
/// `sample_is_distribution_then_draw` checks the two give the same tokens.
#[test]
fn seeded_draws_follow_reference_distributions() {
    const SEEDS: u64 = 500;
    const FALSE_ALARM: f64 = 1e-6;
    let f = fixture();
    let (c, v, n) = (f.channels, f.vocab, SEEDS as usize);
    let mut s = f.sampler();
    let mut out = vec![0i64; c];
    // counts[set][r][ch][token]
    let mut counts = vec![vec![0u32; f.steps.len() * c * v]; f.sets.len()];
    for (k, set) in f.sets.iter().enumerate() {
        for r in 0..f.steps.len() {
            s.distribution(f.logits(r), &set.params);
            for seed in 0..SEEDS {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream((k * f.steps.len() + r) as u64);
                s.draw(&mut rng, &mut out);
                for (ch, &tok) in out.iter().enumerate() {
                    assert!(
                        (0..v as i64).contains(&tok),
                        "seed {seed}: token {tok} out of range"
                    );
                    let p = f.row(&set.probs, r, ch)[tok as usize];
                    assert!(
                        p > 0.0,
                        "{}: seed {seed}: step {} channel {ch}: drew token {tok}, which the \
                         reference gives probability 0",
                        set.name,
                        f.steps[r]
                    );
                    counts[k][(r * c + ch) * v + tok as usize] += 1;
                }
            }
        }
    }

    let lnf = ln_factorials(n);
    let rows = (f.sets.len() * f.steps.len() * c) as f64;
    let t_row = ((rows / FALSE_ALARM).ln() / (2.0 * n as f64)).sqrt();
    let t_mean = ((1.0 / FALSE_ALARM).ln() / (2.0 * n as f64 * rows)).sqrt();
    let (mut sum_tv, mut sum_expected) = (0f64, 0f64);
    let mut worst_row = (f64::NEG_INFINITY, String::new());
    for (k, set) in f.sets.iter().enumerate() {
        for r in 0..f.steps.len() {
            for ch in 0..c {
                let p = f.row(&set.probs, r, ch);
                let cnt = &counts[k][(r * c + ch) * v..(r * c + ch + 1) * v];
                let (mut tv, mut expected) = (0f64, 0f64);
                for (&pi, &ni) in p.iter().zip(cnt) {
                    tv += (ni as f64 / n as f64 - pi as f64).abs();
                    expected += binomial_mean_abs_dev(n, pi as f64, &lnf);
                }
                let (tv, expected) = (tv / 2.0, expected / (2.0 * n as f64));
                let what = format!(
                    "{}: step {} channel {ch}: TV {tv:.4}, expected {expected:.4}",
                    set.name, f.steps[r]
                );
                assert!(
                    tv <= expected + t_row,
                    "{what}, bound {:.4}",
                    expected + t_row
                );
                if tv - expected > worst_row.0 {
                    worst_row = (tv - expected, what);
                }
                sum_tv += tv;
                sum_expected += expected;
            }
        }
    }
    let (mean_tv, mean_expected) = (sum_tv / rows, sum_expected / rows);
    eprintln!(
        "seeded draws: {rows} rows of {n} draws: mean TV {mean_tv:.4} (expected {mean_expected:.4}, \
         bound {:.4}); largest row excess {:.4} (bound {t_row:.4}): {}",
        mean_expected + t_mean,
        worst_row.0,
        worst_row.1
    );
    assert!(
        mean_tv <= mean_expected + t_mean,
        "mean TV {mean_tv:.4} over {rows} rows exceeds its expectation {mean_expected:.4} by more \
         than {t_mean:.4}"
    );
}

/// `sample` (what generation calls) draws exactly what `distribution` then `draw` draw with
/// the same seed, and leaves the same probabilities behind.
#[test]
fn sample_is_distribution_then_draw() {
    let f = fixture();
    let (mut a, mut b) = (f.sampler(), f.sampler());
    let (mut ta, mut tb) = (vec![0i64; f.channels], vec![0i64; f.channels]);
    for set in &f.sets {
        for r in 0..f.steps.len() {
            for seed in 0..4 {
                a.sample(
                    f.logits(r),
                    &set.params,
                    &mut ChaCha8Rng::seed_from_u64(seed),
                    &mut ta,
                );
                b.distribution(f.logits(r), &set.params);
                b.draw(&mut ChaCha8Rng::seed_from_u64(seed), &mut tb);
                assert_eq!(ta, tb, "{}: step {} seed {seed}", set.name, f.steps[r]);
                assert_eq!(a.probabilities(), b.probabilities());
            }
        }
    }
}

/// The draw is only as wide as the distribution: on a one-hot row (EOS top on channel 0 at the
/// reference's EOS step) every seed draws EOS.
#[test]
fn eos_step_always_draws_eos() {
    let f = fixture();
    let mut s = f.sampler();
    let mut out = vec![0i64; f.channels];
    for set in &f.sets {
        for &step in &set.eos_top_steps {
            let r = f.steps.iter().position(|&x| x == step).unwrap();
            for seed in 0..100 {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                s.sample(f.logits(r), &set.params, &mut rng, &mut out);
                assert_eq!(
                    out[0], f.eos as i64,
                    "{}: step {step} seed {seed}",
                    set.name
                );
            }
        }
    }
}
