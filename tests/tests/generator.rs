//! The incremental generator: frames handed out as they become complete equal the reference's
//! codes; two generators alive on one thread each get a decoder state (no deadlock, no mixing);
//! a dropped generator gives its state back.

use dia_run::{DiaModel, Generator, ModelOptions};
use dia_tests::{bundle, greedy_case_named};
use ndarray::Array2;

fn rows(a: &Array2<i64>) -> Vec<i64> {
    a.iter().cloned().collect()
}

#[test]
fn streamed_frames_are_the_reference_codes_as_they_complete() {
    let model = DiaModel::load(&bundle("tiny-nari"), &ModelOptions::default()).unwrap();
    let max_delay = model.config().max_delay();
    for name in ["eos", "long", "prompt"] {
        let (text, opts, want) = greedy_case_named(name);
        let mut g = Generator::new(&model, &text, &opts).unwrap();
        let mut got = Vec::new();
        let mut first_at = None;
        let mut steps = 0;
        while !g.is_done() {
            let new = g.step().unwrap().to_vec();
            steps += 1;
            assert_eq!(new.len() % 9, 0);
            if !new.is_empty() && first_at.is_none() {
                first_at = Some(steps);
            }
            // Before the end, at most one frame completes per step.
            if !g.is_done() {
                assert!(new.len() <= 9, "{name}: {} codes in one step", new.len());
            }
            got.extend_from_slice(&new);
        }
        assert!(g.step().unwrap().is_empty(), "nothing after the end");
        // A frame is complete once every channel's delayed token is written: the first after
        // max_delay + 1 steps.
        assert_eq!(first_at, Some(max_delay + 1), "{name}");
        assert_eq!(got, rows(&want), "{name}: streamed codes");
        let done = g.finish();
        assert_eq!(done.codes.data, rows(&want), "{name}: finished codes");
    }
}

#[test]
fn two_generators_on_one_thread_interleave_and_both_match_the_reference() {
    let model = DiaModel::load(&bundle("tiny-hf"), &ModelOptions::default()).unwrap();
    let (ta, oa, wa) = greedy_case_named("long");
    let (tb, ob, wb) = greedy_case_named("eos");
    // Both alive at once on this thread: with a state held by the first, the second must get
    // its own (one shared state behind a lock would deadlock here).
    let mut a = Generator::new(&model, &ta, &oa).unwrap();
    let mut b = Generator::new(&model, &tb, &ob).unwrap();
    while !(a.is_done() && b.is_done()) {
        a.step().unwrap();
        b.step().unwrap();
    }
    assert_eq!(a.finish().codes.data, rows(&wa));
    assert_eq!(b.finish().codes.data, rows(&wb));
    // Both states went back to the pool.
    assert_eq!(model.decoder().idle_states(), 2);
}

#[test]
fn a_dropped_generator_stops_and_its_state_serves_the_next_utterance() {
    let model = DiaModel::load(&bundle("tiny-nari"), &ModelOptions::default()).unwrap();
    let (text, opts, want) = greedy_case_named("long");
    {
        let mut g = Generator::new(&model, &text, &opts).unwrap();
        for _ in 0..40 {
            g.step().unwrap();
        }
        assert!(!g.is_done());
        assert_eq!(g.codes().len(), 40 - model.config().max_delay());
        // Dropped here, mid-utterance, with 40 cache slots written.
    }
    assert_eq!(model.decoder().idle_states(), 1);
    let gen = model.generate(&text, &opts, |_| {}).unwrap();
    assert_eq!(gen.codes.data, rows(&want));
    assert_eq!(
        model.decoder().idle_states(),
        1,
        "the same state was reused"
    );
}

fn taking_turns() -> ModelOptions {
    // The CUDA-graph discipline (utterances take turns, one state per text bucket), on the CPU.
    ModelOptions {
        utterances_take_turns: true,
        ..ModelOptions::default()
    }
}

#[test]
fn taking_turns_a_second_generator_on_the_same_thread_gets_a_clear_error() {
    let model = DiaModel::load(&bundle("tiny-nari"), &taking_turns()).unwrap();
    let (text, opts, want) = greedy_case_named("long");
    let mut a = Generator::new(&model, &text, &opts).unwrap();
    a.step().unwrap();
    // Same thread: waiting would never end.
    let e = match Generator::new(&model, &text, &opts) {
        Ok(_) => panic!("a second state was handed out"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("already has a generation alive") && e.contains("drop"),
        "{e}"
    );
    while !a.is_done() {
        a.step().unwrap();
    }
    assert_eq!(a.finish().codes.data, rows(&want));
    // Once it is dropped, the bucket is free again.
    let again = model.generate(&text, &opts, |_| {}).unwrap();
    assert_eq!(again.codes.data, rows(&want));
    assert_eq!(model.decoder().idle_states(), 1);
}

#[test]
fn taking_turns_threads_wait_for_each_other_and_match_the_reference() {
    let model = std::sync::Arc::new(DiaModel::load(&bundle("tiny-hf"), &taking_turns()).unwrap());
    let handles: Vec<_> = ["long", "eos", "long", "eos"]
        .into_iter()
        .map(|name| {
            let model = std::sync::Arc::clone(&model);
            std::thread::spawn(move || {
                let (text, opts, want) = greedy_case_named(name);
                let got = model.generate(&text, &opts, |_| {}).unwrap();
                assert_eq!(got.codes.data, rows(&want), "{name}");
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    // A portable bundle has one text length, so one bucket: four utterances, one state.
    assert_eq!(model.decoder().idle_states(), 1);
}
