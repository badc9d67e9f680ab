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
                    target: dia_graphs::Target::Portable,
                    ..ExportOptions::default()
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

/// `dia-run --bundle BUNDLE ARGS...`.
pub fn dia_run(bundle: &Path, args: &[&str]) -> Output {
    let mut all = vec!["--bundle", bundle.to_str().expect("UTF-8 path")];
    all.extend_from_slice(args);
    run("dia-run", &all)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// Per-step max relative error of `model`'s logits against the reference's teacher-forced
/// logits (`teacher_tokens.npy` fed step by step).
pub fn teacher_forced_errors(model: &dia_run::DiaModel) -> Vec<f32> {
    use ndarray::{Array2, Array4};
    let steps: Array2<i64> = ndarray_npy::read_npy(reference("teacher_tokens.npy")).unwrap();
    let want: Array4<f32> = ndarray_npy::read_npy(reference("teacher_logits.npy")).unwrap();
    let text = texts()["teacher_text"].as_str().unwrap().to_string();
    let tokens = dia_run::tokenizer::encode_text(&text, model.manifest().max_text_len).unwrap();
    let mut utt = model.utterance(&tokens).unwrap();
    (0..steps.nrows())
        .map(|t| {
            let input: Vec<i64> = steps.row(t).iter().cloned().collect();
            let got = utt.step(&input, t).unwrap();
            let r: Vec<f32> = want
                .index_axis(ndarray::Axis(0), t)
                .iter()
                .cloned()
                .collect();
            rel_err(got, &r)
        })
        .collect()
}

/// Runs every greedy case of the reference (long, natural EOS, voice prompt) through `model`
/// and asserts the codes and EOS step equal the reference's token for token.
/// A greedy reference case of `texts.json`: its text, the options that reproduce it and the
/// reference's codes `[frames, C]`.
pub fn greedy_case(
    case: &serde_json::Value,
) -> (String, dia_run::GenerateOptions, ndarray::Array2<i64>) {
    use dia_run::delay::Frames;
    use ndarray::Array2;
    let name = case["name"].as_str().unwrap();
    let want: Array2<i64> =
        ndarray_npy::read_npy(reference(&format!("greedy_{name}.npy"))).unwrap();
    let opts = dia_run::GenerateOptions {
        max_tokens: Some(case["max_tokens"].as_u64().unwrap() as usize),
        cfg_scale: case["cfg_scale"].as_f64().unwrap() as f32,
        temperature: case["temperature"].as_f64().unwrap() as f32,
        top_p: case["top_p"].as_f64().unwrap() as f32,
        cfg_filter_top_k: case["cfg_filter_top_k"].as_u64().unwrap() as usize,
        seed: Some(0),
        // The voice-prompt case: prompt codes prefilled behind BOS, as the reference's
        // `generate(audio_prompt=codes)`.
        audio_prompt: case["prompt_codes"].as_str().map(|f| {
            let p: Array2<i64> = ndarray_npy::read_npy(reference(f)).unwrap();
            Frames {
                channels: p.ncols(),
                data: p.iter().cloned().collect(),
            }
        }),
        ignore_eos: false,
    };
    (case["text"].as_str().unwrap().to_string(), opts, want)
}

/// The greedy reference case named `name`.
pub fn greedy_case_named(name: &str) -> (String, dia_run::GenerateOptions, ndarray::Array2<i64>) {
    let t = texts();
    let case = t["greedy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no greedy case {name}"))
        .clone();
    greedy_case(&case)
}

pub fn assert_greedy_cases(model: &dia_run::DiaModel, label: &str) {
    let t = texts();
    let cases = t["greedy"].as_array().unwrap();
    assert!(
        cases.len() >= 3,
        "need the long, the EOS and the voice-prompt case"
    );
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (text, opts, want) = greedy_case(case);
        let gen = model.generate(&text, &opts, |_| {}).unwrap();
        assert_eq!(gen.codes.channels, want.ncols());
        assert_eq!(gen.codes.len(), want.nrows(), "{label}/{name}: frame count");
        for (f, row) in want.rows().into_iter().enumerate() {
            let w: Vec<i64> = row.iter().cloned().collect();
            assert_eq!(gen.codes.row(f), &w[..], "{label}/{name}: frame {f}");
        }
        let eos = case["eos_step"].as_u64().map(|s| s as usize);
        assert_eq!(gen.eos_step, eos, "{label}/{name}: EOS step");
    }
}

/// A bundle of the tiny nari fixture for `target` and `dtype` (with the codec of `dac` if
/// given), exported once per test binary.
pub fn target_bundle(target: dia_graphs::Target, dtype: DType, dac: Option<PathBuf>) -> PathBuf {
    // Tests run in parallel: export each bundle once.
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let tag = if dac.is_some() { "-dac" } else { "" };
    let out = scratch().join(format!("bundle-{}-{}{tag}", target.name(), dtype.name()));
    if !out.join("manifest.json").is_file() {
        export(&ExportOptions {
            checkpoint: fixtures().join("tiny-nari"),
            out: out.clone(),
            dtype,
            dac,
            target,
            ..ExportOptions::default()
        })
        .unwrap_or_else(|e| panic!("export {}: {e}", target.name()));
    }
    out
}

/// A copy of the checkpoint fixture `fixture` (a Dia or DAC one) whose tensors pass through
/// `edit` (name, shape, bytes; `None` drops the tensor), written under the scratch dir.
pub fn edited_fixture(
    fixture: &str,
    tag: &str,
    edit: impl Fn(&str, Vec<usize>, &[u8]) -> Option<(Vec<usize>, Vec<u8>)>,
) -> PathBuf {
    use safetensors::tensor::TensorView;
    let src = fixtures().join(fixture);
    let dir = scratch().join(format!("bad-{fixture}-{tag}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut kept: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, view) in st.tensors() {
        if let Some((shape, data)) = edit(&name, view.shape().to_vec(), view.data()) {
            kept.push((name, view.dtype(), shape, data));
        }
    }
    let views: Vec<(String, TensorView)> = kept
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(views, &None).unwrap(),
    )
    .unwrap();
    dir
}
