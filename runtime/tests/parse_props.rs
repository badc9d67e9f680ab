//! Property tests for the runtime's parsers of outside input: script text (`encode_text`), WAV
//! voice prompts (`read_audio_mono`, then `resample` as `dia-run --prompt-audio` does) and the
//! `.npy` codes it writes (the runtime reads no `.npy` from users; the written file must parse).
//!
//! Arbitrary and mutated inputs must give `Ok` (when still valid) or an `Err` naming the file,
//! never a panic, a hang, or an allocation sized by what a header claims rather than by what the
//! file holds. Each parse runs under [`guard::guarded`]: on its own thread, with a time limit,
//! and with its largest single allocation recorded by a tracking global allocator.

use std::io::Write;
use std::path::PathBuf;

use dia_run::audio::{
    read_audio_mono, resample, MAX_SAMPLE_MAGNITUDE, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE,
};
use dia_run::tokenizer::encode_text;
use dia_run::RuntimeError;
use proptest::prelude::*;
use proptest::sample::Index;

#[path = "../../tests/support/guard.rs"]
mod guard;
#[path = "../../tests/support/mutate.rs"]
mod mutate;

use guard::{config, guarded};
use mutate::{apply, edit, interesting_u32};

// ---------------------------------------------------------------------------------------------
// Script text
// ---------------------------------------------------------------------------------------------

/// The reference tokenisation, written independently: bytes, `[S1]`/`[S2]` as 1/2.
fn tokens_of(text: &str) -> Vec<i64> {
    let mut out = Vec::new();
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix(b"[S1]") {
            out.push(1);
            rest = r;
        } else if let Some(r) = rest.strip_prefix(b"[S2]") {
            out.push(2);
            rest = r;
        } else {
            out.push(rest[0] as i64);
            rest = &rest[1..];
        }
    }
    out
}

fn check_text(text: String, max_len: usize) -> Result<(), TestCaseError> {
    let t = text.clone();
    let got = guarded(5, 1024 + 8 * text.len(), move || encode_text(&t, max_len));
    let want = tokens_of(&text);
    match got {
        Err(RuntimeError::EmptyText) => prop_assert!(text.trim().is_empty()),
        Err(RuntimeError::TextTooLong { tokens, max }) => {
            prop_assert!(!text.trim().is_empty());
            prop_assert_eq!((tokens, max), (want.len(), max_len));
            prop_assert!(tokens > max);
        }
        Err(e) => prop_assert!(false, "unexpected error {e}"),
        Ok(tokens) => {
            prop_assert!(!text.trim().is_empty() && tokens.len() <= max_len);
            prop_assert!(tokens.iter().all(|&t| (0..256).contains(&t)));
            prop_assert_eq!(&tokens, &want);
            // Without raw bytes 1 and 2 in the text, the tokens spell it back.
            if !text.contains(['\u{1}', '\u{2}']) {
                let mut back = Vec::new();
                for &t in &tokens {
                    match t {
                        1 => back.extend_from_slice(b"[S1]"),
                        2 => back.extend_from_slice(b"[S2]"),
                        b => back.push(b as u8),
                    }
                }
                prop_assert_eq!(back, text.into_bytes());
            }
        }
    }
    Ok(())
}

/// Text made of speaker tags, pieces of tags and other characters, so tags meet every
/// neighbour (`[S[S1]`, `[S1][S2]`, `[S1` at the end, multi-byte characters around them).
fn scripty_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("[S1]".to_string()),
            Just("[S2]".to_string()),
            Just("[S".to_string()),
            Just("1]".to_string()),
            Just("[".to_string()),
            "[ a-z.!]{0,4}",
            "\\PC{0,2}",
            "[\u{0}-\u{3} \t\n]",
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_text_tokenises_or_is_refused(text in any::<String>(), max_len in 0usize..80) {
        check_text(text, max_len)?;
    }

    #[test]
    fn speaker_tags_in_any_context(text in scripty_text(), max_len in prop_oneof![0usize..40, Just(usize::MAX)]) {
        check_text(text, max_len)?;
    }
}

// ---------------------------------------------------------------------------------------------
// WAV voice prompts
// ---------------------------------------------------------------------------------------------

/// A valid WAV file written by hound: `frames` frames of a tone.
fn wav_bytes(spec: hound::WavSpec, frames: usize) -> Vec<u8> {
    let mut cur = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
        for i in 0..frames * spec.channels as usize {
            let t = (i as f32 * 0.05).sin() * 0.5;
            match (spec.sample_format, spec.bits_per_sample) {
                (hound::SampleFormat::Float, _) => w.write_sample(t),
                (_, 8) => w.write_sample((t * 127.0) as i8),
                (_, 16) => w.write_sample((t * 32767.0) as i16),
                (_, 24) => w.write_sample((t * 8_388_607.0) as i32),
                _ => w.write_sample((t * 2_147_483_647.0) as i32),
            }
            .unwrap();
        }
        w.finalize().unwrap();
    }
    cur.into_inner()
}

