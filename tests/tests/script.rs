//! Scripts of any length: a script several times the tiny bundle's windows is split into
//! segments, each generated with the previous segment's codes and transcript as its audio
//! prompt (the reference's `audio_prompt` semantics, proven equal to nari-labs in
//! `parity.rs`). Each segment's codes must equal a direct generation with those inputs,
//! rebuilt here from the plan and the codes alone; seeded sampling repeats; the streamed
//! script is the one-shot decode joined by the same crossfade.

use dia_graphs::{DType, Target};
use dia_run::codec::ChunkSizes;
use dia_run::delay::Frames;
use dia_run::script::{ScriptGeneration, ScriptGenerator, ScriptOptions, ScriptPlan, VoicePrompt};
use dia_run::stream::ScriptStream;
use dia_run::tokenizer::count_tokens;
use dia_run::{DiaModel, GenerateOptions, ModelOptions};
use dia_tests::{dia_run, fixtures, reference, stderr, target_bundle};
use ndarray::Array2;

/// Four speaker turns, repeated: about 7x the tiny bundle's 64-token text window.
fn long_script() -> String {
    let turns = [
        "[S1] Good morning, and welcome to the show. Today we talk about rivers.",
        "[S2] Thanks for having me! Rivers are, honestly, my favourite topic.",
        "[S1] Where do you want to start? The source, or the sea?",
        "[S2] The source, always. Small streams tell you everything.",
    ];
    let mut s = String::new();
    for _ in 0..2 {
        for t in turns {
            s.push_str(t);
            s.push(' ');
        }
    }
    s.trim_end().to_string()
}

fn greedy() -> GenerateOptions {
    GenerateOptions {
        temperature: 0.0,
        seed: Some(0),
        ..GenerateOptions::default()
    }
}

fn fused_bundle() -> std::path::PathBuf {
    target_bundle(Target::Fused, DType::F32, Some(fixtures().join("tiny-dac")))
}

fn prompt_voice() -> VoicePrompt {
    let p: Array2<i64> = ndarray_npy::read_npy(reference("prompt_codes.npy")).unwrap();
    VoicePrompt {
        codes: Frames {
            channels: p.ncols(),
            data: p.iter().cloned().collect(),
        },
        transcript: "[S1] The voice to continue. ".into(),
    }
}

fn segment_codes(g: &ScriptGeneration, k: usize) -> &[i64] {
    let c = g.generation.codes.channels;
    let f = &g.segments[k].frames;
    &g.generation.codes.data[f.start * c..f.end * c]
}

