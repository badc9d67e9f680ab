//! Batched decoding: utterances decoded in the rows of one step give, token for token, what
//! each gives alone (the reference's greedy codes, and seeded sampling), whatever they share
//! a step with, whenever they join, and whatever slot they land in.

use std::collections::HashMap;
use std::sync::Arc;

use dia_graphs::{DType, Target};
use dia_run::batch::{Batch, BatchOptions, Event, RequestId, Scheduler, Update};
use dia_run::{DiaModel, GenerateOptions, ModelOptions};
use dia_tests::{bundle, greedy_case_named, target_bundle};

fn fused() -> DiaModel {
    DiaModel::load(
        &target_bundle(Target::Fused, DType::F32, None),
        &ModelOptions::default(),
    )
    .unwrap()
}

fn sampled(seed: u64) -> GenerateOptions {
    GenerateOptions {
        max_tokens: Some(90),
        seed: Some(seed),
        ..GenerateOptions::default()
    }
}

/// A request's codes as streamed, as `Done` reported them, and its EOS step.
type Outcome = (Vec<i64>, Vec<i64>, Option<usize>);

/// Runs `batch` until idle, submitting `late` once `after` steps have run; returns every
/// request's codes as the events streamed them, and as `Done` reported them.
fn drain(
    batch: &mut Batch<'_>,
    late: Vec<(&str, String, GenerateOptions)>,
    after: usize,
    ids: &mut HashMap<RequestId, &'static str>,
) -> HashMap<&'static str, Outcome> {
    let mut late = (!late.is_empty()).then_some(late);
    let mut streamed: HashMap<RequestId, Vec<i64>> = HashMap::new();
    let mut out = HashMap::new();
    let mut events = Vec::new();
    let mut steps = 0;
    while !batch.is_idle() || late.is_some() {
        if steps == after {
            for (name, text, opts) in late.take().into_iter().flatten() {
                let name: &'static str = Box::leak(name.to_string().into_boxed_str());
                ids.insert(batch.submit(&text, &opts).unwrap(), name);
            }
        }
        batch.step(&mut events).unwrap();
        steps += 1;
        for e in events.drain(..) {
            match e {
                Event::Frames { id, codes } => streamed.entry(id).or_default().extend(codes),
                Event::Done { id, generation } => {
                    out.insert(
                        ids[&id],
                        (
                            streamed.remove(&id).unwrap_or_default(),
                            generation.codes.data.clone(),
                            generation.eos_step,
                        ),
                    );
                }
            }
        }
        assert!(steps < 10_000, "the batch never went idle");
    }
    out
}

#[test]
fn batched_codes_equal_each_utterance_alone() {
    let model = fused();
    let mut batch = Batch::new(
        &model,
        &BatchOptions {
            slots: 3,
            text_len: None,
        },
    )
    .unwrap();
    assert_eq!(batch.capacity(), 3);
    let mut ids = HashMap::new();
    // Three at once: different text lengths, one with a voice prompt, one that hits EOS
    // early; a fourth (sampled) and a fifth wait and join mid-way, in the slots that free up.
    for name in ["long", "eos", "prompt"] {
        let (text, opts, _) = greedy_case_named(name);
        let name: &'static str = name;
        ids.insert(batch.submit(&text, &opts).unwrap(), name);
    }
    let joiner = "[S2] A late one, sampled with its own seed.".to_string();
    let (eos_text, eos_opts, _) = greedy_case_named("eos");
    let late = vec![
        ("sampled", joiner.clone(), sampled(11)),
        ("eos-again", eos_text.clone(), eos_opts.clone()),
    ];
    let got = drain(&mut batch, late, 40, &mut ids);
    assert_eq!(got.len(), 5);
    for name in ["long", "eos", "prompt"] {
        let (_, _, want) = greedy_case_named(name);
        let want: Vec<i64> = want.iter().cloned().collect();
        let (streamed, done, _) = &got[name];
        assert_eq!(done, &want, "{name}: batched codes vs the reference's");
        assert_eq!(streamed, &want, "{name}: streamed frames");
    }
    assert_eq!(got["eos"].2, Some(73), "EOS step");
    assert_eq!(got["eos-again"].1, got["eos"].1, "the same request again");
    let alone = model.generate(&joiner, &sampled(11), |_| {}).unwrap();
    assert_eq!(
        got["sampled"].1, alone.codes.data,
        "seeded sampling in a batch"
    );
    assert!(batch.timings.steps > 0);
}

#[test]
fn a_batch_of_one_and_a_request_in_every_slot_agree() {
    let model = fused();
    let (text, opts, want) = greedy_case_named("eos");
    let want: Vec<i64> = want.iter().cloned().collect();
    for slots in [1, 4] {
        let mut batch = Batch::new(
            &model,
            &BatchOptions {
                slots,
                text_len: Some(64),
            },
        )
        .unwrap();
        let mut ids = HashMap::new();
        for k in 0..slots {
            let name: &'static str = Box::leak(format!("r{k}").into_boxed_str());
            ids.insert(batch.submit(&text, &opts).unwrap(), name);
        }
        let got = drain(&mut batch, Vec::new(), usize::MAX, &mut ids);
        for (name, (_, codes, _)) in got {
            assert_eq!(codes, want, "{slots} slots, {name}");
        }
    }
}