fn spec(channels: u16, rate: u32, bits: u16, float: bool) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    }
}

/// Valid seed files: PCM (8, 16, 24, 32-bit), float, mono to 3 channels; hound writes the
/// WAVEFORMATEXTENSIBLE header for more than 2 channels or more than 16 bits.
fn seed_wavs() -> Vec<Vec<u8>> {
    vec![
        wav_bytes(spec(1, 16_000, 16, false), 300),
        wav_bytes(spec(2, 44_100, 16, false), 200),
        wav_bytes(spec(1, 8_000, 8, false), 100),
        wav_bytes(spec(3, 48_000, 24, false), 64),
        wav_bytes(spec(1, 22_050, 32, true), 150),
        wav_bytes(spec(2, 96_000, 32, false), 50),
    ]
}

/// The largest single allocation reading a prompt may make: the samples (as f32, up to 4 per
/// byte of 8-bit data) plus buffers of fixed size.
fn wav_alloc_limit(file_len: usize) -> usize {
    (1 << 20) + 8 * file_len
}

/// Writes `bytes` as a WAV file and reads it; checks what any outcome must satisfy and returns
/// it (samples and rate, or the error message).
fn read_prompt(bytes: Vec<u8>) -> Result<(Vec<f32>, u32), String> {
    let mut file = tempfile::Builder::new()
        .prefix("prompt-")
        .suffix(".wav")
        .tempfile()
        .unwrap();
    file.write_all(&bytes).unwrap();
    let path: PathBuf = file.path().to_path_buf();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let limit = wav_alloc_limit(bytes.len());
    let got = guarded(10, limit, move || {
        let _keep = file;
        read_audio_mono(&path).map_err(|e| e.to_string())
    });
    match &got {
        Ok((samples, rate)) => {
            assert!(!samples.is_empty());
            assert!(samples.len() <= bytes.len(), "more samples than bytes");
            assert!(
                (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(rate),
                "{rate} Hz"
            );
        }
        Err(e) => assert!(e.contains(&name), "the error does not name the file: {e}"),
    }
    got
}

/// Resamples a prompt to the DAC's 44.1 kHz, as `dia-run --prompt-audio` does.
fn resample_prompt(samples: Vec<f32>, rate: u32) {
    let want = (samples.len() as u64 * 44_100).div_ceil(u64::from(rate)) as usize;
    let n = samples.len();
    let limit = (64 << 20) + 16 * want;
    let y = guarded(20, limit, move || resample(&samples, rate, 44_100))
        .unwrap_or_else(|e| panic!("{n} samples at {rate} Hz: {e}"));
    assert!(
        y.len().abs_diff(want) <= 1,
        "{} samples, {want} expected",
        y.len()
    );
}

#[derive(Clone, Debug)]
struct Header {
    format: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    /// Bytes per sample in the container (block_align / channels).
    container: u16,
    /// WAVEFORMATEXTENSIBLE's valid bits and float (rather than PCM) subformat.
    valid_bits: u16,
    float_subformat: bool,
    /// Whether the byte rate is block_align · rate (hound rejects other files early).
    consistent: bool,
    /// What the data chunk's length field says (None: the true length).
    claim: Option<u32>,
    data: Vec<u8>,
    /// Another chunk before the data, with its length field.
    extra_chunk: Option<(u32, Vec<u8>)>,
}

fn header() -> impl Strategy<Value = Header> {
    // (format, bits, container, valid bits, float subformat): mostly coherent, so that hound
    // accepts the header and the sample checks and decoding are reached; sometimes anything.
    let kind = prop_oneof![
        4 => prop_oneof![
            Just((1u16, 8u16, 1u16, 0u16, false)),
            Just((1, 16, 2, 0, false)),
            Just((1, 24, 3, 0, false)),
            Just((1, 32, 4, 0, false)),
            Just((3, 32, 4, 0, false)),
            Just((0xFFFE, 24, 3, 24, false)),
            Just((0xFFFE, 32, 4, 24, false)),
            Just((0xFFFE, 32, 4, 32, true)),
            Just((0xFFFE, 16, 2, 0, false)),
        ],
        1 => (any::<u16>(), any::<u16>(), 1u16..=8, any::<u16>(), any::<bool>()),
        1 => (
            prop_oneof![Just(1u16), Just(3), Just(0xFFFE)],
            prop_oneof![Just(8u16), Just(16), Just(24), Just(32), Just(64)],
            1u16..=8,
            prop_oneof![Just(0u16), Just(7), Just(24), Just(64), Just(200), any::<u16>()],
            any::<bool>(),
        ),
    ];
    let channels = prop_oneof![4 => 1u16..=3, 1 => any::<u16>()];
    let rate = prop_oneof![
        4 => prop_oneof![Just(8_000u32), Just(16_000), Just(22_050), Just(44_100), Just(48_000)],
        2 => prop_oneof![Just(0u32), Just(1), Just(999), Just(768_001), Just(u32::MAX)],
        1 => MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE,
        1 => any::<u32>(),
    ];
    let rest = (
        prop::bool::weighted(0.9),
        prop_oneof![3 => Just(None), 1 => interesting_u32().prop_map(Some)],
        // Mostly whole frames (hound refuses a partial last frame).
        (
            prop::collection::vec(any::<u8>(), 0..512),
            prop::bool::weighted(0.8),
        ),
        prop::option::weighted(
            0.2,
            (interesting_u32(), prop::collection::vec(any::<u8>(), 0..8)),
        ),
    );
    (kind, channels, rate, rest).prop_map(
        |(
            (format, bits, container, valid_bits, float_subformat),
            channels,
            rate,
            (consistent, claim, (mut data, whole_frames), extra_chunk),
        )| {
            let block_align = usize::from(channels.wrapping_mul(container));
            if whole_frames && block_align > 0 {
                data.truncate(data.len() / block_align * block_align);
            }
            Header {
                format,
                channels,
                rate,
                bits,
                container,
                valid_bits,
                float_subformat,
                consistent,
                claim,
                data,
                extra_chunk,
            }
        },
    )
}

fn header_bytes(h: &Header) -> Vec<u8> {
    let block_align = h.channels.wrapping_mul(h.container);
    let byte_rate = if h.consistent {
        u32::from(block_align).wrapping_mul(h.rate)
    } else {
        h.rate
    };
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&h.format.to_le_bytes());
    fmt.extend_from_slice(&h.channels.to_le_bytes());
    fmt.extend_from_slice(&h.rate.to_le_bytes());
    fmt.extend_from_slice(&byte_rate.to_le_bytes());
    fmt.extend_from_slice(&block_align.to_le_bytes());
    fmt.extend_from_slice(&h.bits.to_le_bytes());
    if h.format == 0xFFFE {
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&h.valid_bits.to_le_bytes());
        fmt.extend_from_slice(&0u32.to_le_bytes());
        let first = if h.float_subformat { 3 } else { 1 };
        fmt.extend_from_slice(&[
            first, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71,
        ]);
    }
    let mut body = b"WAVE".to_vec();
    body.extend_from_slice(b"fmt ");
    body.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    body.extend_from_slice(&fmt);
    if let Some((len, bytes)) = &h.extra_chunk {
        body.extend_from_slice(b"LIST");
        body.extend_from_slice(&len.to_le_bytes());
        body.extend_from_slice(bytes);
    }
    body.extend_from_slice(b"data");
    let claim = h.claim.unwrap_or(h.data.len() as u32);
    body.extend_from_slice(&claim.to_le_bytes());
    body.extend_from_slice(&h.data);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The offset of the data chunk's length field in a file hound wrote.
