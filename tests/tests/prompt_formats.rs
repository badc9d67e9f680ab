//! Voice prompts in the formats users have. `tests/fixtures/prompts/` holds a 0.6 s stereo clip
//! made by sox and, from it, a FLAC (sox), an Ogg Vorbis, an MP3 and an Ogg Opus file (ffmpeg):
//! the commands are in its README.md. Each supported one decodes to the source's rate, length and
//! waveform (FLAC bit for bit), `dia-run --prompt-audio` takes it, and damaged, foreign or
//! misnamed files either read by their content or give an error naming the file.

use std::path::{Path, PathBuf};

use dia_run::audio::{read_audio_mono, resample, PROMPT_FORMATS};
use dia_run::{DiaModel, ModelOptions};
use dia_tests::dac::dac_bundle;
use dia_tests::{dia_run, scratch, stderr};
use ndarray::Array2;
use ndarray_npy::read_npy;

/// Frames (per channel) and rate of the source clip.
const SOURCE_LEN: usize = 13_230;
const SOURCE_RATE: u32 = 22_050;

fn prompt(name: &str) -> PathBuf {
    dia_tests::fixtures().join("prompts").join(name)
}

/// The source clip as the WAV reader mixes it down: 0.6 s at 22.05 kHz, a 200 Hz to 2 kHz
/// sweep on the left, a 330 Hz triangle wave on the right.
fn source() -> Vec<f32> {
    let (x, rate) = read_audio_mono(&prompt("source.wav")).unwrap();
    assert_eq!((x.len(), rate), (SOURCE_LEN, SOURCE_RATE));
    x
}

/// `10 log10(Σ ref² / Σ (x - ref)²)` over the source's length, `x` shifted by `lag` samples
/// (samples shifted in from outside count as 0).
fn snr_db(x: &[f32], reference: &[f32], lag: isize) -> f64 {
    let (mut signal, mut noise) = (0f64, 0f64);
    for (i, &r) in reference.iter().enumerate() {
        let j = i as isize + lag;
        let v = if (0..x.len() as isize).contains(&j) {
            x[j as usize]
        } else {
            0.0
        };
        signal += f64::from(r).powi(2);
        noise += f64::from(v - r).powi(2);
    }
    10.0 * (signal / noise).log10()
}

fn copy_as(from: &str, name: &str) -> PathBuf {
    let p = scratch().join(name);
    std::fs::copy(prompt(from), &p).unwrap();
    p
}

fn write_as(name: &str, bytes: &[u8]) -> PathBuf {
    let p = scratch().join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The error reading `p` gives; it must name the file.
/// `dia-run` with `p` as the voice prompt, which must fail: its stderr.
fn cli_prompt_error(p: &Path) -> String {
    let o = dia_run(
        &dac_bundle("tiny-dac"),
        &[
            "--text",
            "[S1] Hi.",
            "--prompt-audio",
            p.to_str().unwrap(),
            "--prompt-text",
            "[S1] Voice.",
            "--max-tokens",
            "10",
            "--save-codes",
            scratch().join("never.npy").to_str().unwrap(),
            "--quiet",
        ],
    );
    assert!(!o.status.success());
    stderr(&o)
}

fn read_err(p: &Path) -> String {
    let e = read_audio_mono(p)
        .err()
        .unwrap_or_else(|| panic!("{} read without an error", p.display()))
        .to_string();
    let name = p.file_name().unwrap().to_string_lossy();
    assert!(e.contains(&*name), "the error does not name {name}: {e}");
    e
}

#[test]
fn the_source_is_stereo_and_the_reader_takes_the_channels_mean() {
    let mut r = hound::WavReader::open(prompt("source.wav")).unwrap();
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, SOURCE_RATE, 16)
    );
    let s: Vec<i16> = r.samples::<i16>().map(|s| s.unwrap()).collect();
    let mono = source();
    let mut differ = 0;
    for (i, f) in s.chunks_exact(2).enumerate() {
        differ += usize::from(f[0] != f[1]);
        let want = (f32::from(f[0]) / 32768.0 + f32::from(f[1]) / 32768.0) / 2.0;
        assert_eq!(mono[i], want, "frame {i}");
    }
    assert!(differ > SOURCE_LEN * 9 / 10, "channels differ on {differ}");
}