#[test]
fn cancelled_requests_free_their_slot() {
    let model = fused();
    let mut batch = Batch::new(
        &model,
        &BatchOptions {
            slots: 1,
            text_len: None,
        },
    )
    .unwrap();
    let (text, opts, want) = greedy_case_named("eos");
    let first = batch.submit(&text, &opts).unwrap();
    let second = batch.submit(&text, &opts).unwrap();
    let mut events = Vec::new();
    for _ in 0..5 {
        batch.step(&mut events).unwrap();
    }
    assert_eq!((batch.active(), batch.waiting()), (1, 1));
    assert!(batch.cancel(first));
    assert!(!batch.cancel(first), "already gone");
    events.clear();
    let mut done = None;
    while !batch.is_idle() {
        batch.step(&mut events).unwrap();
        for e in events.drain(..) {
            if let Event::Done { id, generation } = e {
                done = Some((id, generation.codes.data.clone()));
            }
        }
    }
    let want: Vec<i64> = want.iter().cloned().collect();
    assert_eq!(
        done,
        Some((second, want)),
        "the waiting one ran in the freed slot"
    );
}

#[test]
fn the_scheduler_streams_requests_from_several_threads() {
    let model = Arc::new(fused());
    let sched = Arc::new(
        Scheduler::spawn(
            model.clone(),
            BatchOptions {
                slots: 2,
                text_len: None,
            },
        )
        .unwrap(),
    );
    let handles: Vec<_> = ["long", "eos", "prompt"]
        .into_iter()
        .map(|name| {
            let sched = sched.clone();
            std::thread::spawn(move || {
                let (text, opts, want) = greedy_case_named(name);
                let rx = sched.submit(&text, &opts).unwrap();
                let mut streamed = Vec::new();
                loop {
                    match rx.recv().unwrap() {
                        Update::Frames(f) => streamed.extend(f),
                        Update::Done(g) => {
                            assert_eq!(g.codes.data, streamed, "{name}");
                            break;
                        }
                        Update::Failed(e) => panic!("{name}: {e}"),
                    }
                }
                let want: Vec<i64> = want.iter().cloned().collect();
                assert_eq!(streamed, want, "{name}");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(sched.text_len(), 64, "the tiny bundle's whole window");
    // Counted: steps, and the utterances each decoded (at most the two slots).
    let st = sched.stats();
    assert!(st.steps > 0, "{st:?}");
    assert!(st.utterance_steps >= st.steps, "{st:?}");
    assert!((1..=2).contains(&st.peak), "{st:?}");
    // Bad input is refused at submit, naming the problem.
    let err = sched
        .submit(
            "[S1] hi",
            &GenerateOptions {
                top_p: 2.0,
                ..GenerateOptions::default()
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("top-p"), "{err}");
    let long = "[S1] ".to_string() + &"a".repeat(100);
    let err = sched
        .submit(&long, &GenerateOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("at most 64"), "{err}");
    // A request whose receiver is dropped is cancelled; the scheduler goes on serving.
    let (text, opts, want) = greedy_case_named("eos");
    drop(sched.submit(&text, &opts).unwrap());
    let rx = sched.submit(&text, &opts).unwrap();
    let mut codes = Vec::new();
    while let Ok(u) = rx.recv() {
        match u {
            Update::Frames(f) => codes.extend(f),
            Update::Done(_) => break,
            Update::Failed(e) => panic!("{e}"),
        }
    }
    assert_eq!(codes, want.iter().cloned().collect::<Vec<_>>());
}

#[test]
fn a_bundle_that_cannot_batch_says_so() {
    let model = DiaModel::load(&bundle("tiny-nari"), &ModelOptions::default()).unwrap();
    let err = Batch::new(&model, &BatchOptions::default())
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("one utterance at a time") && err.contains("portable"),
        "{err}"
    );
    let model = fused();
    for slots in [0, 5000] {
        let err = Batch::new(
            &model,
            &BatchOptions {
                slots,
                text_len: None,
            },
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("1 to 1024"), "{err}");
    }
}

#[test]
fn dia_run_batch_writes_one_file_per_line_equal_to_single_runs() {
    let b = target_bundle(Target::Fused, DType::F32, None);
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("lines.txt");
    let texts = [
        "[S1] Hello there.",
        "[S2] Hi! How are you today?",
        "[S1] Fine, thanks.",
    ];
    // A blank line is skipped, not an utterance.
    std::fs::write(
        &lines,
        format!("{}\n\n{}\n{}\n", texts[0], texts[1], texts[2]),
    )
    .unwrap();
    let codes = dir.path().join("codes");
    let common = ["--max-tokens", "60", "--seed", "100"];
    let mut args = vec![
        "--text-file",
        lines.to_str().unwrap(),
        "--batch",
        "2",
        "--save-codes",
        codes.to_str().unwrap(),
        "--json",
    ];
    args.extend(common);
    let o = dia_tests::dia_run(&b, &args);
    assert!(o.status.success(), "{}", dia_tests::stderr(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["utterances"], 3);
    for (i, text) in texts.iter().enumerate() {
        let single = dir.path().join(format!("single{i}.npy"));
        let seed = (100 + i).to_string();
        let o = dia_tests::dia_run(
            &b,
            &[
                "--text",
                text,
                "--max-tokens",
                "60",
                "--seed",
                &seed,
                "--save-codes",
                single.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", dia_tests::stderr(&o));
        let read =
            |p: &std::path::Path| -> ndarray::Array2<i64> { ndarray_npy::read_npy(p).unwrap() };
        let got = read(&codes.join(format!("{:04}.npy", i + 1)));
        assert_eq!(got, read(&single), "line {}", i + 1);
    }
    // Streaming is one utterance at a time.
    let o = dia_tests::dia_run(&b, &["--text", "[S1] Hi.", "--batch", "2", "--stream"]);
    assert!(!o.status.success());
    assert!(
        dia_tests::stderr(&o).contains("--stream"),
        "{}",
        dia_tests::stderr(&o)
    );
}