fn data_len_field(bytes: &[u8]) -> usize {
    bytes.windows(4).position(|w| w == b"data").unwrap() + 4
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn arbitrary_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        prop_assert!(read_prompt(bytes).is_err());
    }

    #[test]
    fn riff_prefixed_garbage_is_refused(tail in prop::collection::vec(any::<u8>(), 0..128)) {
        let mut bytes = b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec();
        bytes.extend(tail);
        let _ = read_prompt(bytes);
    }

    #[test]
    fn mutated_wavs_read_or_are_refused(
        seed in 0usize..6,
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let mut bytes = seed_wavs().swap_remove(seed);
        for e in &edits {
            apply(&mut bytes, e);
        }
        if let Ok((samples, rate)) = read_prompt(bytes) {
            resample_prompt(samples, rate);
        }
    }

    #[test]
    fn any_header_fields_read_or_are_refused(h in header()) {
        let bytes = header_bytes(&h);
        if let Ok((samples, rate)) = read_prompt(bytes) {
            // (An extra chunk whose length field lies shifts where the data chunk is found.)
            if h.extra_chunk.is_none() {
                let claim = h.claim.map_or(h.data.len(), |c| c as usize);
                prop_assert!(claim <= h.data.len(), "read a file whose data chunk claims {claim} bytes but has {}", h.data.len());
            }
            resample_prompt(samples, rate);
        }
    }

    /// A data chunk longer than the file (up to 4 GB) is a truncated file, reported with both
    /// sizes, and nothing near the claimed size is allocated.
    #[test]
    fn data_chunk_longer_than_the_file_is_truncation(seed in 0usize..6, claim in interesting_u32()) {
        let mut bytes = seed_wavs().swap_remove(seed);
        let field = data_len_field(&bytes);
        let held = bytes.len() - field - 4;
        // (hound refuses a length that is not a whole number of frames before we look.)
        let block_align = u32::from(u16::from_le_bytes([bytes[32], bytes[33]]));
        let claim = claim / block_align * block_align;
        bytes[field..field + 4].copy_from_slice(&claim.to_le_bytes());
        match read_prompt(bytes) {
            Ok(_) => prop_assert!(claim as usize <= held),
            Err(e) => {
                prop_assert!(claim as usize > held || claim == 0, "{e}");
                if claim as usize > held {
                    prop_assert!(
                        e.contains("truncated") && e.contains(&format!("promises {claim} bytes"))
                            && e.contains(&format!("holds only {held}")),
                        "{e}"
                    );
                }
            }
        }
    }

    #[test]
    fn truncated_anywhere_is_refused(seed in 0usize..6, cut in any::<Index>()) {
        let bytes = seed_wavs().swap_remove(seed);
        let keep = cut.index(bytes.len());
        let e = read_prompt(bytes[..keep].to_vec()).unwrap_err();
        // Cut before the `RIFF` magic, nothing tells it from a file of another kind.
        prop_assert!(
            e.contains("truncated")
                || e.contains("not a readable WAV")
                || (keep < 4 && e.contains("not a supported audio file")),
            "{e}"
        );
    }
}