#[test]
fn flac_decodes_bit_exact() {
    let src = source();
    let (x, rate) = read_audio_mono(&prompt("source.flac")).unwrap();
    assert_eq!((x.len(), rate), (SOURCE_LEN, SOURCE_RATE));
    // Lossless: the same 16-bit samples, scaled and mixed down the same way (measured: every
    // sample equal; 1 LSB would be 3.05e-5).
    let err = x
        .iter()
        .zip(&src)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("FLAC vs WAV: max error {err:e}");
    assert!(x == src, "FLAC differs from the WAV by up to {err:e}");
}

#[test]
fn vorbis_and_mp3_match_the_source() {
    let src = source();
    // Measured: both decode to exactly the source's 13230 frames. The MP3 holds 25 MPEG-2
    // frames of 576 = 14400 samples; its LAME tag marks the encoder delay (576, plus the
    // decoder's 529: 1105) and padding (594 - 529 = 65), which are trimmed. The Vorbis stream
    // is trimmed to its last page's granule position, 13230. Waveform SNR against the source,
    // measured: Vorbis (q4, 7.2 kB) 29.6 dB, MP3 (64 kbit/s, 5.5 kB) 25.9 dB; shifted by one
    // sample either way they fall to 11.1-11.3 dB, and the best of all shifts within ±1200
    // (the MP3's delay and more) is 0.
    for (name, min_snr) in [("source.ogg", 27.0), ("source.mp3", 23.0)] {
        let (x, rate) = read_audio_mono(&prompt(name)).unwrap();
        assert_eq!((x.len(), rate), (SOURCE_LEN, SOURCE_RATE), "{name}");
        let snr = snr_db(&x, &src, 0);
        let (best, best_snr) = (-1200..=1200)
            .map(|lag| (lag, snr_db(&x, &src, lag)))
            .fold((0, f64::MIN), |b, c| if c.1 > b.1 { c } else { b });
        let (early, late) = (snr_db(&x, &src, -1), snr_db(&x, &src, 1));
        eprintln!(
            "{name}: SNR {snr:.2} dB (shifted -1: {early:.2}, +1: {late:.2}; best shift \
             {best}: {best_snr:.2})"
        );
        assert!(snr >= min_snr, "{name}: SNR {snr:.2} dB < {min_snr}");
        assert_eq!(best, 0, "{name}: best aligned {best} samples off");
        let peak = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(peak < 1.0, "{name}: peak {peak}");
    }
}

#[test]
fn the_content_decides_not_the_name() {
    let src = source();
    let (flac, _) = read_audio_mono(&prompt("source.flac")).unwrap();
    let (mp3, _) = read_audio_mono(&prompt("source.mp3")).unwrap();
    for (from, name, want) in [
        ("source.flac", "flac-named.mp3", &flac),
        ("source.flac", "flac-named.wav", &flac),
        ("source.mp3", "mp3-named.flac", &mp3),
        ("source.wav", "wav-named.ogg", &src),
        (
            "source.ogg",
            "ogg-without-extension",
            &read_audio_mono(&prompt("source.ogg")).unwrap().0,
        ),
    ] {
        let (x, rate) = read_audio_mono(&copy_as(from, name)).unwrap();
        assert_eq!(rate, SOURCE_RATE, "{name}");
        assert!(&x == want, "{name} reads differently from {from}");
    }
    // A FLAC file behind an ID3v2 tag (some taggers write one) reads as the FLAC.
    let mut tagged = b"ID3\x04\x00\x00\x00\x00\x00\x14".to_vec();
    tagged.extend_from_slice(&[0; 20]);
    tagged.extend(std::fs::read(prompt("source.flac")).unwrap());
    let (x, _) = read_audio_mono(&write_as("id3-then.flac", &tagged)).unwrap();
    assert!(x == flac);
}

