//! The delay pattern: channel c is shifted `delay[c]` frames later on the way into the
//! decoder, and shifted back on the way out (nari-labs `dia/audio.py`).

/// Frame-major buffer of `frames × channels` tokens (row `t` holds frame t's token of every
/// channel), -1 meaning "not yet generated".
#[derive(Clone, Debug)]
pub struct Frames {
    pub channels: usize,
    pub data: Vec<i64>,
}

impl Frames {
    pub fn new(frames: usize, channels: usize) -> Self {
        Self {
            channels,
            data: vec![-1; frames * channels],
        }
    }
    pub fn len(&self) -> usize {
        self.data.len() / self.channels
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    pub fn row(&self, t: usize) -> &[i64] {
        &self.data[t * self.channels..(t + 1) * self.channels]
    }
    pub fn row_mut(&mut self, t: usize) -> &mut [i64] {
        &mut self.data[t * self.channels..(t + 1) * self.channels]
    }
}

/// The decoder's prefill: frame 0 is BOS, then the prompt's codes, with the delay applied
/// (before its start a channel reads BOS). Returns `prompt + max_delay` delayed frames, with
/// -1 where the model is still to write (as `Dia._prepare_audio_prompt`).
pub fn delayed_prefill(prompt: Option<&Frames>, delay: &[i64], bos: i64) -> Frames {
    let c = delay.len();
    let max_delay = *delay.iter().max().unwrap_or(&0) as usize;
    let prompt_len = prompt.map_or(0, |p| p.len());
    let len = prompt_len + max_delay;
    // Undelayed: BOS, prompt, then -1.
    let mut plain = Frames::new(len.max(1), c);
    plain.row_mut(0).fill(bos);
    if let Some(p) = prompt {
        for t in 0..prompt_len {
            plain.row_mut(t + 1).copy_from_slice(p.row(t));
        }
    }
    let mut out = Frames::new(len, c);
    for t in 0..len {
        for (ch, &dl) in delay.iter().enumerate() {
            let src = t as i64 - dl;
            out.data[t * c + ch] = if src < 0 {
                bos
            } else {
                plain.data[(src as usize).min(len - 1) * c + ch]
            };
        }
    }
    out
}

/// Reverts the delay of `frames` (`T × C`): `out[t][c] = in[min(t + delay[c], T-1)][c]`, drops
/// the last `max_delay` frames and maps codes outside `0..codebook` to 0, as the reference does
/// before handing codes to the DAC.
pub fn revert(frames: &Frames, delay: &[i64], codebook: i64) -> Frames {
    let c = delay.len();
    let t_len = frames.len();
    let max_delay = *delay.iter().max().unwrap_or(&0) as usize;
    let keep = t_len.saturating_sub(max_delay);
    let mut out = Frames::new(keep, c);
    for t in 0..keep {
        revert_frame(frames, t, t_len, delay, codebook, out.row_mut(t));
    }
    out
}

/// Frame `t` of the reverted codes of the first `t_len` rows of `frames` (delayed), into
/// `out` (one code per channel): channel c comes from row `min(t + delay[c], t_len - 1)`;
/// codes outside `0..codebook` (specials, unwritten slots) become 0.
pub fn revert_frame(
    frames: &Frames,
    t: usize,
    t_len: usize,
    delay: &[i64],
    codebook: i64,
    out: &mut [i64],
) {
    let c = frames.channels;
    for (ch, (o, &dl)) in out.iter_mut().zip(delay).enumerate() {
        let src = (t + dl as usize).min(t_len - 1);
        let v = frames.data.get(src * c + ch).copied().unwrap_or(-1);
        *o = if (0..codebook).contains(&v) { v } else { 0 };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefill_without_prompt_is_bos_up_to_each_delay() {
        let delay = [0, 2, 3];
        let p = delayed_prefill(None, &delay, 9);
        assert_eq!(p.len(), 3);
        assert_eq!(p.row(0), &[9, 9, 9]);
        assert_eq!(p.row(1), &[-1, 9, 9]);
        assert_eq!(p.row(2), &[-1, 9, 9]);
    }

    #[test]
    fn prefill_with_prompt_shifts_each_channel() {
        let delay = [0, 1];
        let mut prompt = Frames::new(2, 2);
        prompt.data = vec![10, 11, 20, 21];
        let p = delayed_prefill(Some(&prompt), &delay, 9);
        assert_eq!(p.data, vec![9, 9, 10, 9, 20, 11]);
    }

    #[test]
    fn revert_undoes_delay_and_clears_specials() {
        let delay = [0, 1];
        let mut f = Frames::new(4, 2);
        f.data = vec![5, 9, 6, 7, 1024, 8, 3, 1025];
        let r = revert(&f, &delay, 1024);
        assert_eq!(r.data, vec![5, 7, 6, 8, 0, 0]);
    }
}