proptest! {
    // Few cases: rates sharing no large divisor with the target make FFTs of up to 768k
    // points, seconds each in a debug build.
    #![proptest_config(config(12))]

    #[test]
    fn resampling_any_rates_is_bounded(
        (x, bad) in (
            prop::collection::vec(-1f32..1.0, 0..3000),
            prop::option::weighted(
                0.3,
                (any::<Index>(), prop_oneof![Just(f32::NAN), Just(f32::NEG_INFINITY), Just(3e38)]),
            ),
        ),
        from in prop_oneof![
            8 => prop_oneof![
                Just(0u32), Just(1), Just(999), Just(44_101), Just(384_000), Just(768_000),
                Just(768_001), Just(u32::MAX),
            ],
            2 => MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE,
            1 => any::<u32>(),
        ],
        to in prop_oneof![4 => Just(44_100u32), 1 => Just(0), 1 => Just(u32::MAX), 1 => Just(16_000)],
    ) {
        let mut x = x;
        if let (Some((at, v)), false) = (bad, x.is_empty()) {
            let i = at.index(x.len());
            x[i] = v;
        }
        let n = x.len();
        let finite = x.iter().all(|v| v.abs() <= MAX_SAMPLE_MAGNITUDE);
        let want = (n as u64 * u64::from(to)).div_ceil(u64::from(from.max(1))) as usize;
        let got = guarded(60, (64 << 20) + 16 * want, move || resample(&x, from, to).map(|y| y.len()));
        let ok_rates = [from, to].iter().all(|r| (MIN_SAMPLE_RATE..=MAX_SAMPLE_RATE).contains(r));
        match got {
            Ok(len) => {
                prop_assert!(ok_rates && finite);
                prop_assert_eq!(len, want, "{} samples {} -> {} Hz", n, from, to);
            }
            Err(e) => {
                prop_assert!(!ok_rates || !finite, "{e}");
                prop_assert!(e.to_string().contains("Hz"), "{e}");
            }
        }
    }
}

/// Found by `resampling_any_rates_is_bounded`: when the rates' reduced ratio has more than a
/// chunk (1024) of input frames (44101 Hz, 767999 Hz -> 44.1 kHz), a flush can yield nothing
/// yet, and the flush loop stopped there: a short prompt came out empty, a long one cut short.
#[test]
fn resampling_awkward_rates_keeps_every_sample() {
    let x: Vec<f32> = (0..3000).map(|i| (i as f32 * 0.01).sin()).collect();
    for (from, to, want) in [
        (44_101, 44_100, 3000),
        (384_000, 44_100, 345),
        (1009, 44_100, 131_120),
    ] {
        assert_eq!(
            resample(&x, from, to).unwrap().len(),
            want,
            "{from} -> {to} Hz"
        );
    }
}

