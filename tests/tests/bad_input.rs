//! Bad checkpoints and bad arguments give specific errors, a non-zero exit and nothing written.

use std::fs;
use std::path::Path;

use dia_export::{export, ExportOptions};
use dia_tests::{bin, bundle, dia_run, edited_fixture, fixtures, run, scratch, stderr};

/// An empty directory of its own for the outputs of one refused run, to show it stays empty.
fn empty_dir(name: &str) -> std::path::PathBuf {
    let dir = scratch().join(name);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn assert_empty(dir: &Path) {
    let left: Vec<_> = fs::read_dir(dir).unwrap().filter_map(|e| e.ok()).collect();
    assert!(left.is_empty(), "a refused run wrote {left:?}");
}

fn export_err(ckpt: &Path) -> String {
    // A parent of its own, so no concurrent export shows up in the leftover check.
    let parent = scratch().join(format!(
        "out-{}",
        ckpt.file_name().unwrap().to_string_lossy()
    ));
    fs::create_dir_all(&parent).unwrap();
    let out = parent.join("bundle");
    let err = export(&ExportOptions {
        checkpoint: ckpt.to_path_buf(),
        out: out.clone(),
        target: dia_graphs::Target::Portable,
        ..ExportOptions::default()
    })
    .expect_err("export of a bad checkpoint must fail")
    .to_string();
    assert!(!out.exists(), "a failed export left {}", out.display());
    let leftovers: Vec<_> = fs::read_dir(out.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "partial bundle left behind: {leftovers:?}"
    );
    err
}

#[test]
fn missing_tensor_is_named_with_its_shape() {
    let dir = edited_fixture("tiny-nari", "missing", |n, s, b| {
        (n != "decoder.layers.1.mlp.wo.weight").then(|| (s, b.to_vec()))
    });
    let err = export_err(&dir);
    assert!(
        err.contains("`decoder.layers.1.mlp.wo.weight` is missing"),
        "{err}"
    );
    assert!(err.contains("[64, 32]"), "{err}");

    let dir = edited_fixture("tiny-hf", "missing", |n, s, b| {
        (n != "model.decoder.embeddings.embed.weight").then(|| (s, b.to_vec()))
    });
    let err = export_err(&dir);
    assert!(
        err.contains("`model.decoder.embeddings.embed.weight` is missing"),
        "{err}"
    );
    assert!(err.contains("transformers layout"), "{err}");
}

#[test]
fn wrong_shape_names_tensor_and_both_shapes() {
    let dir = edited_fixture("tiny-nari", "shape", |n, s, b| {
        if n == "encoder.layers.0.self_attention.k_proj.weight" {
            // [32, 4, 16] -> [32, 2, 32]: same bytes, wrong shape.
            Some((vec![s[0], 2, 32], b.to_vec()))
        } else {
            Some((s, b.to_vec()))
        }
    });
    let err = export_err(&dir);
    assert!(
        err.contains("`encoder.layers.0.self_attention.k_proj.weight`"),
        "{err}"
    );
    assert!(
        err.contains("[32, 2, 32]") && err.contains("[32, 4, 16]"),
        "{err}"
    );
}

#[test]
fn truncated_safetensors_is_reported() {
    let dir = scratch().join("bad-truncated");
    fs::create_dir_all(&dir).unwrap();
    let src = fixtures().join("tiny-nari");
    fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let bytes = fs::read(src.join("model.safetensors")).unwrap();
    fs::write(dir.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let err = export_err(&dir);
    assert!(
        err.contains("model.safetensors") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn missing_config_is_reported() {
    let dir = scratch().join("bad-noconfig");
    fs::create_dir_all(&dir).unwrap();
    fs::copy(
        fixtures().join("tiny-nari").join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let err = export_err(&dir);
    assert!(err.contains("no config.json"), "{err}");
}

#[test]
fn cli_reports_bad_checkpoint_with_nonzero_exit() {
    let dir = scratch().join("bad-cli-noconfig");
    fs::create_dir_all(&dir).unwrap();
    let out = scratch().join("cli-out");
    let o = run(
        "dia-export",
        &[dir.to_str().unwrap(), "--out", out.to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no config.json"), "{}", stderr(&o));
    assert!(!out.exists());
}

#[test]
fn run_rejects_empty_text_and_splits_text_longer_than_the_window() {
    let b = bundle("tiny-nari");
    let codes = scratch().join("never.npy");
    let o = dia_run(
        &b,
        &["--text", "  ", "--save-codes", codes.to_str().unwrap()],
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("text is empty"), "{}", stderr(&o));
    assert!(!codes.exists(), "nothing may be written on error");
    // One word longer than the 64-token window: split inside it, with a warning saying so.
    let long = "[S1] ".to_string() + &"a".repeat(100);
    let split = scratch().join("split.npy");
    let o = dia_run(
        &b,
        &["--text", &long, "--save-codes", split.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("longer than the text window") && e.contains("cut inside it"),
        "{e}"
    );
    assert!(split.exists());
    // The library's single generation still refuses it, naming both lengths.
    let model = dia_run::DiaModel::load(&b, &dia_run::ModelOptions::default()).unwrap();
    let err = model
        .generate(&long, &dia_run::GenerateOptions::default(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("102 tokens") && err.contains("at most 64"),
        "{err}"
    );
}

#[test]
fn run_rejects_missing_bundle_and_format_mismatch() {
    let missing = scratch().join("no-such-bundle");
    let codes = scratch().join("never2.npy");
    let codes = codes.to_str().unwrap();
    let o = dia_run(&missing, &["--text", "[S1] Hi.", "--save-codes", codes]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no-such-bundle"), "{}", stderr(&o));

    let b = scratch().join("old-format");
    fs::create_dir_all(&b).unwrap();
    let src = bundle("tiny-nari");
    for e in fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), b.join(e.file_name())).unwrap();
    }
    let m = fs::read_to_string(b.join("manifest.json")).unwrap();
    fs::write(
        b.join("manifest.json"),
        m.replacen(
            &format!("\"format_version\": {}", dia_bundle::FORMAT_VERSION),
            "\"format_version\": 99",
            1,
        ),
    )
    .unwrap();
    let o = dia_run(&b, &["--text", "[S1] Hi.", "--save-codes", codes]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("format version 99") && e.contains("re-export"),
        "{e}"
    );

    fs::remove_file(b.join("decoder_step.weights")).unwrap();
    fs::write(b.join("manifest.json"), m).unwrap();
    let o = dia_run(&b, &["--text", "[S1] Hi.", "--save-codes", codes]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("decoder_step.weights") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn manifest_versions_and_targets_are_checked() {
    let src = bundle("tiny-nari");
    let m = fs::read_to_string(src.join("manifest.json")).unwrap();
    let edit = |name: &str, from: &str, to: &str| {
        let dir = scratch().join(name);
        fs::create_dir_all(&dir).unwrap();
        assert!(m.contains(from), "{from} not in the manifest");
        fs::write(dir.join("manifest.json"), m.replacen(from, to, 1)).unwrap();
        dia_bundle::Manifest::load(&dir)
    };
    let current = format!("\"format_version\": {}", dia_bundle::FORMAT_VERSION);
    // Version 2 bundles (portable and coreml) still read.
    let old = format!("\"format_version\": {}", dia_bundle::MIN_FORMAT_VERSION);
    assert!(edit("manifest-v2", &current, &old).is_ok());
    let e = edit(
        "manifest-target",
        "\"target\": \"portable\"",
        "\"target\": \"tpu\"",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("`tpu`") && e.contains("portable, fused, coreml"),
        "{e}"
    );
}

#[test]
fn negative_numbers_reach_the_range_checks() {
    // clap takes `-1` as a value, not as an unknown flag: the library's range check answers.
    let b = bundle("tiny-nari");
    for (flag, value, want) in [
        ("--temperature", "-1", "Error: --temperature must be >= 0"),
        ("--top-p", "-0.5", "Error: --top-p must be in (0, 1]"),
    ] {
        let dir = empty_dir(&format!("negative{flag}"));
        let codes = dir.join("codes.npy");
        let wav = dir.join("speech.wav");
        let o = dia_run(
            &b,
            &[
                "--text",
                "[S1] Hi.",
                flag,
                value,
                "--max-tokens",
                "20",
                "--save-codes",
                codes.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{flag} {value}: {}", stderr(&o));
        let e = stderr(&o);
        // anyhow's report (a backtrace may follow it under RUST_BACKTRACE).
        assert_eq!(
            e.lines().find(|l| l.starts_with("Error: ")),
            Some(want),
            "{e}"
        );
        assert!(!e.contains("unexpected argument"), "{e}");
        assert!(!wav.exists());
        assert_empty(&dir);
    }
    // Negative counts are refused by the parser, as values (not as flags).
    let dir = empty_dir("negative-max-tokens");
    let codes = dir.join("codes.npy");
    let o = dia_run(
        &b,
        &[
            "--text",
            "[S1] Hi.",
            "--max-tokens",
            "-1",
            "--save-codes",
            codes.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert_eq!(
        e.lines().next(),
        Some("error: invalid value '-1' for '--max-tokens <MAX_TOKENS>': invalid digit found in string"),
        "{e}"
    );
    assert_empty(&dir);
}

#[test]
fn zero_threads_is_refused() {
    let b = bundle("tiny-nari");
    for value in ["0", "-2"] {
        let dir = empty_dir(&format!("threads{value}"));
        let codes = dir.join("codes.npy");
        let o = dia_run(
            &b,
            &[
                "--text",
                "[S1] Hi.",
                "--threads",
                value,
                "--save-codes",
                codes.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let e = stderr(&o);
        let want = format!(
            "error: invalid value '{value}' for '--threads <N>': must be 1 or more (leave \
             --threads out to use all cores)"
        );
        assert_eq!(e.lines().next(), Some(want.as_str()), "{e}");
        assert_empty(&dir);
    }
    // One thread is fine.
    let dir = empty_dir("threads1");
    let codes = dir.join("codes.npy");
    let o = dia_run(
        &b,
        &[
            "--text",
            "[S1] Hi.",
            "--threads",
            "1",
            "--max-tokens",
            "20",
            "--save-codes",
            codes.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(codes.is_file());
}

#[test]
fn a_library_path_with_a_colon_is_reported_whole() {
    // ORT_DYLIB_PATH naming a file that is not a library, in a directory whose name holds `:`
    // (as every Windows path does): the message names the whole path.
    let dir = empty_dir("ort:lib");
    let lib = dir.join("libonnxruntime.so");
    fs::write(&lib, b"not a shared library").unwrap();
    let out = empty_dir("ort-colon-out");
    let codes = out.join("codes.npy");
    let o = std::process::Command::new(bin("dia-run"))
        .args(["--bundle", bundle("tiny-nari").to_str().unwrap()])
        .args([
            "--text",
            "[S1] Hi.",
            "--save-codes",
            codes.to_str().unwrap(),
        ])
        .env("ORT_DYLIB_PATH", &lib)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    let want = format!("Error: loading ONNX Runtime from {}: ", lib.display());
    assert!(
        e.lines().any(|l| l.starts_with(&want)),
        "`{want}` not in:\n{e}"
    );
    assert_empty(&out);
}
