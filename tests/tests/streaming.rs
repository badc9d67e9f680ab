//! Streaming audio: chunks decoded as frames arrive, with context at every cut, concatenate to
//! the one-shot decode of the same codes, for every codec layout (the fused and portable
//! bundles' dynamic-length codec, the coreml bundle's fixed 32-frame windows).

use dia_graphs::{DType, Target};
use dia_run::codec::{ChunkSizes, StreamDecoder};
use dia_run::delay::Frames;
use dia_run::{AudioStream, DiaModel, ModelOptions};
use dia_tests::dac::dac_bundle;
use dia_tests::{bundle, fixtures, greedy_case_named, target_bundle};

fn codec_bundles() -> Vec<(&'static str, std::path::PathBuf)> {
    let dac = Some(fixtures().join("tiny-dac"));
    vec![
        (
            "fused",
            target_bundle(Target::Fused, DType::F32, dac.clone()),
        ),
        ("portable", dac_bundle("tiny-dac")),
        ("coreml", target_bundle(Target::CoreMl, DType::F32, dac)),
    ]
}

/// `max |a - b| / max |b|`.
fn rel_to_peak(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let peak = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    err / peak.max(f32::MIN_POSITIVE)
}

#[test]
fn streamed_codes_decode_to_the_one_shot_audio() {
    // The reference's greedy codes: 134 frames, pushed a few at a time in an uneven rhythm.
    let (_, _, want) = greedy_case_named("long");
    let codes = Frames {
        channels: want.ncols(),
        data: want.iter().cloned().collect(),
    };
    for (name, b) in codec_bundles() {
        let model = DiaModel::load(&b, &ModelOptions::default()).unwrap();
        let one_shot = model.decode_audio(&codes).unwrap();
        for sizes in [ChunkSizes { first: 1, rest: 5 }, ChunkSizes::default()] {
            let mut dec = StreamDecoder::new(model.codec().unwrap(), sizes).unwrap();
            let mut streamed = Vec::new();
            let mut sent = 0;
            let mut chunks = 0;
            for (i, step) in [1usize, 3, 2, 7].iter().cycle().enumerate() {
                if sent >= codes.len() {
                    break;
                }
                let n = (*step).min(codes.len() - sent);
                let pcm = dec.push(&codes.data[sent * 9..(sent + n) * 9]).unwrap();
                chunks += usize::from(!pcm.is_empty());
                streamed.extend_from_slice(pcm);
                sent += n;
                // Audio never runs ahead of the codes minus the lookahead.
                assert!(dec.frames_out() <= sent, "{name} push {i}");
            }
            streamed.extend_from_slice(dec.finish().unwrap());
            let err = rel_to_peak(&streamed, &one_shot);
            eprintln!("{name} {sizes:?}: {chunks} chunks before the end, error {err:e}");
            // Measured 2.7e-6 (fused, portable: float rounding of convolutions over other
            // lengths) and 0 (coreml: the one-shot chunked decode's own windows).
            assert!(err <= 1e-4, "{name} {sizes:?}: {err}");
            assert!(chunks >= 2, "{name}: audio came before the last codes");
        }
    }
}

#[test]
fn an_audio_stream_is_the_generation_decoded_and_starts_before_it_ends() {
    let b = target_bundle(Target::Fused, DType::F32, Some(fixtures().join("tiny-dac")));
    let model = DiaModel::load(&b, &ModelOptions::default()).unwrap();
    let (text, opts, _) = greedy_case_named("eos");
    let mut s = AudioStream::new(&model, &text, &opts, ChunkSizes { first: 2, rest: 8 }).unwrap();
    let mut pcm = Vec::new();
    let mut first_before_done = None;
    while let Some(chunk) = s.next_chunk().unwrap() {
        pcm.extend_from_slice(chunk);
        first_before_done.get_or_insert(!s.generator().is_done());
    }
    assert_eq!(
        first_before_done,
        Some(true),
        "the first audio waits for the end"
    );
    assert!(s.first_audio_seconds().is_some());
    let gen = s.finish();
    let whole = model.decode_audio(&gen.codes).unwrap();
    let again = model.generate(&text, &opts, |_| {}).unwrap();
    assert_eq!(gen.codes.data, again.codes.data);
    let err = rel_to_peak(&pcm, &whole);
    assert!(err <= 1e-4, "{err}");
}

