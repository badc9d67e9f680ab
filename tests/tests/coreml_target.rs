//! `dia-export --target coreml`: graphs the CoreML provider takes whole (checked by our rule
//! table), which compute the same model (run here on the CPU provider: same graphs).

use std::path::PathBuf;

use dia_coreml_check::check_bundle;
use dia_graphs::{DType, Target};
use dia_run::{DiaModel, ModelOptions};
use dia_tests::{
    assert_greedy_cases, fixtures, rel_err, run, stderr, target_bundle, teacher_forced_errors,
};

fn coreml_bundle(dtype: DType) -> PathBuf {
    target_bundle(Target::CoreMl, dtype, None)
}

#[test]
fn coreml_bundle_passes_our_coreml_rule_table() {
    // Our rule table (dia_coreml_check, transcribed from ONNX Runtime's CoreML EP
    // sources) finds no node it would refuse; no Core ML provider runs here.
    for dtype in [DType::F16, DType::F32] {
        let b = coreml_bundle(dtype);
        let report = check_bundle(&b, "coreml").unwrap();
        assert_eq!(report.len(), 2, "encoder and decoder step");
        for (graph, unsupported) in &report {
            assert!(
                unsupported.is_empty(),
                "{graph} ({}): {unsupported:?}",
                dtype.name()
            );
        }
        let o = run(
            "dia-export",
            &["check", b.to_str().unwrap(), "--ep", "coreml"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
}

#[test]
fn coreml_graphs_compute_the_reference_model() {
    // float32 Core ML graphs on the CPU provider: the reference's logits and greedy codes.
    let model = DiaModel::load(&coreml_bundle(DType::F32), &ModelOptions::default()).unwrap();
    assert_eq!(model.target(), dia_graphs::Target::CoreMl);
    let errs = teacher_forced_errors(&model);
    let worst = errs.iter().cloned().fold(0f32, f32::max);
    eprintln!("coreml float32 vs reference: max rel logit err {worst:e}");
    // Measured 1.4e-6 (float32 rounding; a wiring error is of order 1).
    for (s, e) in errs.iter().enumerate() {
        assert!(*e < 1e-4, "step {s}: {e:e}");
    }
    assert_greedy_cases(&model, "coreml-f32");
}

#[test]
fn coreml_float16_stays_close_to_the_reference() {
    let model = DiaModel::load(&coreml_bundle(DType::F16), &ModelOptions::default()).unwrap();
    let worst = teacher_forced_errors(&model)
        .iter()
        .cloned()
        .fold(0f32, f32::max);
    eprintln!("coreml float16 vs reference: max rel logit err {worst:.5}");
    // Measured 0.0032 (benchmarks/coreml.md); float16 rounding, not a wiring error (near 1).
    assert!(worst < 0.02, "{worst}");
}

#[test]
fn coreml_dac_graphs_are_static_and_chunked_coding_matches_one_call() {
    let b = target_bundle(
        Target::CoreMl,
        DType::F32,
        Some(fixtures().join("tiny-dac")),
    );
    let report = check_bundle(&b, "coreml").unwrap();
    assert_eq!(
        report.len(),
        4,
        "encoder, decoder step, DAC decoder and DAC encoder"
    );
    for (graph, unsupported) in &report {
        assert!(unsupported.is_empty(), "{graph}: {unsupported:?}");
    }

    // 90 frames of pseudo-random codes: chunks of 32 with 11 frames of context each side.
    let mut codes = dia_run::delay::Frames::new(90, 9);
    let mut x: u64 = 12345;
    for c in codes.data.iter_mut() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *c = ((x >> 33) % 1024) as i64;
    }
    let chunked = DiaModel::load(&b, &ModelOptions::default()).unwrap();
    let whole = DiaModel::load(
        &dia_tests::dac::dac_bundle("tiny-dac"),
        &ModelOptions::default(),
    )
    .unwrap();
    let a = chunked.decode_audio(&codes).unwrap();
    let w = whole.decode_audio(&codes).unwrap();
    assert_eq!(a.len(), w.len());
    let err = rel_err(&a, &w);
    eprintln!("chunked vs one-shot DAC decode: rel err {err:e}");
    // Measured 1.5e-6: the 11 frames of context cover the decoder's receptive field.
    assert!(err < 1e-4, "{err:e}");

    // The encoder: 90 frames of that audio, chunked, give the one-shot codes exactly.
    let got = chunked.encode_audio(&w).unwrap();
    let want = whole.encode_audio(&w).unwrap();
    assert_eq!(got.len(), 90);
    let differ = got
        .data
        .iter()
        .zip(&want.data)
        .filter(|(a, b)| a != b)
        .count();
    eprintln!(
        "chunked vs one-shot DAC encode: {differ} of {} codes differ",
        want.data.len()
    );
    assert_eq!(got.data, want.data);
}
