//! `dia-export --quantize int8` on the tiny model: the bundle uses block-quantised projections
//! and its logits stay close to the reference's.

use dia_export::{export, ExportOptions};
use dia_graphs::quant::QuantSpec;
use dia_graphs::DType;
use dia_run::decoder::Utterance;
use dia_run::tokenizer::encode_text;
use dia_run::{DiaModel, ModelOptions};
use dia_tests::{bundle, fixtures, reference, rel_err, scratch, texts};
use ndarray::{Array2, Array4};
use ndarray_npy::read_npy;

#[test]
fn int8_bundle_is_smaller_and_close_to_the_reference() {
    let out = scratch().join("bundle-int8");
    let report = export(&ExportOptions {
        checkpoint: fixtures().join("tiny-nari"),
        out: out.clone(),
        dtype: DType::F32,
        max_text_len: None,
        max_frames: None,
        dac: None,
        quantize: Some(QuantSpec::int8()),
        target: dia_graphs::Target::Portable,
    })
    .unwrap();
    let q = report
        .manifest
        .quantization
        .as_ref()
        .expect("manifest records quantisation");
    assert_eq!((q.bits, q.block_size), (8, 32));
    let size = |dir: &std::path::Path| {
        std::fs::metadata(dir.join("decoder_step.weights"))
            .unwrap()
            .len()
    };
    let f32_bundle = bundle("tiny-nari");
    // The tiny model is mostly its float32 embedding tables and logits head; the projections
    // shrink about 4x.
    assert!(
        size(&out) < size(&f32_bundle),
        "{} vs {}",
        size(&out),
        size(&f32_bundle)
    );
    let onnx = std::fs::read(out.join("decoder_step.onnx")).unwrap();
    assert!(
        onnx.windows(11).any(|w| w == b"MatMulNBits"),
        "the step graph uses MatMulNBits"
    );

    let steps: Array2<i64> = read_npy(reference("teacher_tokens.npy")).unwrap();
    let want: Array4<f32> = read_npy(reference("teacher_logits.npy")).unwrap();
    let model = DiaModel::load(&out, &ModelOptions::default()).unwrap();
    let text = texts()["teacher_text"].as_str().unwrap().to_string();
    let tokens = encode_text(&text, model.manifest().max_text_len).unwrap();
    let mut utt = Utterance::new(&model, &tokens).unwrap();
    let (mut worst, mut sum) = (0f32, 0f32);
    for t in 0..steps.nrows() {
        let input: Vec<i64> = steps.row(t).iter().cloned().collect();
        let got = utt.step(&input, t).unwrap();
        let r: Vec<f32> = want
            .index_axis(ndarray::Axis(0), t)
            .iter()
            .cloned()
            .collect();
        let e = rel_err(got, &r);
        worst = worst.max(e);
        sum += e;
    }
    let mean = sum / steps.nrows() as f32;
    eprintln!("int8 vs reference logits: max rel err {worst:.4}, mean {mean:.4}");
    // Measured 0.060 / 0.043 over these 32 steps; these bounds catch a broken
    // packing or scale layout, which gives errors near 1.
    assert!(worst < 0.25 && mean < 0.1, "max {worst}, mean {mean}");
}
