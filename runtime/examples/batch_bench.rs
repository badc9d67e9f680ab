//! Batched decoding throughput: for each batch size B, B utterances of the same script decoded
//! together (sampled with each its own seed, EOS ignored so all run `--frames` steps), after a
//! short warm-up batch (first-run work, CUDA graph capture). Loads the model once.
//!
//! ```sh
//! cargo run --release -p dia-run --example batch_bench -- BUNDLE_DIR [--ep EP] [--cuda-graph]
//!     [--slots 1,2,4,8] [--frames 300] [--text-len 128] [--text T]
//! ```
//! Prints one JSON line per B: aggregate and per-stream frames/s, the step's parts in ms, and
//! the GPU memory in use (`nvidia-smi`) when there is one.

use std::path::PathBuf;
use std::time::Instant;

use dia_run::batch::{Batch, BatchOptions, Event};
use dia_run::{DiaModel, GenerateOptions, ModelOptions};

fn gpu_memory_mib() -> Option<u64> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.used", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    String::from_utf8(out.stdout).ok()?.trim().parse().ok()
}

/// Runs `n` utterances of `frames` steps each through `batch`; returns (seconds, frames).
fn run(
    batch: &mut Batch<'_>,
    text: &str,
    n: usize,
    frames: usize,
) -> Result<(f64, usize), Box<dyn std::error::Error>> {
    for k in 0..n {
        let opts = GenerateOptions {
            max_tokens: Some(frames + 1),
            seed: Some(k as u64),
            ignore_eos: true,
            ..GenerateOptions::default()
        };
        batch.submit(text, &opts)?;
    }
    let t = Instant::now();
    let mut events = Vec::new();
    let mut done = 0;
    while !batch.is_idle() {
        batch.step(&mut events)?;
        for e in events.drain(..) {
            if let Event::Done { generation, .. } = e {
                done += generation.steps;
            }
        }
    }
    Ok((t.elapsed().as_secs_f64(), done))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut opts = ModelOptions::default();
    let mut bundle = None;
    let mut slots = vec![1usize, 2, 4, 8];
    let mut frames = 300usize;
    let mut text_len = None;
    let mut text = "[S1] Dia is an open weights text to dialogue model. [S2] You get full control over scripts and voices.".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--ep" => opts.provider = val("--ep")?.parse()?,
            "--cuda-graph" => opts.cuda_graph = true,
            "--slots" => {
                slots = val("--slots")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?
            }
            "--frames" => frames = val("--frames")?.parse()?,
            "--text-len" => text_len = Some(val("--text-len")?.parse()?),
            "--text" => text = val("--text")?,
            _ => bundle = Some(PathBuf::from(a)),
        }
    }
    let bundle = bundle.ok_or("usage: batch_bench BUNDLE_DIR [--ep EP] [--cuda-graph] [--slots 1,2,4] [--frames N] [--text-len T]")?;
    let t = Instant::now();
    let model = DiaModel::load(&bundle, &opts)?;
    eprintln!(
        "loaded in {:.2} s on {}",
        t.elapsed().as_secs_f64(),
        model.provider().name()
    );
    for &b in &slots {
        let mut batch = Batch::new(&model, &BatchOptions { slots: b, text_len })?;
        // Warm-up: first runs at this size (and the CUDA graph's capture).
        run(&mut batch, &text, b, 8)?;
        batch.timings = Default::default();
        batch.sample_s = 0.0;
        batch.admit_s = 0.0;
        let (secs, steps) = run(&mut batch, &text, b, frames)?;
        let st = batch.timings;
        let per = |x: f64| 1e3 * x / st.steps.max(1) as f64;
        println!(
            "{}",
            serde_json::json!({
                "slots": b,
                "text_len": batch.text_len(),
                "frames_each": frames,
                "seconds": secs,
                // End to end: the B encoder runs (all at the first step) included.
                "aggregate_frames_per_second": steps as f64 / secs,
                "per_stream_frames_per_second": steps as f64 / secs / b as f64,
                // Steady decoding, as a server with utterances joining now and then sees it.
                "admit_seconds": batch.admit_s,
                "decode_aggregate_frames_per_second": steps as f64 / (secs - batch.admit_s),
                "decode_per_stream_frames_per_second": steps as f64 / (secs - batch.admit_s) / b as f64,
                "batch_steps": st.steps,
                "per_step_ms": {
                    "total": 1e3 * (secs - batch.admit_s) / st.steps.max(1) as f64,
                    "upload": per(st.upload_s),
                    "run": per(st.run_s),
                    "download": per(st.download_s),
                    "sample": per(batch.sample_s),
                },
                "gpu_memory_used_mib": gpu_memory_mib(),
                "provider": model.provider().name(),
                "cuda_graph": model.cuda_graph(),
            })
        );
    }
    Ok(())
}