/// Every segment's codes equal a direct generation prompted with the voice and, after the
/// first, the previous segment's text and codes.
fn assert_segments_are_direct_generations(
    model: &DiaModel,
    script: &str,
    voice: Option<VoicePrompt>,
) {
    let opts = greedy();
    let sopts = ScriptOptions::default();
    let plan = ScriptPlan::new(model, script, voice.as_ref(), &opts, &sopts).unwrap();
    let window = model.manifest().max_text_len;
    assert!(
        count_tokens(script) >= 6 * window,
        "the script must be 6x the window: {} tokens, window {window}",
        count_tokens(script)
    );
    let steps = plan.segment_steps.expect("a script this long is split");
    let n = plan.segments.len();
    assert!(n >= 6, "{n} segments");
    // The segments are the script: in order, nothing lost or repeated but whitespace, each
    // fitting the window with its carried text.
    let mut at = 0;
    for s in &plan.segments {
        assert!(
            script[at..s.source.start].trim().is_empty(),
            "text skipped: {:?}",
            &script[at..s.source.start]
        );
        at = s.source.end;
        assert!(count_tokens(&s.text) <= window / 2, "{:?}", s.text);
    }
    assert!(script[at..].trim().is_empty());

    let got = model
        .generate_script(script, voice.clone(), &opts, &sopts, |_| {})
        .unwrap();
    assert_eq!(got.segments.len(), n);
    let c = got.generation.codes.channels;
    for k in 0..n {
        let seg = &plan.segments[k];
        let mut text = String::new();
        let mut prompt = Vec::new();
        if let Some(v) = &voice {
            text.push_str(&v.transcript);
            prompt.extend_from_slice(&v.codes.data);
        }
        if k > 0 {
            text.push_str(&plan.segments[k - 1].text);
            text.push(' ');
            prompt.extend_from_slice(segment_codes(&got, k - 1));
        }
        text.push_str(&seg.text);
        assert!(count_tokens(&text) <= window, "segment {k}: {text:?}");
        let prompt_frames = prompt.len() / c;
        let direct = model
            .generate(
                &text,
                &GenerateOptions {
                    max_tokens: Some(1 + prompt_frames + steps),
                    audio_prompt: (!prompt.is_empty()).then_some(Frames {
                        channels: c,
                        data: prompt,
                    }),
                    ..opts.clone()
                },
                |_| {},
            )
            .unwrap();
        assert_eq!(got.segments[k].text, seg.text);
        assert_eq!(got.segments[k].prompt_frames, prompt_frames, "segment {k}");
        assert!(!direct.codes.is_empty(), "segment {k} made no frames");
        assert_eq!(
            segment_codes(&got, k),
            &direct.codes.data[..],
            "segment {k} ({:?}): codes differ from a direct generation",
            seg.text
        );
        assert_eq!(got.segments[k].eos_step, direct.eos_step, "segment {k}");
    }
}

#[test]
fn each_segment_of_a_long_script_is_a_direct_generation_with_the_carried_prompt() {
    let model = DiaModel::load(&fused_bundle(), &ModelOptions::default()).unwrap();
    assert_segments_are_direct_generations(&model, &long_script(), None);
}

#[test]
fn a_voice_prompt_applies_to_every_segment() {
    let model = DiaModel::load(&fused_bundle(), &ModelOptions::default()).unwrap();
    assert_segments_are_direct_generations(&model, &long_script(), Some(prompt_voice()));
}

#[test]
fn a_seed_makes_a_sampled_script_repeatable() {
    let model = DiaModel::load(&fused_bundle(), &ModelOptions::default()).unwrap();
    let script = long_script();
    let run = |seed| {
        let opts = GenerateOptions {
            seed: Some(seed),
            ..GenerateOptions::default()
        };
        model
            .generate_script(&script, None, &opts, &ScriptOptions::default(), |_| {})
            .unwrap()
            .generation
            .codes
            .data
    };
    let a = run(7);
    assert_eq!(a, run(7), "same seed, same script");
    assert_ne!(a, run(8), "another seed samples differently");
}

#[test]
fn without_carry_segments_have_no_prompt() {
    let model = DiaModel::load(&fused_bundle(), &ModelOptions::default()).unwrap();
    let sopts = ScriptOptions {
        carry: false,
        ..ScriptOptions::default()
    };
    let got = model
        .generate_script(&long_script(), None, &greedy(), &sopts, |_| {})
        .unwrap();
    assert!(got.segments.len() >= 3);
    for (k, s) in got.segments.iter().enumerate() {
        assert_eq!(s.prompt_frames, 0, "segment {k}");
        assert!(s.prompt_text.is_empty(), "segment {k}");
    }
}

