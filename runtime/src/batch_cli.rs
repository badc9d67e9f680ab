//! `dia-run --batch N`: one utterance per line of the script, decoded N at a time in the rows
//! of one step ([`dia_run::batch::Batch`]), one WAV (and/or codes file) per line.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use dia_run::batch::{Batch, BatchOptions, Event};
use dia_run::delay::Frames;
use dia_run::{DiaModel, GenerateOptions};

/// What a batch run writes and how.
pub struct BatchRun<'a> {
    pub slots: usize,
    pub lines: Vec<String>,
    pub opts: GenerateOptions,
    /// Directory for `NNNN.wav`, one per line.
    pub out_dir: Option<&'a Path>,
    /// Directory for `NNNN.npy`, one per line.
    pub codes_dir: Option<&'a Path>,
    pub float: bool,
    pub json: bool,
    pub quiet: bool,
}

/// The utterances of a script file: one per non-blank line.
pub fn lines_of(text: &str) -> Result<Vec<String>> {
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if lines.is_empty() {
        bail!("the text is empty: --batch takes one utterance per line");
    }
    Ok(lines)
}

fn check_dir(dir: &Path, what: &str) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the {what} directory {}", dir.display()))
}

pub fn run(model: &DiaModel, job: BatchRun<'_>) -> Result<()> {
    if job.out_dir.is_none() && job.codes_dir.is_none() {
        bail!(
            "nothing to write: with --batch, --out and --save-codes name directories \
             (one NNNN.wav / NNNN.npy per line)"
        );
    }
    if let Some(d) = job.out_dir {
        model.require_codec("write audio")?;
        check_dir(d, "--out")?;
    }
    if let Some(d) = job.codes_dir {
        check_dir(d, "--save-codes")?;
    }
    let start = Instant::now();
    let mut batch = Batch::new(
        model,
        &BatchOptions {
            slots: job.slots,
            text_len: None,
        },
    )?;
    // Every line is checked before any work.
    let mut ids = Vec::with_capacity(job.lines.len());
    for (i, line) in job.lines.iter().enumerate() {
        let opts = GenerateOptions {
            // One seed per line, so each line is repeatable alone.
            seed: job.opts.seed.map(|s| s.wrapping_add(i as u64)),
            ..job.opts.clone()
        };
        let id = batch
            .submit(line, &opts)
            .with_context(|| format!("line {}", i + 1))?;
        ids.push(id);
    }
    let mut results: Vec<Option<Frames>> = vec![None; job.lines.len()];
    let mut events = Vec::new();
    let mut frames = 0usize;
    while !batch.is_idle() {
        batch.step(&mut events)?;
        for e in events.drain(..) {
            if let Event::Done { id, generation } = e {
                let i = ids.iter().position(|&x| x == id).expect("one of ours");
                frames += generation.codes.len();
                results[i] = Some(generation.codes);
            }
        }
    }
    let decode_s = start.elapsed().as_secs_f64();
    let rate = model.sample_rate();
    let width = job.lines.len().to_string().len().max(4);
    let mut written = Vec::new();
    for (i, codes) in results.into_iter().enumerate() {
        let codes = codes.expect("every request ends");
        let name = format!("{:0width$}", i + 1);
        if let Some(d) = job.codes_dir {
            dia_run::npy::write_codes(&d.join(format!("{name}.npy")), &codes)?;
        }
        if let Some(d) = job.out_dir {
            let path: PathBuf = d.join(format!("{name}.wav"));
            let audio = model.decode_audio(&codes)?;
            let format = if job.float {
                dia_run::audio::WavFormat::Float32
            } else {
                dia_run::audio::WavFormat::Pcm16
            };
            dia_run::audio::write_wav(&path, &audio, rate, format)?;
            written.push(path.display().to_string());
        }
    }
    let steps = batch.timings.steps;
    let summary = serde_json::json!({
        "utterances": job.lines.len(),
        "slots": job.slots,
        "frames": frames,
        "batch_steps": steps,
        "frames_per_second": frames as f64 / decode_s.max(1e-9),
        "decode_seconds": decode_s,
        "per_step_ms": 1e3 * batch.timings.run_s / steps.max(1) as f64,
        "sample_ms": 1e3 * batch.sample_s / steps.max(1) as f64,
        "provider": model.provider().name(),
        "wavs": written,
    });
    if job.json {
        println!("{summary}");
    } else if !job.quiet {
        eprintln!(
            "{} utterances, {frames} frames in {steps} batch steps of {} slots on {}: {:.1} frames/s",
            job.lines.len(),
            job.slots,
            model.provider().name(),
            frames as f64 / decode_s.max(1e-9)
        );
    }
    Ok(())
}
