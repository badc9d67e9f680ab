//! Parity of the DAC graphs with `transformers`' DacModel on the tiny codec fixtures
//! (reference outputs made by scripts/make_reference_dac.py), for both checkpoint layouts;
//! and bad codec checkpoints.

use dia_bundle::Manifest;
use dia_tests::dac::{dac_bundle, dac_export_err, decode, encode, session, DAC_LAYOUTS};
use dia_tests::{edited_fixture, fixtures, reference, rel_err, run, scratch, stderr};
use ndarray::{Array2, Array3};
use ndarray_npy::read_npy;

/// Relative error bound of the waveforms; measured 1.7e-6 (transformers layout) and 2.2e-6
/// (descript layout) for the whole decode, 1.1e-6 for the settled part of a shorter one.
const TOL: f32 = 1e-4;

fn dac_ref(name: &str) -> std::path::PathBuf {
    reference("dac").join(name)
}

#[test]
fn manifest_describes_the_codec_graphs() {
    for layout in DAC_LAYOUTS {
        let m = Manifest::load(&dac_bundle(layout)).unwrap();
        let dac = m.dac.as_ref().expect("manifest.dac");
        assert_eq!(
            (
                dac.sample_rate,
                dac.hop_length,
                dac.n_codebooks,
                dac.codebook_size
            ),
            (44100, 512, 9, 1024)
        );
        let want = if layout == "tiny-dac" {
            "transformers"
        } else {
            "descript"
        };
        assert_eq!(dac.source_layout, want);
        let dec = m.graphs.dac_decoder.as_ref().expect("dac_decoder");
        let codes = dec.input("codes").unwrap();
        assert_eq!(
            (codes.dtype.name(), codes.shape.clone()),
            ("int64", vec![1, 9, -1])
        );
        let audio = dec.output("audio").unwrap();
        assert_eq!(
            (audio.dtype.name(), audio.shape.clone()),
            ("float32", vec![1, 1, -1])
        );
        let enc = m.graphs.dac_encoder.as_ref().expect("dac_encoder");
        let audio = enc.input("audio").unwrap();
        assert_eq!(
            (audio.dtype.name(), audio.shape.clone()),
            ("float32", vec![1, 1, -1])
        );
        let codes = enc.output("codes").unwrap();
        assert_eq!(
            (codes.dtype.name(), codes.shape.clone()),
            ("int64", vec![1, 9, -1])
        );
        assert_eq!(dec.weights.as_deref(), Some("dac_decoder.weights"));
        assert_eq!(enc.weights.as_deref(), Some("dac_encoder.weights"));
    }
}

#[test]
fn decoder_matches_reference() {
    let codes: Array3<i64> = read_npy(dac_ref("codes.npy")).unwrap();
    let want: Array2<f32> = read_npy(dac_ref("audio.npy")).unwrap();
    let (c, frames) = (codes.shape()[1], codes.shape()[2]);
    for layout in DAC_LAYOUTS {
        let mut s = session(&dac_bundle(layout).join("dac_decoder.onnx"));
        let (shape, audio) = decode(&mut s, codes.as_slice().unwrap(), c);
        assert_eq!(shape, vec![1, 1, (frames * 512) as i64], "{layout}");
        let err = rel_err(&audio, want.as_slice().unwrap());
        eprintln!(
            "{layout}: dac_decoder rel err {err:e} over {} samples",
            audio.len()
        );
        assert!(err < TOL, "{layout}: dac_decoder rel err {err:e}");
    }
}

#[test]
fn decoder_takes_any_number_of_frames() {
    // The first `frames` codes of the fixture decode to `frames` hops of audio; away from the
    // cut (more than the decoder's receptive field, DAC_CONTEXT_FRAMES, before it) the audio is
    // the reference's decoding of all 20 frames.
    let codes: Array3<i64> = read_npy(dac_ref("codes.npy")).unwrap();
    let want: Array2<f32> = read_npy(dac_ref("audio.npy")).unwrap();
    let want = want.as_slice().unwrap();
    let mut s = session(&dac_bundle("tiny-dac").join("dac_decoder.onnx"));
    for frames in [1usize, 7, 12, 16] {
        let part: Vec<i64> = (0..9)
            .flat_map(|ch| (0..frames).map(move |t| (ch, t)))
            .map(|(ch, t)| codes[[0, ch, t]])
            .collect();
        let (shape, audio) = decode(&mut s, &part, 9);
        assert_eq!(shape, vec![1, 1, (frames * 512) as i64]);
        assert!(audio.iter().all(|x| x.is_finite()), "{frames} frames");
        let settled = frames.saturating_sub(dia_export::DAC_CONTEXT_FRAMES) * 512;
        if settled > 0 {
            let err = rel_err(&audio[..settled], &want[..settled]);
            eprintln!("first {settled} samples of a {frames}-frame decode: rel err {err:e}");
            // Measured 1.1e-6 at 12 and 16 frames.
            assert!(err < TOL, "{frames} frames: rel err {err:e}");
        }
    }
}