#[test]
fn streaming_needs_a_codec() {
    let model = DiaModel::load(&bundle("tiny-nari"), &ModelOptions::default()).unwrap();
    let opts = dia_run::GenerateOptions::default();
    let e = match AudioStream::new(&model, "[S1] Hi.", &opts, ChunkSizes::default()) {
        Ok(_) => panic!("a stream without a codec"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("cannot stream audio") && e.contains("--dac"),
        "{e}"
    );
}

fn fused_dac_bundle() -> std::path::PathBuf {
    target_bundle(Target::Fused, DType::F32, Some(fixtures().join("tiny-dac")))
}

const TEXT: &str = "[S1] Hello there. [S2] Hi!";

fn greedy(extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["--text", TEXT, "--temperature", "0", "--max-tokens", "150"]
        .map(String::from)
        .to_vec();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run_cli(args: &[String]) -> std::process::Output {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    dia_tests::dia_run(&fused_dac_bundle(), &refs)
}

fn i16s(bytes: &[u8]) -> Vec<i16> {
    bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Largest difference between two 16-bit sample runs of the same length.
fn max_lsb(a: &[i16], b: &[i16]) -> i32 {
    assert_eq!(a.len(), b.len(), "sample counts differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (*x as i32 - *y as i32).abs())
        .max()
        .unwrap_or(0)
}

#[test]
fn dia_run_streams_wav_and_raw_pcm_to_stdout_equal_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("whole.wav");
    let o = run_cli(&greedy(&["--out", file.to_str().unwrap(), "--quiet"]));
    assert!(o.status.success(), "{}", dia_tests::stderr(&o));
    let whole: Vec<i16> = hound::WavReader::open(&file)
        .unwrap()
        .samples::<i16>()
        .map(Result::unwrap)
        .collect();

    let o = run_cli(&greedy(&["--out", "-", "--json"]));
    assert!(o.status.success(), "{}", dia_tests::stderr(&o));
    let wav = &o.stdout;
    assert_eq!(&wav[..4], b"RIFF");
    // Unknown length: both size fields 0xFFFFFFFF, as streaming servers write them.
    assert_eq!(&wav[4..8], &[0xff; 4]);
    assert_eq!(&wav[36..40], b"data");
    assert_eq!(&wav[40..44], &[0xff; 4]);
    assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 44100);
    let streamed = i16s(&wav[44..]);
    // The streamed float audio is within 3e-6 of the one-shot's: at most one rounding step.
    assert!(max_lsb(&streamed, &whole) <= 1);
    // With the audio on stdout, the summary goes to stderr.
    let err = dia_tests::stderr(&o);
    let summary: serde_json::Value =
        serde_json::from_str(err.lines().find(|l| l.starts_with('{')).unwrap()).unwrap();
    assert!(
        summary["first_audio_seconds"].as_f64().unwrap() > 0.0,
        "{summary}"
    );
    assert_eq!(summary["streamed"], true);

    let o = run_cli(&greedy(&["--out", "-", "--format", "pcm", "--quiet"]));
    assert!(o.status.success(), "{}", dia_tests::stderr(&o));
    assert_eq!(
        i16s(&o.stdout),
        streamed,
        "raw PCM is the WAV stream's data"
    );

    // --stream into a file: written whole (atomically), the same samples.
    let streamed_file = dir.path().join("streamed.wav");
    let o = run_cli(&greedy(&[
        "--stream",
        "--out",
        streamed_file.to_str().unwrap(),
        "--quiet",
    ]));
    assert!(o.status.success(), "{}", dia_tests::stderr(&o));
    let from_file: Vec<i16> = hound::WavReader::open(&streamed_file)
        .unwrap()
        .samples::<i16>()
        .map(Result::unwrap)
        .collect();
    assert_eq!(from_file, streamed);
}

#[test]
fn a_closed_pipe_ends_dia_run_with_status_141_and_no_panic() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let b = fused_dac_bundle();
    let mut child = Command::new(dia_tests::bin("dia-run"))
        .args(["--bundle", b.to_str().unwrap()])
        .args(greedy(&[
            "--out",
            "-",
            "--quiet",
            "--first-chunk-frames",
            "1",
        ]))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = [0u8; 64];
    child.stdout.take().unwrap().read_exact(&mut head).unwrap();
    // Our end of the pipe is dropped here: the reader went away mid-stream.
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(141), "{err}");
    assert!(err.contains("output pipe was closed"), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn dia_run_stream_needs_a_codec_and_a_destination() {
    let o = dia_tests::dia_run(&bundle("tiny-nari"), &["--text", TEXT, "--out", "-"]);
    assert!(!o.status.success());
    let e = dia_tests::stderr(&o);
    assert!(e.contains("cannot") && e.contains("--dac"), "{e}");
    assert!(o.stdout.is_empty(), "nothing written before the error");
    let o = run_cli(&["--text".into(), TEXT.into(), "--stream".into()]);
    assert!(!o.status.success());
    let e = dia_tests::stderr(&o);
    assert!(e.contains("--stream needs somewhere to stream to"), "{e}");
}

#[test]
fn fixed_codec_windows_decode_as_the_whole_and_stream_the_same() {
    // What the CUDA codec does by default (every call the same length, so the GPU's per-shape
    // set-up is paid once), forced on the CPU: one-shot windows and streamed chunks both equal
    // the exact whole decode within float rounding, for lengths shorter and longer than a window.
    let b = target_bundle(Target::Fused, DType::F32, Some(fixtures().join("tiny-dac")));
    let exact = DiaModel::load(
        &b,
        &ModelOptions {
            codec_window: Some(0),
            ..ModelOptions::default()
        },
    )
    .unwrap();
    let windowed = DiaModel::load(
        &b,
        &ModelOptions {
            codec_window: Some(40),
            ..ModelOptions::default()
        },
    )
    .unwrap();
    assert_eq!(exact.codec().unwrap().window(), None);
    assert_eq!(windowed.codec().unwrap().window(), Some(40));
    let (_, _, want) = greedy_case_named("long");
    for frames in [30, 40, 41, 97, 134] {
        let codes = Frames {
            channels: want.ncols(),
            data: want.iter().cloned().take(frames * want.ncols()).collect(),
        };
        let whole = exact.decode_audio(&codes).unwrap();
        let one_shot = windowed.decode_audio(&codes).unwrap();
        let err = rel_to_peak(&one_shot, &whole);
        assert!(err <= 1e-4, "{frames} frames: windowed one-shot {err}");
        for sizes in [
            ChunkSizes { first: 1, rest: 5 },
            ChunkSizes { first: 4, rest: 18 },
        ] {
            let mut dec = StreamDecoder::new(windowed.codec().unwrap(), sizes).unwrap();
            let mut streamed = Vec::new();
            for f in codes.data.chunks(9 * 3) {
                streamed.extend_from_slice(dec.push(f).unwrap());
            }
            streamed.extend_from_slice(dec.finish().unwrap());
            let err = rel_to_peak(&streamed, &whole);
            assert!(err <= 1e-4, "{frames} frames, {sizes:?}: streamed {err}");
        }
    }
    // Every call was one window long, but for the utterance shorter than a window (exact).
    assert_eq!(windowed.codec().unwrap().lengths_seen(), vec![30, 40]);
    // A window too small for its context on both sides is refused at load.
    let err = DiaModel::load(
        &b,
        &ModelOptions {
            codec_window: Some(20),
            ..ModelOptions::default()
        },
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("context"), "{err}");
}
