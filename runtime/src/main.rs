//! `dia-run --bundle DIR --text "..." [--max-tokens N] [--cfg-scale S] [--cfg-filter-top-k K]
//! [--temperature T] [--top-p P] [--seed N] [--save-codes codes.npy]`

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;
use dia_run::{DiaModel, GenerateOptions, ModelOptions};
use indicatif::{ProgressBar, ProgressStyle};

/// Generate speech codes with a Dia ONNX bundle.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Bundle directory written by dia-export.
    #[arg(long)]
    bundle: PathBuf,
    /// The script, e.g. "[S1] Hello there. [S2] Hi! (laughs)".
    #[arg(long, conflicts_with = "text_file")]
    text: Option<String>,
    /// Read the script from a UTF-8 text file instead.
    #[arg(long)]
    text_file: Option<PathBuf>,
    /// Most decoder steps (frames, 86 per second); default: the bundle's maximum.
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Classifier-free guidance scale.
    #[arg(long, default_value_t = 3.0)]
    cfg_scale: f32,
    /// Top-k applied to the CFG logits (and again when sampling).
    #[arg(long, default_value_t = 45)]
    cfg_filter_top_k: usize,
    /// Sampling temperature; 0 is greedy (argmax).
    #[arg(long, default_value_t = 1.2)]
    temperature: f32,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Seed for sampling: the same seed gives the same audio on the same machine.
    #[arg(long)]
    seed: Option<u64>,
    /// Write the delay-reverted codes [frames, 9] as int64 .npy.
    #[arg(long)]
    save_codes: Option<PathBuf>,
    /// Intra-op threads for ONNX Runtime (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let text = match (&args.text, &args.text_file) {
        (Some(t), _) => t.clone(),
        (None, Some(p)) => {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            String::from_utf8(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{}: not UTF-8 text (invalid byte at offset {})",
                    p.display(),
                    e.utf8_error().valid_up_to()
                )
            })?
        }
        (None, None) => anyhow::bail!("give the script with --text \"...\" or --text-file FILE"),
    };
    let model = DiaModel::load(
        &args.bundle,
        &ModelOptions {
            threads: args.threads,
        },
    )?;
    let opts = GenerateOptions {
        max_tokens: args.max_tokens,
        cfg_scale: args.cfg_scale,
        temperature: args.temperature,
        top_p: args.top_p,
        cfg_filter_top_k: args.cfg_filter_top_k,
        seed: args.seed,
    };
    let max = opts.max_tokens.unwrap_or(model.manifest().max_frames);
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(max as u64);
        b.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} frames {msg}")
                .expect("valid template"),
        );
        b
    };
    let gen = model.generate(&text, &opts, |p| {
        bar.set_position(p.step as u64);
        if p.elapsed_s > 0.0 {
            let fps = p.step as f64 / p.elapsed_s;
            bar.set_message(format!(
                "{:.2}s audio, {fps:.1} steps/s, {:.2}x realtime",
                p.step as f64 / 86.13,
                fps / 86.13
            ));
        }
    })?;
    bar.finish_and_clear();
    if let Some(path) = &args.save_codes {
        dia_run::npy::write_codes(path, &gen.codes)?;
    }
    if !args.quiet {
        let fps = gen.steps as f64 / gen.decode_s.max(1e-9);
        eprintln!(
            "{} frames ({:.2}s of audio) in {} steps; encoder {:.3}s, decode {:.2}s ({fps:.1} steps/s){}",
            gen.codes.len(),
            gen.codes.len() as f64 / 86.13,
            gen.steps,
            gen.encoder_s,
            gen.decode_s,
            gen.eos_step.map_or(String::new(), |s| format!(", EOS at step {s}"))
        );
    }
    Ok(())
}