#[test]
fn truncated_files_are_errors_naming_the_file() {
    let cut = |from: &str, name: &str, keep: usize| {
        let b = std::fs::read(prompt(from)).unwrap();
        assert!(keep < b.len());
        read_err(&write_as(name, &b[..keep]))
    };
    let flac_len = std::fs::metadata(prompt("source.flac")).unwrap().len() as usize;
    let mp3_len = std::fs::metadata(prompt("source.mp3")).unwrap().len() as usize;
    let ogg_len = std::fs::metadata(prompt("source.ogg")).unwrap().len() as usize;
    for (from, name, keep, want) in [
        // Inside a frame: the FLAC reader hits the end mid-frame.
        (
            "source.flac",
            "half.flac",
            flac_len / 2,
            "truncated FLAC file",
        ),
        (
            "source.flac",
            "all-but-one-byte.flac",
            flac_len - 1,
            "truncated FLAC file",
        ),
        (
            "source.flac",
            "header-only.flac",
            30,
            "ends inside its header",
        ),
        // MPEG audio has no end marker: the LAME/Info tag's frame count gives the length.
        (
            "source.mp3",
            "half.mp3",
            mp3_len / 2,
            "promises 13230 samples per channel",
        ),
        (
            "source.mp3",
            "all-but-one-byte.mp3",
            mp3_len - 1,
            "truncated or corrupt MP3",
        ),
        (
            "source.mp3",
            "in-first-frame.mp3",
            100,
            "truncated MP3 file",
        ),
        (
            "source.mp3",
            "in-id3-tag.mp3",
            15,
            "ends inside or right after its 20-byte ID3",
        ),
        // Ogg: the stream's last page is missing.
        ("source.ogg", "half.ogg", ogg_len / 2, "truncated Ogg file"),
    ] {
        let e = cut(from, name, keep);
        eprintln!("{e}");
        assert!(e.contains(want), "{name}: {e}");
        assert!(e.contains("truncated"), "{name}: {e}");
    }
    // The command line says the same, and does not panic.
    let err = cli_prompt_error(&scratch().join("half.flac"));
    assert!(
        err.contains("half.flac") && err.contains("truncated FLAC file"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn foreign_and_damaged_files_are_errors_naming_the_file() {
    use rand::{RngCore, SeedableRng};
    let mut garbage = vec![0u8; 4096];
    rand_chacha::ChaCha8Rng::seed_from_u64(5).fill_bytes(&mut garbage);
    garbage[0] = 0x42;
    let supported = format!("a voice prompt may be {PROMPT_FORMATS}");
    for (name, bytes, want) in [
        ("garbage.flac", garbage.clone(), "its first bytes are 42 "),
        (
            "text.mp3",
            b"Hello, this is not audio.\n".to_vec(),
            "starts with the text \"Hello, this is n\"",
        ),
        ("empty.ogg", Vec::new(), "the file is empty"),
        (
            "voice.m4a",
            b"\0\0\0\x20ftypM4A \0\0\x02\0M4A mp42isom\0\0\0\x08free".to_vec(),
            "an MP4/M4A file",
        ),
    ] {
        let e = read_err(&write_as(name, &bytes));
        assert!(
            e.contains("not a supported audio file") && e.contains(want),
            "{e}"
        );
        assert!(e.contains(&supported), "{e}");
    }
    // A format symphonia could read but this build has no decoder for: Opus in Ogg.
    let e = read_err(&prompt("source.opus"));
    assert!(
        e.contains("its audio is Opus in Ogg, which is not supported"),
        "{e}"
    );
    assert!(e.contains(&supported), "{e}");

    // The WAV reader's limits hold for the other formats: a rate outside 1000..=768000 Hz
    // (an 800 Hz FLAC file) ...
    let e = read_err(&prompt("rate-800.flac"));
    assert!(e.contains("sample rate 800 Hz is not supported"), "{e}");
    // (A 900 kHz one, valid since FLAC 1.4, symphonia refuses itself: it reads rates up to
    // 655350 Hz, as FLAC allowed before.)
    let e = read_err(&prompt("rate-900k.flac"));
    assert!(
        e.contains("unreadable FLAC header") && e.contains("sample rate"),
        "{e}"
    );

    // ... and a bounded decode: 120 s of stereo digital silence at 48 kHz in 21 kB of FLAC
    // (11.5 M samples, 546 per byte) stops at 2^23 samples, the floor of the 64-per-byte bound.
    let e = read_err(&prompt("silence.flac"));
    assert!(e.contains("decodes to more than 8388608 samples"), "{e}");

    // A damaged FLAC frame (one byte changed) fails its CRC: the frame is lost, and the stream
    // comes up short of what STREAMINFO promises.
    let mut flac = std::fs::read(prompt("source.flac")).unwrap();
    let mid = flac.len() / 2;
    flac[mid] ^= 0x5A;
    let e = read_err(&write_as("damaged.flac", &flac));
    assert!(e.contains("truncated or corrupt FLAC file"), "{e}");

    // The command line: an error naming the file, no panic.
    let err = cli_prompt_error(&write_as("garbage-cli.flac", &garbage));
    assert!(
        err.contains("garbage-cli.flac") && err.contains("not a supported audio file"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

fn codes_of(path: &Path) -> Vec<i64> {
    let a: Array2<i64> = read_npy(path).unwrap();
    assert_eq!(a.ncols(), 9);
    a.iter().cloned().collect()
}

#[test]
fn dia_run_takes_every_format() {
    let b = dac_bundle("tiny-dac");
    let model = DiaModel::load(&b, &ModelOptions::default()).unwrap();
    let run = |prompt_file: &Path, tag: &str| {
        let codes = scratch().join(format!("prompted-{tag}.npy"));
        let o = dia_run(
            &b,
            &[
                "--text",
                "[S2] And now me.",
                "--prompt-audio",
                prompt_file.to_str().unwrap(),
                "--prompt-text",
                "[S1] The voice. ",
                "--temperature",
                "0",
                "--max-tokens",
                "90",
                "--save-codes",
                codes.to_str().unwrap(),
                "--quiet",
            ],
        );
        assert!(o.status.success(), "{tag}: {}", stderr(&o));
        codes_of(&codes)
    };
    let wav = run(&prompt("source.wav"), "wav");
    assert!(!wav.is_empty());
    // FLAC is the WAV's samples: the same prompt, the same greedy codes.
    assert_eq!(run(&prompt("source.flac"), "flac"), wav);
    // The lossy ones run too; their prompts encode close to the WAV's (measured: the DAC codes
    // of the 0.6 s prompt, 52 frames of 9, agree with the WAV's on 345 of 468 for Vorbis and
    // 273 for MP3; codebook 0, the coarsest, on 45 and 41 of 52).
    let encode = |name: &str| {
        let (x, rate) = read_audio_mono(&prompt(name)).unwrap();
        model
            .encode_audio(&resample(&x, rate, 44_100).unwrap())
            .unwrap()
    };
    let want = encode("source.wav");
    for (name, min_agree) in [("source.ogg", 300), ("source.mp3", 230)] {
        assert!(!run(&prompt(name), name).is_empty());
        let got = encode(name);
        assert_eq!((got.len(), got.channels), (want.len(), want.channels));
        let agree = got
            .data
            .iter()
            .zip(&want.data)
            .filter(|(a, b)| a == b)
            .count();
        let first = (0..got.len())
            .filter(|&t| got.data[t * 9] == want.data[t * 9])
            .count();
        eprintln!(
            "{name}: prompt codes agree with the WAV's on {agree} of {} (codebook 0: {first} of {})",
            want.data.len(),
            want.len()
        );
        assert!(agree >= min_agree, "{name}: {agree}");
    }
}

/// Mutants of each compressed fixture (1 to 9 bytes set at random, half of them in the first
/// 200 bytes where the headers are; a fifth also cut short) read or are refused with an error
/// naming the file, never a panic. (Run with 2000 mutants per format under 4 other seeds
/// while this was written: no panic in 24000.)
#[test]
fn mutated_files_read_or_are_refused() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut read = 0;
    for name in ["source.flac", "source.ogg", "source.mp3"] {
        let orig = std::fs::read(prompt(name)).unwrap();
        for k in 0..150 {
            let mut b = orig.clone();
            for _ in 0..rng.gen_range(1..10) {
                let at = if rng.gen_bool(0.5) {
                    rng.gen_range(0..200)
                } else {
                    rng.gen_range(0..b.len())
                };
                b[at] = rng.gen();
            }
            if rng.gen_bool(0.2) {
                b.truncate(rng.gen_range(0..b.len()));
            }
            let file = format!("mutant-{k}-{name}");
            let p = write_as(&file, &b);
            match std::panic::catch_unwind(|| read_audio_mono(&p)) {
                Err(_) => panic!("{file} panicked (kept at {})", p.display()),
                Ok(Ok((x, rate))) => {
                    read += 1;
                    assert!((1000..=768_000).contains(&rate), "{file}: {rate} Hz");
                    assert!(!x.is_empty() && x.iter().all(|v| v.is_finite()), "{file}");
                }
                Ok(Err(e)) => assert!(e.to_string().contains(&file), "{e}"),
            }
            std::fs::remove_file(&p).unwrap();
        }
    }
    eprintln!("{read} of 450 mutants read");
}