/// Found by `mutated_wavs_read_or_are_refused` and `any_header_fields_read_or_are_refused`: a
/// float WAV holding a NaN (one flipped byte of a sample) or a huge finite value (3e38) reached
/// the resampler, whose float32 FFT overflowed and panicked on the non-real result.
#[test]
fn non_finite_and_huge_samples_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nan.wav");
    for (bad, shown) in [
        (f32::NAN, "NaN"),
        (3e38, "300000000000000000000000000000000000000"),
    ] {
        let mut bytes = wav_bytes(spec(1, 22_050, 32, true), 10);
        let at = data_len_field(&bytes) + 4 + 4 * 3;
        bytes[at..at + 4].copy_from_slice(&bad.to_le_bytes());
        std::fs::write(&p, &bytes).unwrap();
        let e = read_audio_mono(&p).unwrap_err().to_string();
        assert!(
            e.contains("nan.wav") && e.contains(&format!("sample 3 is {shown}")),
            "{e}"
        );
    }
    for bad in [f32::INFINITY, -2e6] {
        let e = resample(&[0.0, bad], 16_000, 44_100)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("sample 1 is {bad}")), "{e}");
    }
}

/// The defect the mutation tests were written for: hound alone says "Failed to read enough
/// bytes" for a prompt cut short; the error names the file, says it is truncated and gives the
/// sizes.
#[test]
fn truncated_prompt_names_file_and_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = wav_bytes(spec(1, 16_000, 16, false), 1000);
    let header = data_len_field(&bytes) + 4;
    assert_eq!(bytes.len(), header + 2000);

    let p = dir.path().join("voice.wav");
    std::fs::write(&p, &bytes[..header + 1234]).unwrap();
    let e = read_audio_mono(&p).unwrap_err().to_string();
    assert!(e.contains("voice.wav"), "{e}");
    assert!(e.contains("truncated WAV file"), "{e}");
    assert!(
        e.contains("promises 2000 bytes of samples but the file holds only 1234"),
        "{e}"
    );
    assert!(e.contains("ends before its data chunk does"), "{e}");

    // Cut inside the header: still named as truncation, not an I/O failure.
    std::fs::write(&p, &bytes[..30]).unwrap();
    let e = read_audio_mono(&p).unwrap_err().to_string();
    assert!(
        e.contains("voice.wav") && e.contains("truncated WAV file") && e.contains("header"),
        "{e}"
    );

    // The whole file still reads.
    std::fs::write(&p, &bytes).unwrap();
    assert_eq!(read_audio_mono(&p).unwrap().0.len(), 1000);
}

#[test]
fn implausible_rates_and_depths_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("odd.wav");
    let mut h = Header {
        format: 1,
        channels: 1,
        rate: 0,
        bits: 16,
        container: 2,
        valid_bits: 0,
        float_subformat: false,
        consistent: true,
        claim: None,
        data: vec![0; 64],
        extra_chunk: None,
    };
    for rate in [0, 1, 999, 768_001, 2_000_000_000] {
        h.rate = rate;
        std::fs::write(&p, header_bytes(&h)).unwrap();
        let e = read_audio_mono(&p).unwrap_err().to_string();
        assert!(
            e.contains("odd.wav") && e.contains(&format!("sample rate {rate} Hz")),
            "{e}"
        );
    }
    // WAVEFORMATEXTENSIBLE lets the header claim any number of valid bits.
    h.rate = 16_000;
    h.format = 0xFFFE;
    h.valid_bits = 200;
    std::fs::write(&p, header_bytes(&h)).unwrap();
    let e = read_audio_mono(&p).unwrap_err().to_string();
    assert!(
        e.contains("200-bit integer samples are not supported"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// .npy codes (written by the runtime; users never hand it one)
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(config(32))]

    #[test]
    fn written_codes_read_back(frames in 0usize..40, channels in 1usize..12, seed in any::<i64>()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("codes.npy");
        let mut f = dia_run::delay::Frames::new(frames, channels);
        for (i, v) in f.data.iter_mut().enumerate() {
            *v = seed.wrapping_mul(i as i64 + 1) >> 3;
        }
        dia_run::npy::write_codes(&p, &f).unwrap();
        let a: ndarray::Array2<i64> = ndarray_npy::read_npy(&p).unwrap();
        prop_assert_eq!(a.shape(), &[frames, channels]);
        prop_assert_eq!(a.iter().copied().collect::<Vec<_>>(), f.data);
    }
}
