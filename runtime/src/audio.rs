//! Audio files: WAV out (16-bit PCM or 32-bit float, written atomically) and voice prompts in
//! (WAV, FLAC, MP3 or Ogg Vorbis; any rate, any channel count, mixed down to mono and resampled
//! to the codec's rate). WAV goes through `hound`, the compressed formats through `symphonia`'s
//! pure-Rust decoders; both share the mix-down and the limits on rates, samples and sizes.

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

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> RuntimeError + Copy + '_ {
    move |e| RuntimeError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// What is wrong with the audio file at `path`, as an error naming it.
fn bad_audio(path: &Path) -> impl Fn(String) -> RuntimeError + Copy + '_ {
    move |msg| RuntimeError::BadAudio {
        path: path.to_path_buf(),
        msg,
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
fn read_wav(path: &Path) -> Result<(Vec<f32>, u32), RuntimeError> {
    let bad = bad_audio(path);
    let io = io_err(path);
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

/// The formats a voice prompt may be in, as the errors name them.
pub const PROMPT_FORMATS: &str = "WAV, FLAC, MP3 or Ogg Vorbis";

/// The most samples (all channels counted) a compressed prompt may decode to per byte of the
/// file. The leanest streams encoders write come to under 50 (MP3 at 8 kbit/s: 48 for 24 kHz
/// stereo; Vorbis at its lowest quality: about 16); only FLAC's constant frames (digital
/// silence) go far beyond, which `MIN_DECODED_SAMPLES` leaves room for.
pub const MAX_DECODED_SAMPLES_PER_BYTE: u64 = 64;
/// The samples (all channels counted) a compressed prompt may decode to whatever its size:
/// 2^23, 95 s of 44.1 kHz stereo (a voice prompt is a few seconds; the model's longest
/// generation is 35.7 s by default). With `MAX_DECODED_SAMPLES_PER_BYTE` this bounds what a
/// small file can make the decoder allocate.
pub const MIN_DECODED_SAMPLES: u64 = 1 << 23;

/// Reads a voice prompt as mono float samples at its own rate: returns (samples, rate).
///
/// The format is told by the file's first bytes, not its name: WAV (`RIFF`) goes through the
/// WAV reader (8 to 32-bit integer or 32-bit float samples); FLAC, MP3 (MPEG-1/2/2.5 layer III,
/// after any ID3v2 tags) and Ogg (Vorbis or FLAC) through symphonia's decoders. All end the
/// same way: the channels' mean, at a rate of `MIN_SAMPLE_RATE`..=`MAX_SAMPLE_RATE` Hz, every
/// sample finite and within ±`MAX_SAMPLE_MAGNITUDE`. Anything else, and any file that is
/// truncated (shorter than its header says), corrupt (a FLAC whose MD5 signature does not
/// match) or decodes to more than `MAX_DECODED_SAMPLES_PER_BYTE` samples per byte of the file
/// (beyond `MIN_DECODED_SAMPLES`), is an error naming the file.
pub fn read_audio_mono(path: &Path) -> Result<(Vec<f32>, u32), RuntimeError> {
    let bad = bad_audio(path);
    let io = io_err(path);
    let mut file = std::fs::File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    match sniff(&mut file, file_len).map_err(io)? {
        Sniffed::Is(Container::Wav, _) => {
            drop(file);
            read_wav(path)
        }
        Sniffed::Is(container, start) => read_compressed(path, file, file_len, container, start),
        Sniffed::Truncated(msg) => Err(bad(format!("truncated file: {msg}"))),
        Sniffed::Other(what) => Err(bad(format!(
            "not a supported audio file ({what}): a voice prompt may be {PROMPT_FORMATS}"
        ))),
    }
}

/// The containers `read_audio_mono` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Container {
    Wav,
    Flac,
    Ogg,
    Mpeg,
}

impl Container {
    fn name(self) -> &'static str {
        match self {
            Container::Wav => "WAV",
            Container::Flac => "FLAC",
            Container::Ogg => "Ogg",
            Container::Mpeg => "MP3",
        }
    }
}

/// What a file's first bytes say it is.
enum Sniffed {
    /// A container we read, from this byte on (past any ID3v2 tags).
    Is(Container, u64),
    /// ID3v2 tags that run past the end of the file.
    Truncated(String),
    /// Something else, in words.
    Other(String),
}

