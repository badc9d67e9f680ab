//! Helpers of the DAC parity tests: bundles exported with `--dac` from both codec layouts, and
//! the codec graphs run directly through ONNX Runtime (the ONNX Runtime library found as the
//! runtime finds it).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use dia_export::{export, ExportOptions};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::Tensor;

use crate::{fixtures, scratch};

/// Codec fixtures: the same tiny DAC in the transformers and in descript's layout.
pub const DAC_LAYOUTS: [&str; 2] = ["tiny-dac", "tiny-dac-descript"];

static DAC_BUNDLES: OnceLock<Vec<PathBuf>> = OnceLock::new();

/// Float32 bundles of tiny-nari exported with `--dac` from each codec layout, once per binary.
pub fn dac_bundle(dac: &str) -> PathBuf {
    let all = DAC_BUNDLES.get_or_init(|| {
        DAC_LAYOUTS
            .iter()
            .map(|l| {
                let out = scratch().join(format!("bundle-dac-{l}"));
                export(&ExportOptions {
                    checkpoint: fixtures().join("tiny-nari"),
                    out: out.clone(),
                    dac: Some(fixtures().join(l)),
                    target: dia_graphs::Target::Portable,
                    ..ExportOptions::default()
                })
                .unwrap_or_else(|e| panic!("export with --dac {l}: {e}"));
                out
            })
            .collect()
    });
    all[DAC_LAYOUTS
        .iter()
        .position(|l| *l == dac)
        .expect("known DAC layout")]
    .clone()
}

/// An ONNX Runtime CPU session on `path`, fully optimised as the runtime opens its graphs.
pub fn session(path: &Path) -> Session {
    let env = dia_run::onnxruntime::environment().expect("ONNX Runtime");
    Session::builder(env)
        .unwrap()
        .with_optimization_level(GraphOptimizationLevel::All)
        .unwrap_or_else(|e| panic!("{e}"))
        .commit_from_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `dac_decoder.onnx` on codes `[1, C, frames]` (row-major); returns the output's shape
/// and samples.
pub fn decode(session: &mut Session, codes: &[i64], c: usize) -> (Vec<i64>, Vec<f32>) {
    let frames = codes.len() / c;
    let input = Tensor::from_array(([1usize, c, frames], codes.to_vec())).unwrap();
    let out = session.run(ort::inputs!["codes" => input]).unwrap();
    let (shape, data) = out["audio"].try_extract_tensor::<f32>().unwrap();
    (shape.to_vec(), data.to_vec())
}

/// Runs `dac_encoder.onnx` on a waveform `[1, 1, samples]`; returns the codes' shape and data.
pub fn encode(session: &mut Session, wave: &[f32]) -> (Vec<i64>, Vec<i64>) {
    let input = Tensor::from_array(([1usize, 1, wave.len()], wave.to_vec())).unwrap();
    let out = session.run(ort::inputs!["audio" => input]).unwrap();
    let (shape, data) = out["codes"].try_extract_tensor::<i64>().unwrap();
    (shape.to_vec(), data.to_vec())
}

/// Exports tiny-nari with `--dac dac`, which must fail; checks nothing was left behind and
/// returns the error message.
pub fn dac_export_err(dac: &Path) -> String {
    let out = scratch().join(format!(
        "out-dac-{}",
        dac.file_name().unwrap().to_string_lossy()
    ));
    let err = export(&ExportOptions {
        checkpoint: fixtures().join("tiny-nari"),
        out: out.clone(),
        dac: Some(dac.to_path_buf()),
        target: dia_graphs::Target::Portable,
        ..ExportOptions::default()
    })
    .expect_err("export with a bad codec must fail")
    .to_string();
    assert!(!out.exists(), "a failed export left {}", out.display());
    let partial = std::fs::read_dir(out.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name().to_string_lossy().starts_with(&format!(
                ".{}.partial-",
                out.file_name().unwrap().to_string_lossy()
            ))
        });
    assert!(!partial, "partial bundle left behind");
    err
}
