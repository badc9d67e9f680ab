//! Shared helpers of the end-to-end tests: fixture paths, bundles exported once per test
//! binary, the built binaries, and the error metric of the parity tests.

pub mod dac;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use dia_export::{export, ExportOptions};
use dia_graphs::DType;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn fixtures() -> PathBuf {
    repo_root().join("tests").join("fixtures")
}

pub fn reference(name: &str) -> PathBuf {
    fixtures().join("reference").join(name)
}

/// The reference cases (`tests/fixtures/reference/texts.json`).
pub fn texts() -> serde_json::Value {
    let p = reference("texts.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

/// Checkpoint layouts the fixtures come in.
pub const LAYOUTS: [&str; 2] = ["tiny-nari", "tiny-hf"];

static DIRS: OnceLock<tempfile::TempDir> = OnceLock::new();
static BUNDLES: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// A scratch directory living as long as the test binary.
pub fn scratch() -> &'static Path {
    DIRS.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// Float32 bundles exported from both fixture layouts, once per test binary.
pub fn bundle(layout: &str) -> PathBuf {
    let all = BUNDLES.get_or_init(|| {
        LAYOUTS
            .iter()
            .map(|l| {
                let out = scratch().join(format!("bundle-{l}"));
                export(&ExportOptions {
                    checkpoint: fixtures().join(l),
                    out: out.clone(),
                    dtype: DType::F32,
                    max_text_len: None,
                    max_frames: None,
                    dac: None,
                    quantize: None,
                    target: dia_graphs::Target::Portable,
                })
                .unwrap_or_else(|e| panic!("export {l}: {e}"));
                out
            })
            .collect()
    });
    all[LAYOUTS
        .iter()
        .position(|l| *l == layout)
        .expect("known layout")]
    .clone()
}

/// `max |a - b| / max |b|`: the parity metric (relative to the reference's scale).
pub fn rel_err(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len(), "lengths differ");
    let scale = reference.iter().fold(0f32, |m, x| m.max(x.abs()));
    let err = ours
        .iter()
        .zip(reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err.is_finite(), "non-finite values");
    err / scale.max(f32::MIN_POSITIVE)
}

/// A binary of the workspace (built by `cargo build --bins` before the tests run).
pub fn bin(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let p = dir.join(name);
    assert!(
        p.is_file(),
        "{} is not built: run `cargo build --bins` (scripts/test.sh does) before the tests",
        p.display()
    );
    p
}

pub fn run(name: &str, args: &[&str]) -> Output {
    Command::new(bin(name))
        .args(args)
        .current_dir(repo_root())
        .output()
        .unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}
