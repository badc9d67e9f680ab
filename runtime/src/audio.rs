//! Audio files: WAV out (16-bit PCM or 32-bit float, written atomically) and WAV in for voice
//! prompts (any rate, any channel count, mixed down to mono and resampled to the codec's rate).

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use rubato::{FftFixedIn, Resampler};

use crate::error::RuntimeError;

/// Sample format of written WAV files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WavFormat {
    Pcm16,
    Float32,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |e| RuntimeError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// Writes mono `samples` (nominally in [-1, 1]) as a WAV file, through a temporary file in the
/// same directory and a rename, so a failed run never leaves a partial file.
pub fn write_wav(
    path: &Path,
    samples: &[f32],
    sample_rate: u32,
    format: WavFormat,
) -> Result<(), RuntimeError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: if format == WavFormat::Pcm16 { 16 } else { 32 },
        sample_format: if format == WavFormat::Pcm16 {
            hound::SampleFormat::Int
        } else {
            hound::SampleFormat::Float
        },
    };
    let mut buf = std::io::Cursor::new(Vec::with_capacity(samples.len() * 4 + 64));
    {
        let to_io = |e: hound::Error| std::io::Error::other(e.to_string());
        let mut w = hound::WavWriter::new(&mut buf, spec)
            .map_err(to_io)
            .map_err(io_err(path))?;
        for &s in samples {
            let s = if s.is_finite() {
                s.clamp(-1.0, 1.0)
            } else {
                0.0
            };
            match format {
                WavFormat::Pcm16 => w.write_sample((s * 32767.0).round() as i16),
                WavFormat::Float32 => w.write_sample(s),
            }
            .map_err(to_io)
            .map_err(io_err(path))?;
        }
        w.finalize().map_err(to_io).map_err(io_err(path))?;
    }
    crate::npy::write_atomic(path, buf.get_ref())
}

/// Writes mono samples as they come to a pipe or socket: a WAV stream (its size fields
/// 0xFFFFFFFF, the length being unknown, as streaming TTS servers write them) or raw
/// little-endian PCM. Samples are clamped to [-1, 1]; 16-bit ones rounded.
pub struct SampleStream<W: std::io::Write> {
    out: W,
    format: WavFormat,
    buf: Vec<u8>,
}

impl<W: std::io::Write> SampleStream<W> {
    /// A WAV stream: the header goes out at once.
    pub fn wav(mut out: W, sample_rate: u32, format: WavFormat) -> std::io::Result<Self> {
        let (bits, tag) = match format {
            WavFormat::Pcm16 => (16u16, 1u16),
            WavFormat::Float32 => (32, 3),
        };
        let block = bits / 8;
        let mut h = Vec::with_capacity(44);
        h.extend_from_slice(b"RIFF");
        h.extend_from_slice(&u32::MAX.to_le_bytes());
        h.extend_from_slice(b"WAVEfmt ");
        h.extend_from_slice(&16u32.to_le_bytes());
        h.extend_from_slice(&tag.to_le_bytes());
        h.extend_from_slice(&1u16.to_le_bytes());
        h.extend_from_slice(&sample_rate.to_le_bytes());
        h.extend_from_slice(&(sample_rate * block as u32).to_le_bytes());
        h.extend_from_slice(&block.to_le_bytes());
        h.extend_from_slice(&bits.to_le_bytes());
        h.extend_from_slice(b"data");
        h.extend_from_slice(&u32::MAX.to_le_bytes());
        out.write_all(&h)?;
        out.flush()?;
        Ok(Self {
            out,
            format,
            buf: Vec::new(),
        })
    }

    /// Raw samples, no header (`--format pcm`: s16le).
    pub fn raw(out: W, format: WavFormat) -> Self {
        Self {
            out,
            format,
            buf: Vec::new(),
        }
    }

    /// Writes and flushes `samples`.
    pub fn write(&mut self, samples: &[f32]) -> std::io::Result<()> {
        self.buf.clear();
        for &s in samples {
            let s = if s.is_finite() {
                s.clamp(-1.0, 1.0)
            } else {
                0.0
            };
            match self.format {
                WavFormat::Pcm16 => self
                    .buf
                    .extend_from_slice(&((s * 32767.0).round() as i16).to_le_bytes()),
                WavFormat::Float32 => self.buf.extend_from_slice(&s.to_le_bytes()),
            }
        }
        self.out.write_all(&self.buf)?;
        self.out.flush()
    }
}