#[test]
fn a_streamed_script_is_the_one_shot_decode_with_the_same_crossfades() {
    let model = DiaModel::load(&fused_bundle(), &ModelOptions::default()).unwrap();
    let script = long_script();
    let opts = greedy();
    let sopts = ScriptOptions::default();
    let one_shot = model
        .generate_script(&script, None, &opts, &sopts, |_| {})
        .unwrap();
    let want = one_shot.decode_audio(&model, sopts.crossfade_s).unwrap();

    let plan = ScriptPlan::new(&model, &script, None, &opts, &sopts).unwrap();
    let mut s = ScriptStream::new(
        &model,
        plan,
        None,
        &opts,
        &sopts,
        ChunkSizes { first: 2, rest: 8 },
    )
    .unwrap();
    let mut got = Vec::new();
    let mut chunks = 0;
    while let Some(pcm) = s.next_chunk().unwrap() {
        got.extend_from_slice(pcm);
        chunks += 1;
    }
    assert!(s.first_audio_seconds().is_some());
    let streamed = s.finish();
    assert_eq!(
        streamed.generation.codes.data,
        one_shot.generation.codes.data
    );
    assert!(chunks > streamed.segments.len(), "{chunks} chunks");
    assert_eq!(got.len(), want.len(), "sample count");
    let peak = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    let err = got
        .iter()
        .zip(&want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(peak > 0.0);
    assert!(
        err <= 1e-4 * peak,
        "streamed vs one-shot: {err} (peak {peak})"
    );
    // The joins are crossfades: each shortens the audio by the fade (or the shorter side).
    let fade = (sopts.crossfade_s * model.sample_rate() as f32).round() as usize;
    let hop = model.codec().unwrap().info().hop_length;
    let mut len = 0;
    for (k, s) in streamed.segments.iter().enumerate() {
        let n = s.frames.len() * hop;
        len += n - if k == 0 { 0 } else { fade.min(len).min(n) };
    }
    assert_eq!(got.len(), len);
}

#[test]
fn the_generator_reports_progress_across_segments() {
    let model = DiaModel::load(&fused_bundle(), &ModelOptions::default()).unwrap();
    let opts = greedy();
    let plan = ScriptPlan::new(
        &model,
        &long_script(),
        None,
        &opts,
        &ScriptOptions::default(),
    )
    .unwrap();
    let n = plan.segments.len();
    let mut g = ScriptGenerator::new(&model, plan, None, &opts).unwrap();
    let mut seen = vec![false; n];
    let mut last_frames = 0;
    while !g.is_done() {
        let step = g.step().unwrap();
        seen[step.segment] = true;
        let p = g.progress();
        assert_eq!(p.segments, n);
        assert!(p.frames >= last_frames);
        assert!(p.frames <= p.estimated_frames);
        last_frames = p.frames;
    }
    assert!(seen.iter().all(|s| *s), "every segment stepped");
    assert_eq!(g.finish().segments.len(), n);
}

#[test]
fn the_cli_speaks_a_long_script_from_a_file_and_streams_it() {
    let b = fused_bundle();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("script.txt");
    std::fs::write(&script, long_script()).unwrap();
    let script = script.to_str().unwrap();
    let wav = dir.path().join("out.wav");
    let o = dia_run(
        &b,
        &[
            "--text-file",
            script,
            "--temperature",
            "0",
            "--seed",
            "1",
            "--out",
            wav.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let segments = report["segments"].as_array().unwrap();
    assert!(segments.len() >= 6, "{report}");
    let file = hound::WavReader::open(&wav).unwrap();
    let samples = file.len() as usize;
    assert!(samples > 0);

    // Streamed to stdout as raw PCM: the same number of samples, the same script.
    let o = dia_run(
        &b,
        &[
            "--text-file",
            script,
            "--temperature",
            "0",
            "--seed",
            "1",
            "--stream",
            "--out",
            "-",
            "--format",
            "pcm",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), samples * 2, "s16le samples");
}

#[test]
fn a_script_of_only_whitespace_is_refused() {
    let b = fused_bundle();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("blank.txt");
    std::fs::write(&script, " \n\t\n  ").unwrap();
    let out = dir.path().join("out.wav");
    let o = dia_run(
        &b,
        &[
            "--text-file",
            script.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(err.contains("empty"), "{err}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn malformed_speaker_tags_are_reported() {
    let b = fused_bundle();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.wav");
    let o = dia_run(
        &b,
        &[
            "--text",
            "[s1] Hello there. [S3] Who is this?",
            "--max-tokens",
            "40",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("[s1]"), "{err}");
    assert!(err.contains("[S3]"), "{err}");
}