/// Reads up to `buf.len()` bytes (fewer only at the end of the file).
fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The length of the ID3v2 tag `h` starts with (header, body and footer), if it is one.
fn id3v2_len(h: &[u8]) -> Option<u64> {
    if h.len() < 10
        || &h[..3] != b"ID3"
        || !(2..=4).contains(&h[3])
        || h[4] == 0xFF
        || h[6..10].iter().any(|b| b & 0x80 != 0)
    {
        return None;
    }
    let size = h[6..10].iter().fold(0u64, |a, &b| (a << 7) | u64::from(b));
    let footer = if h[3] == 4 && h[5] & 0x10 != 0 { 10 } else { 0 };
    Some(10 + size + footer)
}

/// Whether `h` starts with an MPEG audio layer III frame header (sync word, valid version,
/// bitrate and rate fields).
fn mpeg_layer3_header(h: &[u8]) -> bool {
    h.len() >= 4
        && h[0] == 0xFF
        && h[1] & 0xE0 == 0xE0
        && (h[1] >> 3) & 3 != 1
        && (h[1] >> 1) & 3 == 1
        && h[2] >> 4 != 15
        && (h[2] >> 2) & 3 != 3
}

/// Names what a file that is none of the supported formats seems to be.
fn describe(h: &[u8]) -> String {
    let known: &[(&[u8], usize, &str)] = &[
        (b"ftyp", 4, "an MP4/M4A file (AAC or ALAC)"),
        (&[0x1A, 0x45, 0xDF, 0xA3], 0, "a Matroska/WebM file"),
        (b"FORM", 0, "an AIFF file"),
        (b"caff", 0, "a CAF file"),
        (b"wvpk", 0, "a WavPack file"),
        (b"MAC ", 0, "a Monkey's Audio file"),
        (b"#!AMR", 0, "an AMR file"),
    ];
    for (magic, at, what) in known {
        if h.len() >= at + magic.len() && &h[*at..at + magic.len()] == *magic {
            return what.to_string();
        }
    }
    if h.len() >= 2 && h[0] == 0xFF && h[1] & 0xF6 == 0xF0 {
        return "raw AAC (ADTS)".into();
    }
    if h.len() >= 2 && h[0] == 0xFF && h[1] & 0xE0 == 0xE0 && (h[1] >> 1) & 3 != 1 {
        return "MPEG audio of layer I or II".into();
    }
    if h.iter()
        .all(|&b| b.is_ascii_graphic() || b.is_ascii_whitespace())
    {
        return format!("it starts with the text {:?}", String::from_utf8_lossy(h));
    }
    let hex: Vec<String> = h.iter().map(|b| format!("{b:02x}")).collect();
    format!("its first bytes are {}", hex.join(" "))
}

/// Tells the format of `file` by its first bytes (after any ID3v2 tags).
fn sniff(file: &mut std::fs::File, file_len: u64) -> std::io::Result<Sniffed> {
    let mut start = 0u64;
    // ID3v2 tags may be stacked; a real file has one, rarely two.
    for _ in 0..8 {
        let mut head = [0u8; 16];
        file.seek(SeekFrom::Start(start))?;
        let n = read_up_to(file, &mut head)?;
        let h = &head[..n];
        let is = |c| Ok(Sniffed::Is(c, start));
        if h.is_empty() {
            // (An ID3 tag is only followed when more of the file comes after it.)
            return Ok(Sniffed::Other("the file is empty".into()));
        }
        if start == 0
            && (h.starts_with(b"RIFF") || h.starts_with(b"RIFX") || h.starts_with(b"RF64"))
        {
            return is(Container::Wav);
        }
        if h.starts_with(b"fLaC") {
            return is(Container::Flac);
        }
        if h.starts_with(b"OggS") {
            return is(Container::Ogg);
        }
        if mpeg_layer3_header(h) {
            return is(Container::Mpeg);
        }
        if h.starts_with(b"ID3") {
            let Some(len) = id3v2_len(h) else {
                return Ok(Sniffed::Other(
                    "it starts with \"ID3\" but not with a valid ID3v2 tag header".into(),
                ));
            };
            if start + len >= file_len {
                return Ok(Sniffed::Truncated(format!(
                    "the file ({file_len} bytes) ends inside or right after its {len}-byte ID3 \
                     tag at byte {start}, before any audio"
                )));
            }
            start += len;
            continue;
        }
        if start > 0 {
            // After an ID3 tag comes MP3 audio, maybe behind padding that the MP3 reader skips.
            return is(Container::Mpeg);
        }
        return Ok(Sniffed::Other(describe(h)));
    }
    Ok(Sniffed::Other("it starts with too many ID3 tags".into()))
}

