//! dia-run beyond greedy parity: seeded sampling, threads, providers, and bad input that the
//! CLI must refuse with a clear message, a non-zero exit and nothing written.

use std::fs;
use std::sync::Arc;

use dia_run::{DiaModel, GenerateOptions, ModelOptions};
use dia_tests::{bundle, dia_run, reference, scratch, stderr, texts};
use ndarray::Array2;
use ndarray_npy::read_npy;

fn sampled(seed: u64) -> GenerateOptions {
    GenerateOptions {
        max_tokens: Some(60),
        temperature: 1.2,
        seed: Some(seed),
        ..GenerateOptions::default()
    }
}

#[test]
fn same_seed_same_codes_other_seed_other_codes() {
    let model = DiaModel::load(&bundle("tiny-nari"), &ModelOptions::default()).unwrap();
    let text = "[S1] Hello there. [S2] Hi!";
    let a = model.generate(text, &sampled(7), |_| {}).unwrap();
    let b = model.generate(text, &sampled(7), |_| {}).unwrap();
    let c = model.generate(text, &sampled(8), |_| {}).unwrap();
    assert_eq!(a.codes.data, b.codes.data);
    assert_ne!(a.codes.data, c.codes.data);
    assert!(a.codes.data.iter().all(|&x| (0..1024).contains(&x)));
}

#[test]
fn one_model_generates_from_several_threads() {
    let model = Arc::new(DiaModel::load(&bundle("tiny-hf"), &ModelOptions::default()).unwrap());
    let t = texts();
    let case = t["greedy"][0].clone();
    let want: Array2<i64> = read_npy(reference("greedy_long.npy")).unwrap();
    let want: Vec<i64> = want.iter().cloned().collect();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let model = Arc::clone(&model);
            let case = case.clone();
            std::thread::spawn(move || {
                let opts = GenerateOptions {
                    max_tokens: Some(case["max_tokens"].as_u64().unwrap() as usize),
                    temperature: 0.0,
                    ..GenerateOptions::default()
                };
                model
                    .generate(case["text"].as_str().unwrap(), &opts, |_| {})
                    .unwrap()
                    .codes
                    .data
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), want);
    }
}

#[test]
fn unavailable_provider_falls_back_to_cpu_with_a_reason() {
    let b = bundle("tiny-nari");
    let codes = scratch().join("coreml.npy");
    let o = dia_run(
        &b,
        &[
            "--text",
            "[S1] Hi.",
            "--max-tokens",
            "20",
            "--ep",
            "coreml",
            "--json",
            "--save-codes",
            codes.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("warning: the coreml execution provider could not be loaded"),
        "{e}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["provider"], "cpu");
    assert!(summary["steps_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn non_utf8_text_file_is_refused() {
    let b = bundle("tiny-nari");
    let f = scratch().join("latin1.txt");
    fs::write(&f, b"[S1] caf\xe9").unwrap();
    let codes = scratch().join("latin1.npy");
    let o = dia_run(
        &b,
        &[
            "--text-file",
            f.to_str().unwrap(),
            "--save-codes",
            codes.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("latin1.txt") && e.contains("not UTF-8") && e.contains("offset 8"),
        "{e}"
    );
    assert!(!codes.exists());
}

#[test]
fn wav_output_without_codec_says_how_to_export_it() {
    let b = bundle("tiny-nari");
    let wav = scratch().join("nocodec.wav");
    let o = dia_run(&b, &["--text", "[S1] Hi.", "--out", wav.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("no DAC codec") && e.contains("--dac DAC_DIR"),
        "{e}"
    );
    assert!(!wav.exists());
}

#[test]
fn unwritable_output_is_refused_before_work() {
    let b = bundle("tiny-nari");
    let o = dia_run(
        &b,
        &[
            "--text",
            "[S1] Hi.",
            "--save-codes",
            "/nonexistent-dir/codes.npy",
        ],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("/nonexistent-dir") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn prompt_that_is_not_audio_is_refused() {
    let b = bundle("tiny-nari");
    let f = scratch().join("voice.wav");
    fs::write(&f, b"GARBAGE, not audio at all").unwrap();
    let codes = scratch().join("prompt.npy");
    let o = dia_run(
        &b,
        &[
            "--text",
            "[S2] Hi.",
            "--prompt-audio",
            f.to_str().unwrap(),
            "--prompt-text",
            "[S1] Hello.",
            "--save-codes",
            codes.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("voice.wav")
            && e.contains("not a supported audio file")
            && e.contains("WAV, FLAC, MP3 or Ogg Vorbis"),
        "{e}"
    );
    assert!(!codes.exists());
}

#[test]
fn unknown_tags_pass_through_as_bytes() {
    // `[S3]` is not a speaker tag: its bytes reach the encoder like any text.
    let t = dia_run::tokenizer::encode_text("[S3] x", 64).unwrap();
    assert_eq!(t, b"[S3] x".iter().map(|&b| b as i64).collect::<Vec<_>>());
    // ...and generation conditions on them: its greedy codes are not those of the same words
    // with `[S3]` taken for speaker 1, dropped, or made a byte-3 tag, as a tokenizer that
    // knew "[S<n>]" tags would make them.
    let model = DiaModel::load(&bundle("tiny-nari"), &ModelOptions::default()).unwrap();
    let opts = GenerateOptions {
        max_tokens: Some(40),
        temperature: 0.0,
        ..GenerateOptions::default()
    };
    let codes = |text: &str| model.generate(text, &opts, |_| {}).unwrap().codes;
    let g = codes("[S3] Who is this?");
    // 40 steps, no EOS: 40 - 15 (the longest delay) - 1 (BOS) frames.
    assert_eq!((g.len(), g.channels), (24, 9));
    assert!(g.data.iter().all(|&x| (0..1024).contains(&x)), "{g:?}");
    for other in ["[S1] Who is this?", " Who is this?", "\u{3} Who is this?"] {
        let o = codes(other);
        assert_eq!(o.len(), g.len(), "{other:?}");
        let differ = (0..g.len()).filter(|&f| g.row(f) != o.row(f)).count();
        // Measured: all 24 frames differ for each of the three.
        assert!(
            differ * 2 > g.len(),
            "{other:?}: only {differ} of {} frames differ",
            g.len()
        );
    }
}