#[test]
fn encoder_codes_match_reference_exactly() {
    let wave: Array3<f32> = read_npy(dac_ref("wave.npy")).unwrap();
    let want: Array3<i64> = read_npy(dac_ref("wave_codes.npy")).unwrap();
    for layout in DAC_LAYOUTS {
        let mut s = session(&dac_bundle(layout).join("dac_encoder.onnx"));
        let (shape, codes) = encode(&mut s, wave.as_slice().unwrap());
        let want_shape: Vec<i64> = want.shape().iter().map(|&d| d as i64).collect();
        assert_eq!(shape, want_shape, "{layout}");
        let differ: Vec<usize> = codes
            .iter()
            .zip(want.iter())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i)
            .collect();
        eprintln!(
            "{layout}: dac_encoder codes differing: {} of {}",
            differ.len(),
            codes.len()
        );
        assert!(
            differ.is_empty(),
            "{layout}: codes differ at flat positions {differ:?}"
        );
    }
}

#[test]
fn encoder_pads_nothing_and_counts_frames() {
    // A caller right-pads to a multiple of the hop, as DacFeatureExtractor does; the graph then
    // gives one frame per hop.
    let wave: Array3<f32> = read_npy(dac_ref("wave.npy")).unwrap();
    let mut short: Vec<f32> = wave.as_slice().unwrap()[..3 * 512 - 100].to_vec();
    short.resize(3 * 512, 0.0);
    let mut s = session(&dac_bundle("tiny-dac-descript").join("dac_encoder.onnx"));
    let (shape, codes) = encode(&mut s, &short);
    assert_eq!(shape, vec![1, 9, 3]);
    assert!(codes.iter().all(|&c| (0..1024).contains(&c)));
}

#[test]
fn missing_dac_tensor_is_named_with_its_shape() {
    let dir = edited_fixture("tiny-dac", "missing", |n, s, b| {
        (n != "decoder.block.0.conv_t1.weight").then(|| (s, b.to_vec()))
    });
    let err = dac_export_err(&dir);
    assert!(
        err.contains("`decoder.block.0.conv_t1.weight` is missing"),
        "{err}"
    );
    assert!(
        err.contains("[32, 16, 16]") && err.contains("transformers layout"),
        "{err}"
    );

    let dir = edited_fixture("tiny-dac-descript", "missing", |n, s, b| {
        (n != "quantizer.quantizers.3.codebook.weight").then(|| (s, b.to_vec()))
    });
    let err = dac_export_err(&dir);
    assert!(
        err.contains("`quantizer.quantizers.3.codebook.weight` is missing"),
        "{err}"
    );
    assert!(
        err.contains("[1024, 8]") && err.contains("descript layout"),
        "{err}"
    );

    // A weight-normed conv without its v is reported under descript's name for it.
    let dir = edited_fixture("tiny-dac-descript", "missing-v", |n, s, b| {
        (n != "decoder.model.2.block.3.block.1.weight_v").then(|| (s, b.to_vec()))
    });
    let err = dac_export_err(&dir);
    assert!(
        err.contains("`decoder.model.2.block.3.block.1.weight_v` is missing"),
        "{err}"
    );
    assert!(err.contains("[8, 8, 7]"), "{err}");
}

#[test]
fn wrong_dac_shape_names_tensor_and_both_shapes() {
    let dir = edited_fixture("tiny-dac", "shape", |n, s, b| {
        if n == "decoder.block.1.res_unit2.conv1.weight" {
            Some((vec![8, 56], b.to_vec())) // [8, 8, 7]: same bytes, wrong shape
        } else {
            Some((s, b.to_vec()))
        }
    });
    let err = dac_export_err(&dir);
    assert!(
        err.contains("`decoder.block.1.res_unit2.conv1.weight`"),
        "{err}"
    );
    assert!(
        err.contains("[8, 56]") && err.contains("[8, 8, 7]"),
        "{err}"
    );

    let dir = edited_fixture("tiny-dac-descript", "shape", |n, s, b| {
        if n == "encoder.block.1.block.3.alpha" {
            Some((vec![4], b.to_vec())) // [1, 4, 1]
        } else {
            Some((s, b.to_vec()))
        }
    });
    let err = dac_export_err(&dir);
    assert!(err.contains("`encoder.block.1.block.3.alpha`"), "{err}");
    assert!(err.contains("[4]") && err.contains("[1, 4, 1]"), "{err}");
}

#[test]
fn dia_checkpoint_given_as_codec_is_refused() {
    let err = dac_export_err(&fixtures().join("tiny-hf"));
    assert!(err.contains("model_type is `dia`, not `dac`"), "{err}");
    let dir = scratch().join("dia-weights-only");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fixtures().join("tiny-nari").join("model.safetensors"),
        dir.join("model.safetensors"),
    )
    .unwrap();
    let err = dac_export_err(&dir);
    assert!(err.contains("not a DAC checkpoint"), "{err}");
}

#[test]
fn cli_exports_the_codec() {
    let out = scratch().join("cli-dac-bundle");
    let o = run(
        "dia-export",
        &[
            "tests/fixtures/tiny-nari",
            "--out",
            out.to_str().unwrap(),
            "--dac",
            "tests/fixtures/tiny-dac-descript",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("dac_decoder.onnx") && text.contains("dac_encoder.weights"),
        "{text}"
    );
    assert!(text.contains("descript layout"), "{text}");
    let m = Manifest::load(&out).unwrap();
    assert_eq!(m.dac.unwrap().source_layout, "descript");
}
