//! Parity with the official nari-labs implementation on the tiny fixture checkpoints
//! (reference outputs made by scripts/make_reference.py), for both checkpoint layouts.

use dia_run::decoder::Utterance;
use dia_run::delay::Frames;
use dia_run::tokenizer::encode_text;
use dia_run::{DiaModel, GenerateOptions, ModelOptions};
use dia_tests::{bundle, reference, rel_err, texts, LAYOUTS};
use ndarray::{Array2, Array3, Array4};
use ndarray_npy::read_npy;

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
            assert!(
                err < TOL,
                "{layout}: unpadded encoder states of text {i}: rel err {err:e}"
            );
        }
    }
}

#[test]
fn teacher_forced_logits_match_reference() {
    let steps: Array2<i64> = read_npy(reference("teacher_tokens.npy")).unwrap();
    let want: Array4<f32> = read_npy(reference("teacher_logits.npy")).unwrap();
    let text = texts()["teacher_text"].as_str().unwrap().to_string();
    for layout in LAYOUTS {
        let model = load(layout);
        let tokens = encode_text(&text, model.manifest().max_text_len).unwrap();
        let mut utt = Utterance::new(&model, &tokens).unwrap();
        let mut worst = 0f32;
        for t in 0..steps.nrows() {
            let input: Vec<i64> = steps.row(t).iter().cloned().collect();
            let got = utt.step(&input, t).unwrap();
            let reference: Vec<f32> = want
                .index_axis(ndarray::Axis(0), t)
                .iter()
                .cloned()
                .collect();
            let err = rel_err(got, &reference);
            assert!(err < TOL, "{layout}: logits at step {t}: rel err {err:e}");
            worst = worst.max(err);
        }
        eprintln!(
            "{layout}: worst logits rel err over {} steps: {worst:e}",
            steps.nrows()
        );
    }
}

#[test]
fn greedy_codes_match_reference_token_for_token() {
    let t = texts();
    let cases = t["greedy"].as_array().unwrap();
    assert!(
        cases.len() >= 3,
        "need the long, the EOS and the voice-prompt case"
    );
    for layout in LAYOUTS {
        let model = load(layout);
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let want: Array2<i64> = read_npy(reference(&format!("greedy_{name}.npy"))).unwrap();
            let opts = GenerateOptions {
                max_tokens: Some(case["max_tokens"].as_u64().unwrap() as usize),
                cfg_scale: case["cfg_scale"].as_f64().unwrap() as f32,
                temperature: case["temperature"].as_f64().unwrap() as f32,
                top_p: case["top_p"].as_f64().unwrap() as f32,
                cfg_filter_top_k: case["cfg_filter_top_k"].as_u64().unwrap() as usize,
                seed: Some(0),
                // The voice-prompt case: prompt codes prefilled behind BOS, as the reference's
                // `generate(audio_prompt=codes)`.
                audio_prompt: case["prompt_codes"].as_str().map(|f| {
                    let p: Array2<i64> = read_npy(reference(f)).unwrap();
                    Frames {
                        channels: p.ncols(),
                        data: p.iter().cloned().collect(),
                    }
                }),
                ignore_eos: false,
            };
            let gen = model
                .generate(case["text"].as_str().unwrap(), &opts, |_| {})
                .unwrap();
            assert_eq!(gen.codes.channels, want.ncols());
            assert_eq!(
                gen.codes.len(),
                want.nrows(),
                "{layout}/{name}: frame count"
            );
            for (f, row) in want.rows().into_iter().enumerate() {
                let w: Vec<i64> = row.iter().cloned().collect();
                assert_eq!(gen.codes.row(f), &w[..], "{layout}/{name}: frame {f}");
            }
            let eos = case["eos_step"].as_u64().map(|s| s as usize);
            assert_eq!(gen.eos_step, eos, "{layout}/{name}: EOS step");
        }
    }
}
