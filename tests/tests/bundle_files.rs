//! Bundles travel (users download and share them): what the manifest records about its files
//! and graphs is checked at load (sizes, the config against the graphs' inputs) and on request
//! (SHA-256); manifests of older formats still load.

use std::fs;
use std::path::{Path, PathBuf};

use dia_bundle::{Manifest, Target};
use dia_graphs::DType;
use dia_run::{DiaModel, ModelOptions};
use dia_tests::{assert_greedy_cases, bundle, scratch, target_bundle};
use serde_json::Value;

/// A copy of `src` under a new name, with its manifest passed through `edit`.
fn edited_copy(src: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let dst = scratch().join(name);
    fs::create_dir_all(&dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
    let path = dst.join("manifest.json");
    let mut m: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut m);
    fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    dst
}

fn load_err(dir: &Path) -> String {
    match DiaModel::load(dir, &ModelOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn exported_manifests_record_every_file_and_its_hash() {
    let b = bundle("tiny-nari");
    let m = Manifest::load(&b).unwrap();
    let names: Vec<&str> = m.files.iter().map(|f| f.name.as_str()).collect();
    for f in [
        "encoder.onnx",
        "encoder.weights",
        "decoder_step.onnx",
        "decoder_step.weights",
    ] {
        assert!(names.contains(&f), "{f} not in {names:?}");
    }
    assert_eq!(m.verify_hashes(&b).unwrap(), m.files.len());
    for f in &m.files {
        assert_eq!(fs::metadata(b.join(&f.name)).unwrap().len(), f.bytes);
        assert_eq!(f.sha256.len(), 64);
    }
}

#[test]
fn format_2_and_early_format_3_manifests_still_load() {
    // Format 2: no target (portable), no recorded files.
    let v2 = edited_copy(&bundle("tiny-nari"), "format-2", |m| {
        m["format_version"] = 2.into();
        m.as_object_mut().unwrap().remove("target");
        m.as_object_mut().unwrap().remove("files");
    });
    let model = DiaModel::load(&v2, &ModelOptions::default()).unwrap();
    assert_eq!(model.target(), Target::Portable);
    assert_greedy_cases(&model, "format 2");
    // Format 3 as first written: the fused target was called `cuda`.
    let fused = target_bundle(Target::Fused, DType::F32, None);
    let v3 = edited_copy(&fused, "format-3-cuda", |m| {
        m["target"] = "cuda".into();
    });
    let model = DiaModel::load(&v3, &ModelOptions::default()).unwrap();
    assert_eq!(model.target(), Target::Fused);
    // An unknown target says what to do.
    let bad = edited_copy(&fused, "unknown-target", |m| {
        m["target"] = "tpu".into();
    });
    let e = load_err(&bad);
    assert!(
        e.contains("unknown target `tpu`") && e.contains("re-export"),
        "{e}"
    );
}

#[test]
fn a_truncated_file_is_named_at_load_and_a_flipped_bit_on_verify() {
    let b = edited_copy(&bundle("tiny-nari"), "truncated", |_| {});
    let w = b.join("decoder_step.weights");
    let bytes = fs::read(&w).unwrap();
    fs::write(&w, &bytes[..bytes.len() - 100]).unwrap();
    let e = load_err(&b);
    assert!(
        e.contains("decoder_step.weights")
            && e.contains(&format!(
                "{} bytes but the manifest records {}",
                bytes.len() - 100,
                bytes.len()
            ))
            && e.contains("download or export it again"),
        "{e}"
    );

    // Same size, one bit different: loads (size checks are all that is cheap), and the hash
    // check names the file.
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x10;
    fs::write(&w, &flipped).unwrap();
    DiaModel::load(&b, &ModelOptions::default()).unwrap();
    let m = Manifest::load(&b).unwrap();
    let e = m.verify_hashes(&b).unwrap_err().to_string();
    assert!(
        e.contains("decoder_step.weights") && e.contains("SHA-256"),
        "{e}"
    );
    fs::write(&w, &bytes).unwrap();
    assert!(m.verify_hashes(&b).is_ok());
}

#[test]
fn a_manifest_whose_config_disagrees_with_its_graphs_fails_at_load() {
    let b = bundle("tiny-nari");
    // One more layer in the config than the graphs have.
    let more = edited_copy(&b, "more-layers", |m| {
        let n = m["config"]["decoder_config"]["num_hidden_layers"]
            .as_u64()
            .unwrap();
        m["config"]["decoder_config"]["num_hidden_layers"] = (n + 1).into();
    });
    let e = load_err(&more);
    assert!(
        e.contains("the config has 3 decoder layers but decoder_step.onnx has the caches of 2")
            && e.contains("re-export"),
        "{e}"
    );
    // A longer cache than the graphs were built for: the tensor and both shapes are named.
    let frames = edited_copy(&b, "more-frames", |m| {
        let f = m["max_frames"].as_u64().unwrap();
        m["max_frames"] = (f + 8).into();
    });
    let e = load_err(&frames);
    assert!(
        e.contains("self_k_0") && e.contains("but the config implies"),
        "{e}"
    );
    // Config and manifest agree with each other but not with the graph file: the session's
    // own inputs are checked too.
    let both = edited_copy(&b, "manifest-vs-graph", |m| {
        let f = m["max_frames"].as_u64().unwrap() as i64;
        m["max_frames"] = (f + 8).into();
        for spec in m["graphs"]["decoder_step"]["inputs"]
            .as_array_mut()
            .unwrap()
        {
            for d in spec["shape"].as_array_mut().unwrap() {
                if d.as_i64() == Some(f) {
                    *d = (f + 8).into();
                }
            }
        }
    });
    let e = load_err(&both);
    assert!(
        e.contains("self_k_0") && e.contains("manifest says") && e.contains("re-export"),
        "{e}"
    );
}

#[test]
fn dia_export_check_verify_reports_damage_with_its_own_exit_status() {
    let b = edited_copy(&bundle("tiny-hf"), "verify-cli", |_| {});
    let ok = dia_tests::run("dia-export", &["check", b.to_str().unwrap(), "--verify"]);
    let out = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{out}{}", dia_tests::stderr(&ok));
    assert!(out.contains("files match the manifest"), "{out}");

    let w = b.join("encoder.weights");
    let mut bytes = fs::read(&w).unwrap();
    bytes[7] ^= 1;
    fs::write(&w, &bytes).unwrap();
    let bad = dia_tests::run("dia-export", &["check", b.to_str().unwrap(), "--verify"]);
    let e = dia_tests::stderr(&bad);
    assert_eq!(bad.status.code(), Some(1), "{e}");
    assert!(
        e.contains("encoder.weights") && e.contains("SHA-256"),
        "{e}"
    );

    // Neither --verify nor --ep: nothing to check is a usage error.
    let none = dia_tests::run("dia-export", &["check", b.to_str().unwrap()]);
    assert_eq!(none.status.code(), Some(2), "{}", dia_tests::stderr(&none));
}