/// The sample rates a voice prompt may have (and `resample` converts between). The resampler's
/// buffers grow with the rates' ratio and with the rate itself when the two share no large
/// common divisor, so a header claiming 1 Hz or 4 GHz would cost memory out of all proportion
/// to the file; real recordings lie well inside this range.
pub const MIN_SAMPLE_RATE: u32 = 1_000;
pub const MAX_SAMPLE_RATE: u32 = 768_000;
/// The largest sample magnitude accepted (audio is nominally within ±1): far larger values
/// overflow the resampler's FFT in float32, and it panics on the non-finite result.
pub const MAX_SAMPLE_MAGNITUDE: f32 = 1e6;

/// Whether `v` is a sample the resampler can take: finite and within ±`MAX_SAMPLE_MAGNITUDE`.
fn plausible(v: f32) -> bool {
    v.is_finite() && v.abs() <= MAX_SAMPLE_MAGNITUDE
}

/// Reads a WAV file as mono float samples at its own rate: returns (samples, rate).
///
/// The header is checked against the file before anything is allocated for the samples: a data
/// chunk claiming more bytes than the file holds is reported as a truncated file, with both
/// sizes, instead of being read until the reader runs dry.
pub fn read_wav_mono(path: &Path) -> Result<(Vec<f32>, u32), RuntimeError> {
    let bad = |msg: String| RuntimeError::BadAudio {
        path: path.to_path_buf(),
        msg,
    };
    let io = |e: std::io::Error| RuntimeError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    let mut input = std::io::BufReader::new(file);
    // hound reports a file ending inside the header as an I/O error ("Failed to read enough
    // bytes"); the file is open and readable, so that is a truncated (or not-WAV) file.
    let header_err = |e: hound::Error| match e {
        hound::Error::IoError(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::Other
            ) =>
        {
            bad(format!(
                "truncated WAV file: the file ({file_len} bytes) ends inside its header, before \
                 the data chunk starts"
            ))
        }
        hound::Error::IoError(e) => io(e),
        other => bad(format!("not a readable WAV file ({other})")),
    };

    // First pass over the header: the format, and where the data chunk starts. hound leaves
    // the reader just past the data chunk's 8-byte header, whose last 4 bytes are its length.
    let spec = hound::WavReader::new(&mut input)
        .map_err(header_err)?
        .spec();
    let data_start = input.stream_position().map_err(io)?;
    let mut len_field = [0u8; 4];
    input
        .seek(SeekFrom::Start(data_start.saturating_sub(4)))
        .and_then(|_| input.read_exact(&mut len_field))
        .map_err(io)?;
    let promised = u64::from(u32::from_le_bytes(len_field));
    let held = file_len.saturating_sub(data_start);
    if promised > held {
        return Err(bad(format!(
            "truncated WAV file: the header promises {promised} bytes of samples but the file \
             holds only {held} after its header (the file ends before its data chunk does)"
        )));
    }

    let channels = spec.channels as usize;
    if channels == 0 {
        return Err(bad("WAV header says 0 channels".into()));
    }
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&spec.sample_rate) {
        return Err(bad(format!(
            "sample rate {} Hz is not supported: a voice prompt must be {MIN_SAMPLE_RATE} to \
             {MAX_SAMPLE_RATE} Hz",
            spec.sample_rate
        )));
    }
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) | (hound::SampleFormat::Int, 8 | 16 | 24 | 32) => {}
        (format, bits) => {
            return Err(bad(format!(
                "{bits}-bit {} samples are not supported (8, 16, 24 or 32-bit integer, or \
                 32-bit float)",
                if format == hound::SampleFormat::Float {
                    "float"
                } else {
                    "integer"
                }
            )))
        }
    }

    // Second pass: the samples. Their count is now known to fit in the file.
    input.seek(SeekFrom::Start(0)).map_err(io)?;
    let reader = hound::WavReader::new(input).map_err(header_err)?;
    let mut interleaved = Vec::with_capacity(reader.len() as usize);
    let sample_err = |e: hound::Error| bad(format!("cannot decode its samples ({e})"));
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for s in reader.into_samples::<f32>() {
                let v = s.map_err(sample_err)?;
                if !plausible(v) {
                    return Err(bad(format!(
                        "sample {} is {v}: float samples must be finite and within \
                         ±{MAX_SAMPLE_MAGNITUDE:e} (nominally ±1)",
                        interleaved.len()
                    )));
                }
                interleaved.push(v);
            }
        }
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            for s in reader.into_samples::<i32>() {
                interleaved.push(s.map_err(sample_err)? as f32 * scale);
            }
        }
    }
    // Mono mix-down: the mean of the channels, as the reference does.
    let mono: Vec<f32> = interleaved
        .chunks_exact(channels)
        .map(|f| f.iter().sum::<f32>() / channels as f32)
        .collect();
    if mono.is_empty() {
        return Err(bad("the WAV file holds no samples".into()));
    }
    Ok((mono, spec.sample_rate))
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Resamples mono `x` from `from` Hz to `to` Hz (band-limited FFT resampler). The output has
/// `round(len · to / from)` samples, aligned with the input (the resampler's delay removed).
pub fn resample(x: &[f32], from: u32, to: u32) -> Result<Vec<f32>, RuntimeError> {
    let err = |msg: String| RuntimeError::Resample { from, to, msg };
    for rate in [from, to] {
        if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
            return Err(err(format!(
                "{rate} Hz is outside the supported {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz"
            )));
        }
    }
    // (A NaN, an infinity or a value large enough to overflow the FFT makes its output
    // non-real: rubato panics on it.)
    if let Some(i) = x.iter().position(|&v| !plausible(v)) {
        return Err(err(format!(
            "sample {i} is {}: samples must be finite and within ±{MAX_SAMPLE_MAGNITUDE:e} \
             (nominally ±1)",
            x[i]
        )));
    }
    if from == to {
        return Ok(x.to_vec());
    }
    let chunk = 1024;
    let mut r = FftFixedIn::<f32>::new(from as usize, to as usize, chunk, 2, 1)
        .map_err(|e| err(e.to_string()))?;
    let want = (x.len() as u64 * to as u64).div_ceil(from as u64) as usize;
    let delay = r.output_delay();
    let mut out = Vec::with_capacity(want + delay + chunk * 4);
    let mut pos = 0;
    while x.len() - pos >= r.input_frames_next() {
        let n = r.input_frames_next();
        let y = r
            .process(&[&x[pos..pos + n]], None)
            .map_err(|e| err(e.to_string()))?;
        out.extend_from_slice(&y[0]);
        pos += n;
    }
    if pos < x.len() {
        let y = r
            .process_partial(Some(&[&x[pos..]]), None)
            .map_err(|e| err(e.to_string()))?;
        out.extend_from_slice(&y[0]);
    }
    // Flush with zeros until the delayed tail is out. Output comes in whole FFT blocks of
    // `from / gcd` input frames rounded up past half a chunk, which can be longer than a
    // flush's chunk (44101 Hz, 384 kHz -> 44.1 kHz), so a flush may yield nothing yet: stop
    // on the frame count, after at most enough zeros to push the delay and two blocks out.
    let block_in = chunk as u64 / 2 + u64::from(from / gcd(from, to));
    let tail_in = delay as u64 * u64::from(from) / u64::from(to) + 2 * block_in + chunk as u64;
    let mut flushes = tail_in.div_ceil(chunk as u64) + 1;
    while out.len() < want + delay && flushes > 0 {
        let y = r
            .process_partial::<&[f32]>(None, None)
            .map_err(|e| err(e.to_string()))?;
        out.extend_from_slice(&y[0]);
        flushes -= 1;
    }
    if out.len() < want + delay {
        return Err(err(format!(
            "the resampler gave {} samples, {} expected",
            out.len().saturating_sub(delay),
            want
        )));
    }
    let end = (delay + want).min(out.len());
    Ok(out[delay.min(end)..end].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wav_round_trip_pcm16_and_float() {
        let dir = tempfile::tempdir().unwrap();
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        for (fmt, tol) in [(WavFormat::Pcm16, 1.0 / 32767.0), (WavFormat::Float32, 0.0)] {
            let p = dir.path().join("a.wav");
            write_wav(&p, &x, 44100, fmt).unwrap();
            let (y, sr) = read_wav_mono(&p).unwrap();
            assert_eq!(sr, 44100);
            assert_eq!(y.len(), x.len());
            let err = x
                .iter()
                .zip(&y)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err <= tol, "{fmt:?}: {err}");
        }
    }

    #[test]
    fn resampling_keeps_a_tone_in_place() {
        // 440 Hz at 16 kHz -> 44.1 kHz: same tone, same phase, expected length.
        let x: Vec<f32> = (0..16000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16000.0).sin())
            .collect();
        let y = resample(&x, 16000, 44100).unwrap();
        assert_eq!(y.len(), 44100);
        let err = (2000..42000)
            .map(|i| (y[i] - (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 44100.0).sin()).abs())
            .fold(0f32, f32::max);
        assert!(err < 2e-3, "max error {err}");
    }

    #[test]
    fn non_wav_input_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("voice.wav");
        std::fs::write(&p, b"ID3 this is an mp3, really").unwrap();
        let e = read_wav_mono(&p).unwrap_err().to_string();
        assert!(
            e.contains("voice.wav") && e.contains("not a readable WAV"),
            "{e}"
        );
    }
}
