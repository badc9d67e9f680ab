//! Parity with the official nari-labs implementation on the tiny fixture checkpoints
//! (reference outputs made by scripts/make_reference.py), for both checkpoint layouts.

use dia_run::tokenizer::encode_text;
use dia_run::{DiaModel, ModelOptions};
use dia_tests::{
    assert_greedy_cases, bundle, reference, rel_err, teacher_forced_errors, texts, LAYOUTS,
};
use ndarray::{Array2, Array3};
use ndarray_npy::read_npy;

/// Relative error bound of every parity check here; measured: encoder states 6.6e-7 (padded
/// and unpadded, both layouts), teacher-forced logits 1.4e-6.
const TOL: f32 = 1e-4;

fn load(layout: &str) -> DiaModel {
    DiaModel::load(&bundle(layout), &ModelOptions::default()).unwrap()
}

#[test]
fn encoder_states_match_reference() {
    let tokens: Array2<i64> = read_npy(reference("encoder_tokens.npy")).unwrap();
    let t = texts();
    for layout in LAYOUTS {
        let model = load(layout);
        for (i, text) in t["encoder_texts"].as_array().unwrap().iter().enumerate() {
            // Our tokenizer gives the reference's tokens...
            let ours = encode_text(text.as_str().unwrap(), tokens.ncols()).unwrap();
            let row: Vec<i64> = tokens.row(i).iter().cloned().collect();
            assert_eq!(
                &row[..ours.len()],
                &ours[..],
                "{layout}: tokens of text {i}"
            );
            assert!(
                row[ours.len()..].iter().all(|&x| x == 0),
                "padding of text {i}"
            );
            // ...and the encoder the reference's states, for both CFG rows: padded to the
            // encoder length as the reference runs it (every row)...
            let want: Array3<f32> = read_npy(reference(&format!("encoder_out_{i}.npy"))).unwrap();
            let got = model.encoder_states(&ours, Some(tokens.ncols())).unwrap();
            let err = rel_err(&got, want.as_slice().unwrap());
            eprintln!("{layout}: padded encoder states of text {i}: rel err {err:e}");
            assert!(
                err < TOL,
                "{layout}: padded encoder states of text {i}: rel err {err:e}"
            );
            // ...and unpadded, as dia-run runs it (the text's rows).
            let got = model.encoder_states(&ours, None).unwrap();
            let n = ours.len();
            let rows: Vec<f32> = (0..2)
                .flat_map(|r| {
                    want.index_axis(ndarray::Axis(0), r)
                        .slice(ndarray::s![..n, ..])
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                })
                .collect();
            let err = rel_err(&got, &rows);
            eprintln!("{layout}: unpadded encoder states of text {i}: rel err {err:e}");
            assert!(
                err < TOL,
                "{layout}: unpadded encoder states of text {i}: rel err {err:e}"
            );
        }
    }
}

#[test]
fn teacher_forced_logits_match_reference() {
    for layout in LAYOUTS {
        let errs = teacher_forced_errors(&load(layout));
        for (t, err) in errs.iter().enumerate() {
            assert!(*err < TOL, "{layout}: logits at step {t}: rel err {err:e}");
        }
        let worst = errs.iter().cloned().fold(0f32, f32::max);
        eprintln!(
            "{layout}: worst logits rel err over {} steps: {worst:e}",
            errs.len()
        );
    }
}

#[test]
fn greedy_codes_match_reference_token_for_token() {
    for layout in LAYOUTS {
        assert_greedy_cases(&load(layout), layout);
    }
}
