//! Streaming audio: chunks decoded as frames arrive, with context at every cut, concatenate to
//! the one-shot decode of the same codes, for every codec layout (the fused and portable
//! bundles' dynamic-length codec, the coreml bundle's fixed 32-frame windows).

use dia_graphs::{DType, Target};
use dia_run::codec::{ChunkSizes, StreamDecoder};
use dia_run::delay::Frames;
use dia_run::{AudioStream, DiaModel, ModelOptions};
use dia_tests::dac::dac_bundle;
use dia_tests::{bundle, fixtures, greedy_case_named, target_bundle};

fn codec_bundles() -> Vec<(&'static str, std::path::PathBuf)> {
    let dac = Some(fixtures().join("tiny-dac"));
    vec![
        (
            "fused",
            target_bundle(Target::Fused, DType::F32, dac.clone()),
        ),
        ("portable", dac_bundle("tiny-dac")),
        ("coreml", target_bundle(Target::CoreMl, DType::F32, dac)),
    ]
}

/// `max |a - b| / max |b|`.
fn rel_to_peak(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let peak = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    let err = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    err / peak.max(f32::MIN_POSITIVE)
}

#[test]
fn streamed_codes_decode_to_the_one_shot_audio() {
    // The reference's greedy codes: 134 frames, pushed a few at a time in an uneven rhythm.
    let (_, _, want) = greedy_case_named("long");
    let codes = Frames {
        channels: want.ncols(),
        data: want.iter().cloned().collect(),
    };
    for (name, b) in codec_bundles() {
        let model = DiaModel::load(&b, &ModelOptions::default()).unwrap();
        let one_shot = model.decode_audio(&codes).unwrap();
        for sizes in [ChunkSizes { first: 1, rest: 5 }, ChunkSizes::default()] {
            let mut dec = StreamDecoder::new(model.codec().unwrap(), sizes).unwrap();
            let mut streamed = Vec::new();
            let mut sent = 0;
            let mut chunks = 0;
            for (i, step) in [1usize, 3, 2, 7].iter().cycle().enumerate() {
                if sent >= codes.len() {
                    break;
                }
                let n = (*step).min(codes.len() - sent);
                let pcm = dec.push(&codes.data[sent * 9..(sent + n) * 9]).unwrap();
                chunks += usize::from(!pcm.is_empty());
                streamed.extend_from_slice(pcm);
                sent += n;
                // Audio never runs ahead of the codes minus the lookahead.
                assert!(dec.frames_out() <= sent, "{name} push {i}");
            }
            streamed.extend_from_slice(dec.finish().unwrap());
            let err = rel_to_peak(&streamed, &one_shot);
            eprintln!("{name} {sizes:?}: {chunks} chunks before the end, error {err:e}");
            // Measured 2.7e-6 (fused, portable: float rounding of convolutions over other
            // lengths) and 0 (coreml: the one-shot chunked decode's own windows).
            assert!(err <= 1e-4, "{name} {sizes:?}: {err}");
            assert!(chunks >= 2, "{name}: audio came before the last codes");
        }
    }
}

#[test]
fn an_audio_stream_is_the_generation_decoded_and_starts_before_it_ends() {
    let b = target_bundle(Target::Fused, DType::F32, Some(fixtures().join("tiny-dac")));
    let model = DiaModel::load(&b, &ModelOptions::default()).unwrap();
    let (text, opts, _) = greedy_case_named("eos");
    let mut s = AudioStream::new(&model, &text, &opts, ChunkSizes { first: 2, rest: 8 }).unwrap();
    let mut pcm = Vec::new();
    let mut first_before_done = None;
    while let Some(chunk) = s.next_chunk().unwrap() {
        pcm.extend_from_slice(chunk);
        first_before_done.get_or_insert(!s.generator().is_done());
    }
    assert_eq!(
        first_before_done,
        Some(true),
        "the first audio waits for the end"
    );
    assert!(s.first_audio_seconds().is_some());
    let gen = s.finish();
    let whole = model.decode_audio(&gen.codes).unwrap();
    let again = model.generate(&text, &opts, |_| {}).unwrap();
    assert_eq!(gen.codes.data, again.codes.data);
    let err = rel_to_peak(&pcm, &whole);
    assert!(err <= 1e-4, "{err}");
}

#[test]
fn streaming_needs_a_codec() {
    let model = DiaModel::load(&bundle("tiny-nari"), &ModelOptions::default()).unwrap();
    let opts = dia_run::GenerateOptions::default();
    let e = match AudioStream::new(&model, "[S1] Hi.", &opts, ChunkSizes::default()) {
        Ok(_) => panic!("a stream without a codec"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("cannot stream audio") && e.contains("--dac"),
        "{e}"
    );
}
