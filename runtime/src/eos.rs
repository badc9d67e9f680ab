//! The end of an utterance, as nari-labs `Dia.generate` ends it: when channel 0 samples EOS
//! (or the frame budget is nearly spent), every channel is closed in delay order over the next
//! `max_delay` steps: channel c gets EOS `delay[c]` steps after the start, and PAD after that.

/// The EOS countdown of one generation.
#[derive(Clone, Debug)]
pub struct EosCountdown {
    delay: Vec<i64>,
    max_delay: usize,
    eos: i64,
    pad: i64,
    /// Steps whose frame index reaches this start the countdown even without EOS.
    budget_end: usize,
    ignore_eos: bool,
    /// Steps of the countdown still to apply (`None`: not started).
    remaining: Option<usize>,
    /// The frame index (`step + 1`) at which the countdown started.
    finished_at: Option<usize>,
    /// The step whose channel-0 token was EOS.
    eos_step: Option<usize>,
}

impl EosCountdown {
    /// For a generation of at most `max_tokens` steps. With `ignore_eos` (benchmarks) only
    /// the budget ends it.
    pub fn new(delay: &[i64], eos: i64, pad: i64, max_tokens: usize, ignore_eos: bool) -> Self {
        let max_delay = delay.iter().copied().max().unwrap_or(0).max(0) as usize;
        Self {
            delay: delay.to_vec(),
            max_delay,
            eos,
            pad,
            budget_end: max_tokens.saturating_sub(max_delay),
            ignore_eos,
            remaining: None,
            finished_at: None,
            eos_step: None,
        }
    }

    /// Takes the tokens `pred` sampled at decoder step `step`: starts the countdown when
    /// channel 0 says EOS or the budget is reached, and while it runs, overwrites the channels
    /// whose turn has come (EOS on its step, PAD after).
    pub fn apply(&mut self, step: usize, pred: &mut [i64]) {
        let current = step + 1;
        if self.remaining.is_none() {
            let is_eos = !self.ignore_eos && pred.first() == Some(&self.eos);
            if is_eos {
                self.eos_step = Some(step);
            }
            if is_eos || current >= self.budget_end {
                self.remaining = Some(self.max_delay);
                self.finished_at = Some(current);
            }
        }
        if let Some(left) = self.remaining.filter(|&n| n > 0) {
            let after = (self.max_delay - left) as i64;
            for (p, &dl) in pred.iter_mut().zip(&self.delay) {
                if after == dl {
                    *p = self.eos;
                } else if after > dl {
                    *p = self.pad;
                }
            }
            self.remaining = Some(left - 1);
        }
    }

    /// Whether every channel has been closed: no step is left to run.
    pub fn is_done(&self) -> bool {
        self.remaining == Some(0)
    }

    /// The frame index at which the countdown started: the utterance's end in delayed frames.
    pub fn finished_at(&self) -> Option<usize> {
        self.finished_at
    }

    /// The step at which channel 0 sampled EOS, if it did.
    pub fn eos_step(&self) -> Option<usize> {
        self.eos_step
    }

    pub fn max_delay(&self) -> usize {
        self.max_delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EOS: i64 = 1024;
    const PAD: i64 = 1025;

    /// Runs steps from 0 with channel 0 sampling `eos_at` at that step (else 7) until done;
    /// returns the rewritten frames.
    fn run(
        delay: &[i64],
        max_tokens: usize,
        eos_at: Option<usize>,
    ) -> (EosCountdown, Vec<Vec<i64>>) {
        let mut c = EosCountdown::new(delay, EOS, PAD, max_tokens, false);
        let mut out = Vec::new();
        for step in 0..max_tokens {
            if c.is_done() {
                break;
            }
            let mut pred = vec![7; delay.len()];
            if Some(step) == eos_at {
                pred[0] = EOS;
            }
            c.apply(step, &mut pred);
            out.push(pred);
        }
        (c, out)
    }

    #[test]
    fn eos_closes_each_channel_on_its_delay_then_pads() {
        let (c, frames) = run(&[0, 1, 3], 100, Some(5));
        assert_eq!(c.eos_step(), Some(5));
        assert_eq!(c.finished_at(), Some(6));
        assert!(c.is_done());
        // Steps 5, 6, 7 are the countdown (max_delay 3), then it stops.
        assert_eq!(frames.len(), 8);
        assert_eq!(frames[4], vec![7, 7, 7]);
        assert_eq!(frames[5], vec![EOS, 7, 7]);
        assert_eq!(frames[6], vec![PAD, EOS, 7]);
        assert_eq!(frames[7], vec![PAD, PAD, 7]);
    }

    #[test]
    fn the_budget_starts_the_countdown_without_eos() {
        let (c, frames) = run(&[0, 2], 10, None);
        assert_eq!(c.eos_step(), None);
        // Frame index 8 = 10 - max_delay: step 7 starts it, steps 7 and 8 close the channels.
        assert_eq!(c.finished_at(), Some(8));
        assert_eq!(frames.len(), 9);
        assert_eq!(frames[7], vec![EOS, 7]);
        assert_eq!(frames[8], vec![PAD, 7]);
    }

    #[test]
    fn a_later_eos_does_not_restart_it_and_ignore_eos_ignores_it() {
        let mut c = EosCountdown::new(&[0, 4], EOS, PAD, 100, false);
        let mut p = vec![EOS, 1];
        c.apply(3, &mut p);
        let mut p = vec![EOS, 1];
        c.apply(4, &mut p);
        assert_eq!((c.eos_step(), c.finished_at()), (Some(3), Some(4)));
        assert_eq!(p, vec![PAD, 1]);

        let mut c = EosCountdown::new(&[0, 4], EOS, PAD, 100, true);
        let mut p = vec![EOS, 1];
        c.apply(3, &mut p);
        assert_eq!((c.eos_step(), c.finished_at()), (None, None));
        assert_eq!(p, vec![EOS, 1]);
    }

    #[test]
    fn no_delay_ends_at_once() {
        let (c, frames) = run(&[0], 50, Some(2));
        assert!(c.is_done());
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[2], vec![EOS]);
    }
}