/// Whether the first MPEG frame at `start` carries a Xing/Info or VBRI tag, whose frame count
/// (when present) makes the stream's length known, so that a truncated file can be told.
fn mpeg_info_tag(file: &mut std::fs::File, start: u64) -> std::io::Result<bool> {
    let mut f = [0u8; 64];
    file.seek(SeekFrom::Start(start))?;
    let n = read_up_to(file, &mut f)?;
    let f = &f[..n];
    if !mpeg_layer3_header(f) {
        return Ok(false);
    }
    let mpeg1 = (f[1] >> 3) & 3 == 3;
    let mono = f[3] >> 6 == 3;
    let side = match (mpeg1, mono) {
        (true, true) => 17,
        (true, false) => 32,
        (false, true) => 9,
        (false, false) => 17,
    };
    let tag = |at: usize| f.get(at..at + 4);
    Ok(matches!(tag(4 + side), Some(b"Xing" | b"Info")) || tag(36) == Some(b"VBRI"))
}

/// Decodes a FLAC, MP3 or Ogg file with symphonia, from byte `start` on.
fn read_compressed(
    path: &Path,
    mut file: std::fs::File,
    file_len: u64,
    container: Container,
    start: u64,
) -> Result<(Vec<f32>, u32), RuntimeError> {
    use symphonia::core::codecs::audio::well_known::{CODEC_ID_OPUS, CODEC_ID_SPEEX};
    use symphonia::core::codecs::audio::AudioDecoderOptions;
    use symphonia::core::codecs::CodecParameters;
    use symphonia::core::errors::Error as SymError;
    use symphonia::core::formats::{FormatOptions, FormatReader};
    use symphonia::core::io::MediaSourceStream;
    use symphonia::default::formats::{FlacReader, MpaReader, OggReader};

    let kind = container.name();
    let bad = bad_audio(path);
    let io = io_err(path);
    // symphonia's errors in words about the file; `at`: the samples decoded before it, None
    // while the reader is opened (it reads the header; an Ogg reader also seeks to the last
    // page for the stream's length).
    let sym_err = |e: SymError, at: Option<usize>| {
        let when = match at {
            Some(n) => format!(" after {n} samples"),
            None => String::new(),
        };
        match e {
            SymError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                bad(match (container, at) {
                    (Container::Ogg, _) => format!(
                        "truncated Ogg file: the file ({file_len} bytes) ends inside a page, \
                         before the end of its stream"
                    ),
                    (_, None) => format!(
                        "truncated {kind} file: the file ({file_len} bytes) ends inside its header"
                    ),
                    (_, Some(_)) => format!(
                        "truncated {kind} file: the file ({file_len} bytes) ends inside a \
                         frame,{when}"
                    ),
                })
            }
            SymError::IoError(e) => io(e),
            SymError::DecodeError(m) if at.is_none() && container != Container::Ogg => {
                bad(format!("unreadable {kind} header ({m})"))
            }
            SymError::DecodeError(m) => bad(format!("corrupt {kind} data{when} ({m})")),
            SymError::Unsupported(m) => bad(format!(
                "unsupported {kind} stream{when} ({m}): a voice prompt may be {PROMPT_FORMATS}"
            )),
            SymError::ResetRequired => bad(format!(
                "the {kind} stream changes its format{when} (a chained stream), which is not \
                 supported"
            )),
            other => bad(format!("cannot read the {kind} file{when} ({other})")),
        }
    };
    let known_length =
        container != Container::Mpeg || mpeg_info_tag(&mut file, start).map_err(io)?;

    let mut mss = MediaSourceStream::new(Box::new(file), Default::default());
    mss.seek(SeekFrom::Start(start)).map_err(io)?;
    let opts = FormatOptions::default();
    let opened = match container {
        Container::Flac => FlacReader::try_new(mss, opts).map(|r| Box::new(r) as Box<_>),
        Container::Ogg => OggReader::try_new(mss, opts).map(|r| Box::new(r) as Box<_>),
        Container::Mpeg => MpaReader::try_new(mss, opts).map(|r| Box::new(r) as Box<_>),
        Container::Wav => unreachable!("WAV files go through the WAV reader"),
    };
    let mut reader: Box<dyn FormatReader> = opened.map_err(|e| sym_err(e, None))?;

    // The first audio track (an Ogg file may hold several streams).
    let codecs = symphonia::default::get_codecs();
    let audio: Vec<_> = reader
        .tracks()
        .iter()
        .filter_map(|t| match &t.codec_params {
            Some(CodecParameters::Audio(p)) => Some((t, p)),
            _ => None,
        })
        .collect();
    let Some(&(track, params)) = audio
        .iter()
        .find(|(_, p)| codecs.get_audio_decoder(p.codec).is_some())
        .or(audio.first())
    else {
        return Err(bad(format!("the {kind} file holds no audio stream")));
    };
    if codecs.get_audio_decoder(params.codec).is_none() {
        let codec = match params.codec {
            CODEC_ID_OPUS => "Opus".to_string(),
            CODEC_ID_SPEEX => "Speex".to_string(),
            c => format!("codec {c}"),
        };
        return Err(bad(format!(
            "its audio is {codec} in {kind}, which is not supported: a voice prompt may be \
             {PROMPT_FORMATS}"
        )));
    }
    let track_id = track.id;
    let expected = track.num_frames.filter(|_| known_length);
    let params = params.clone();
    let Some(rate) = params.sample_rate else {
        return Err(bad(format!("the {kind} header gives no sample rate")));
    };
    if !(MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(&rate) {
        return Err(bad(format!(
            "sample rate {rate} Hz is not supported: a voice prompt must be {MIN_SAMPLE_RATE} \
             to {MAX_SAMPLE_RATE} Hz"
        )));
    }
    let mut decoder = codecs
        .make_audio_decoder(&params, &AudioDecoderOptions::default().verify(true))
        .map_err(|e| sym_err(e, None))?;

    let limit = file_len
        .saturating_mul(MAX_DECODED_SAMPLES_PER_BYTE)
        .max(MIN_DECODED_SAMPLES);
    let mut mono: Vec<f32> = Vec::new();
    let mut planes: Vec<Vec<f32>> = Vec::new();
    let mut decoded = 0u64;
    let mut channels = 0usize;
    loop {
        let at = Some(mono.len());
        let when = || format!("after {} samples", mono.len());
        let packet = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(e) => return Err(sym_err(e, at)),
        };
        if packet.track_id != track_id {
            continue;
        }
        let buf = decoder.decode(&packet).map_err(|e| sym_err(e, at))?;
        let spec = buf.spec();
        if spec.rate() != rate {
            return Err(bad(format!(
                "the {kind} stream changes its sample rate from {rate} to {} Hz {}, which is not \
                 supported",
                spec.rate(),
                when()
            )));
        }
        let n = spec.channels().count();
        if n == 0 || (channels != 0 && n != channels) {
            return Err(bad(format!(
                "the {kind} stream has {n} channels {} ({channels} before), which is not \
                 supported",
                when()
            )));
        }
        channels = n;
        let frames = buf.frames();
        decoded += (frames * n) as u64;
        if decoded > limit {
            return Err(bad(format!(
                "the {kind} file decodes to more than {limit} samples (the limit is \
                 {MAX_DECODED_SAMPLES_PER_BYTE} per byte of its {file_len} bytes, and at least \
                 {MIN_DECODED_SAMPLES}): too long for a voice prompt, or a malformed file"
            )));
        }
        buf.copy_to_vecs_planar::<f32>(&mut planes);
        for (c, plane) in planes.iter().enumerate() {
            if let Some(i) = plane.iter().position(|&v| !plausible(v)) {
                return Err(bad(format!(
                    "sample {} of channel {c} is {}: samples must be finite and within \
                     ±{MAX_SAMPLE_MAGNITUDE:e} (nominally ±1)",
                    mono.len() + i,
                    plane[i]
                )));
            }
        }
        // Mono mix-down: the mean of the channels, summed in the order the WAV reader sums.
        mono.extend((0..frames).map(|i| planes.iter().map(|p| p[i]).sum::<f32>() / n as f32));
    }
    if let Some(want) = expected {
        if (mono.len() as u64) < want {
            return Err(bad(format!(
                "truncated or corrupt {kind} file: its header promises {want} samples per \
                 channel but only {} could be decoded from the file ({file_len} bytes)",
                mono.len()
            )));
        }
    }
    if mono.is_empty() {
        return Err(bad(format!("the {kind} file holds no samples")));
    }
    if decoder.finalize().verify_ok == Some(false) {
        return Err(bad(format!(
            "corrupt {kind} file: the decoded audio does not match the MD5 signature in its \
             header"
        )));
    }
    Ok((mono, rate))
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
            let (y, sr) = read_audio_mono(&p).unwrap();
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
        let e = read_audio_mono(&p).unwrap_err().to_string();
        assert!(
            e.contains("voice.wav")
                && e.contains("not a supported audio file")
                && e.contains(PROMPT_FORMATS),
            "{e}"
        );
        // A file that starts as a WAV file but is not one still gets the WAV reader's word.
        std::fs::write(&p, b"RIFF\x10\0\0\0WAVEjunk, really").unwrap();
        let e = read_audio_mono(&p).unwrap_err().to_string();
        assert!(e.contains("voice.wav") && e.contains("WAV"), "{e}");
    }
}
