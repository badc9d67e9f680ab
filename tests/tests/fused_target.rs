//! `dia-export --target fused`: the decoder step written with ONNX Runtime's fused contrib
//! kernels (GroupQueryAttention, MultiHeadAttention, SkipSimplifiedLayerNormalization). The
//! GPU figures are in benchmarks/gpu.md; here the same graphs run on the CPU provider, whose
//! kernels compute the same functions, against the reference.

use std::collections::HashMap;
use std::path::PathBuf;

use dia_graphs::onnx::ModelProto;
use dia_graphs::{DType, Target};
use dia_run::{DiaModel, ModelOptions};
use dia_tests::{assert_greedy_cases, bundle, target_bundle, teacher_forced_errors};
use prost::Message;

fn fused_bundle(dtype: DType) -> PathBuf {
    target_bundle(Target::Fused, dtype, None)
}

fn op_counts(bundle: &std::path::Path) -> HashMap<String, usize> {
    let bytes = std::fs::read(bundle.join("decoder_step.onnx")).unwrap();
    let model = ModelProto::decode(bytes.as_slice()).unwrap();
    let mut counts = HashMap::new();
    for n in model.graph.unwrap().node {
        *counts.entry(n.op_type).or_insert(0) += 1;
    }
    counts
}

#[test]
fn fused_step_uses_the_fused_kernels() {
    let layers = 2; // the tiny fixture's decoder
    let fused = op_counts(&fused_bundle(DType::F16));
    assert_eq!(fused["GroupQueryAttention"], layers);
    assert_eq!(fused["MultiHeadAttention"], layers);
    // Three per layer (each residual add with the next norm) and the final norm.
    assert_eq!(fused["SkipSimplifiedLayerNormalization"], 3 * layers + 1);
    for gone in ["ScatterElements", "Softmax", "Where", "Pow", "Concat"] {
        assert!(!fused.contains_key(gone), "{gone} left in the fused step");
    }
    let portable = op_counts(&bundle("tiny-nari"));
    let (n_fused, n_portable): (usize, usize) = (fused.values().sum(), portable.values().sum());
    eprintln!("decoder step nodes: fused target {n_fused}, portable {n_portable}");
    // Measured 37 and 154 nodes.
    assert!(
        n_fused * 2 < n_portable,
        "{n_fused} nodes is not well under the portable step's {n_portable}"
    );
}

#[test]
fn fused_step_runs_at_the_shortest_text_bucket() {
    // Cross-attention reads every padded text position each step: fused bundles take the text
    // length as a dynamic dim and the runtime pads to 32, 64, 128, ... (capped at the maximum).
    let model = DiaModel::load(&fused_bundle(DType::F32), &ModelOptions::default()).unwrap();
    let max = model.manifest().max_text_len;
    assert_eq!(max, 64);
    let buckets: Vec<usize> = [1, 26, 32, 33, 61, 64].map(|n| model.text_bucket(n)).into();
    assert_eq!(buckets, [32, 32, 32, 64, 64, 64]);
    let bias = model
        .manifest()
        .graphs
        .decoder_step
        .inputs
        .iter()
        .find(|t| t.name == "cross_bias")
        .unwrap()
        .clone();
    // Batch (CFG pairs of many utterances) and text length are both dynamic.
    assert_eq!(bias.shape, vec![-1, 1, 1, -1]);
    assert!(model.manifest().step_batches());
    // Fixed-shape bundles always run at their maximum.
    let portable = DiaModel::load(&bundle("tiny-nari"), &ModelOptions::default()).unwrap();
    assert_eq!(portable.text_bucket(1), portable.manifest().max_text_len);
}

#[test]
fn fused_target_matches_the_reference() {
    // float32 on the CPU provider: the reference's logits and greedy codes (EOS and voice
    // prompt included), token for token; the texts run at text buckets 32 and 64.
    let model = DiaModel::load(&fused_bundle(DType::F32), &ModelOptions::default()).unwrap();
    assert_eq!(model.target(), dia_graphs::Target::Fused);
    let errs = teacher_forced_errors(&model);
    let worst = errs.iter().cloned().fold(0f32, f32::max);
    eprintln!("fused target float32 vs reference: max rel logit err {worst:e}");
    // Measured 1.9e-6.
    assert!(worst < 1e-4, "{worst}");
    assert_greedy_cases(&model, "fused-f32");
}

#[test]
fn pooled_decoder_states_refilled_per_utterance_match_the_reference() {
    // Decoder states are pooled per text bucket and refilled per utterance without clearing
    // the cache (as CUDA graphs need: fixed addresses): the cases run back to back on one
    // model, each shorter case over the stale slots of the one before, must still match.
    for bundle in [fused_bundle(DType::F32), bundle("tiny-nari")] {
        let model = DiaModel::load(&bundle, &ModelOptions::default()).unwrap();
        assert_greedy_cases(&model, "pooled state");
        let built = model.decoder().idle_states();
        assert!(built >= 1, "states go back to the pool");
        assert_greedy_cases(&model, "pooled state, again");
        assert_eq!(
            model.decoder().idle_states(),
            built,
            "the second round reuses them"
        );
    }
}

#[test]
fn fused_float16_stays_close_to_the_reference() {
    let model = DiaModel::load(&fused_bundle(DType::F16), &ModelOptions::default()).unwrap();
    let errs = teacher_forced_errors(&model);
    let worst = errs.iter().cloned().fold(0f32, f32::max);
    eprintln!("fused target float16 vs reference: max rel logit err {worst:.5}");
    // Measured 0.0032: float16 rounding (the coreml float16 bundle measures the same), not a
    // wiring error, which is of order 1.
    assert!(worst < 0.02, "{worst}");
}
